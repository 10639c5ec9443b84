"""Putting models on devices, keeping them running, and bringing their data back: TensorFlow-free,
the ``edge`` extra only (matplotlib, for ``edge-collect --report``'s picture, where it is there).

- :mod:`~deploy.unit` — the systemd unit (``edge-classify.service``, package data: its one
  template) filled in for the user who installs it.
- :mod:`~deploy.service_cli` — ``edge-service install``: writes that unit.
- :mod:`~deploy.store` — models as versions on a device: ``versions/<version>/``, the
  ``current`` and ``previous`` links switched atomically after every file is flushed, each new
  version checked first (:mod:`~deploy.checks`: the manifest binding every file, each file's
  sha256, the labels, the AI Camera's network, the evaluation set giving the workstation's
  answers; :mod:`~deploy.bundle_copy`: only what the manifest binds is copied), repaired when
  installed again, committed by the running service or switched back.
- :mod:`~deploy.signature` — signed bundles: ``manifest.json.sig`` made and checked by
  ``ssh-keygen`` against a device's ``allowed_signers``.
- :mod:`~deploy.model_cli` — ``edge-model activate|list|check|rollback|prune|incoming|sign``.
- :mod:`~deploy.fleet` — copying a bundle to hosts over ssh/rsync and activating it there, in
  parallel or in waves; :mod:`~deploy.deploy_cli` — ``edge-deploy``.
- ``ansible/`` — the same from an inventory: a playbook and a role calling ``edge-model activate``;
  and ``edge-collect.yml``, the devices' data pulled from an inventory.
- :mod:`~deploy.collect` — data back from the devices (``edge-collect``): each host's data root
  pulled over ssh/rsync, each distinct picture stored once, the drift report.
- :mod:`~deploy.label` — labelling what came back, in a browser (``edge-label``).

Imports: :mod:`common` and :mod:`edge_runtime` only (docs/ARCHITECTURE.md).
"""
