"""Putting models on devices, and keeping them running: TensorFlow-free, the ``edge`` extra only.

- :mod:`~deploy.unit` — the systemd unit (``edge-classify.service``, package data: its one
  template) filled in for the user who installs it.
- :mod:`~deploy.service_cli` — ``edge-service install``: writes that unit.
- :mod:`~deploy.store` — models as versions on a device: ``versions/<version>/``, the
  ``current`` and ``previous`` links switched atomically, each new version checked first
  (every file's sha256 against the manifest, the bundle's evaluation set giving the
  workstation's answers).
- :mod:`~deploy.signature` — signed bundles: ``manifest.json.sig`` made and checked by
  ``ssh-keygen`` against a device's ``allowed_signers``.
- :mod:`~deploy.model_cli` — ``edge-model activate|list|rollback|sign`` over the store.
- :mod:`~deploy.fleet` — copying a bundle to hosts over ssh/rsync and activating it there, in
  parallel or in waves; :mod:`~deploy.deploy_cli` — ``edge-deploy``.
- ``ansible/`` — the same from an inventory: a playbook and a role calling ``edge-model activate``.

Imports: :mod:`common` and :mod:`edge_runtime` only (docs/ARCHITECTURE.md).
"""
