"""Signed bundles: an OpenSSH signature of ``manifest.json``, made and checked by ``ssh-keygen``.

    edge-model sign runs/pets/export --key ~/.ssh/id_ed25519    # BUNDLE/manifest.json.sig

The manifest holds the sha256 of the bundle's files, so its signature vouches for all of them:
``ssh-keygen -Y sign -n edge-toolchain`` over the manifest's bytes, written beside it as
:data:`SIGNATURE_FILE`. A device trusts keys once ``ROOT/allowed_signers`` (OpenSSH's "allowed
signers" format, ssh-keygen(1)) exists; from then on ``edge-model activate`` refuses a bundle
that is unsigned, signed by a key the file does not list, or whose manifest changed after it
was signed. The file decides who may sign: the signer is looked up in it by the signature's own
key (``-Y find-principals``) and then verified as that principal (``-Y verify``), so a
``namespaces=`` or ``valid-before=`` option on its line holds too. No cryptography of our own:
OpenSSH ≥ 8.2 (every Raspberry Pi OS and workstation since 2020) does all of it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from common.errors import UsageError
from common.fileio import write_bytes
from edge_runtime.errors import EdgeError
from edge_runtime.manifest import MANIFEST_FILE, Manifest

NAMESPACE = "edge-toolchain"
"""The signature namespace: a key's signature of a git commit or a file is not one of ours."""
SIGNATURE_FILE = MANIFEST_FILE + ".sig"
"""Where a bundle carries its signature: beside the manifest, outside what the manifest lists."""
ALLOWED_SIGNERS = "allowed_signers"
"""The file under a device's ROOT that, once it exists, makes signatures required."""
TIMEOUT_S = 60.0
"""The longest one check may take (ssh-keygen answers in milliseconds)."""


class SignatureError(EdgeError):
    """A bundle's signature does not make it trusted here: missing, by an unlisted key, or not
    the signature of this manifest."""


def ssh_keygen() -> str:
    """The ``ssh-keygen`` on the PATH.

    Raises:
        UsageError: there is none.
    """
    found = shutil.which("ssh-keygen")
    if found is None:
        raise UsageError("ssh-keygen is not installed here; it makes and checks bundle "
                         "signatures: apt install openssh-client")
    return found


def _run(*args: str, data: bytes | None = None,
         timeout: float | None = TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([ssh_keygen(), *args], input=data, capture_output=True,
                          timeout=timeout)


def _said(done: subprocess.CompletedProcess) -> str:
    """What ssh-keygen said on stderr, one line (its chatter left out)."""
    lines = [line.strip() for line in done.stderr.decode(errors="replace").splitlines()
             if line.strip() and not line.startswith("Signing data on standard input")]
    return "; ".join(lines) or f"ssh-keygen exit {done.returncode}"


def _manifest_bytes(folder: Path) -> bytes:
    try:
        return (Path(folder) / MANIFEST_FILE).read_bytes()
    except OSError as exc:
        raise SignatureError(f"{folder}: cannot read {MANIFEST_FILE}: {exc.strerror}") from None


def _key(done: subprocess.CompletedProcess) -> str:
    """``ED25519 key SHA256:…`` from ssh-keygen's ``Good "…" signature … with … key …`` line."""
    text = done.stdout.decode(errors="replace").strip()
    return text.split(" with ", 1)[1] if " with " in text else text


def check_key(key: Path, flag: str = "--key") -> None:
    """What signing with ``key`` needs, checked before work that takes minutes: ssh-keygen, and
    a key file that can be read (``flag``: the option that named it, for the message).

    Raises:
        UsageError: no ssh-keygen, or ``key`` is not a readable file.
    """
    ssh_keygen()
    if not Path(key).is_file() or not os.access(key, os.R_OK):
        raise UsageError(f"{flag} {key}: no such readable key file (an OpenSSH private key, or "
                         "its .pub when ssh-agent holds the private half)")


def matches(folder: Path, signature: Path | None = None, data: bytes | None = None) -> str:
    """Check that ``signature`` (default ``folder/manifest.json.sig``) is an edge-toolchain
    signature of ``folder/manifest.json`` as it is now (or of ``data``, the manifest's bytes as
    the caller read them), whoever made it; returns the key, ``ED25519 key SHA256:…``.

    Raises:
        SignatureError: no signature, or one of other bytes (the manifest changed after it was
            signed) or of another namespace.
        UsageError: no ssh-keygen here.
    """
    signature = Path(signature) if signature is not None else Path(folder) / SIGNATURE_FILE
    if not signature.is_file():
        raise SignatureError(f"the bundle is not signed (no {SIGNATURE_FILE}): sign it with "
                             "edge-model sign BUNDLE --key KEY")
    data = _manifest_bytes(folder) if data is None else data
    done = _run("-Y", "check-novalidate", "-n", NAMESPACE, "-s", str(signature), data=data)
    if done.returncode != 0:
        raise SignatureError(f"{signature.name} is not a signature of this {MANIFEST_FILE}: it "
                             f"changed after signing, or was signed for something else "
                             f"({_said(done)})")
    return _key(done)


def verify(folder: Path, allowed_signers: Path, signature: Path | None = None,
           data: bytes | None = None) -> str:
    """Check that ``folder/manifest.json`` was signed, as it is now (or ``data``: the manifest's
    bytes as the caller read them, so the bytes checked are the bytes used), by a key
    ``allowed_signers`` lists; returns who signed it: ``PRINCIPAL (ED25519 key SHA256:…)``.

    ``signature`` defaults to ``folder/manifest.json.sig``.

    Raises:
        SignatureError: unsigned; changed after signing; signed by a key ``allowed_signers`` does
            not list (or lists with options that refuse it: another namespace, expired);
            ``allowed_signers`` unreadable.
        UsageError: no ssh-keygen here.
    """
    data = _manifest_bytes(folder) if data is None else data
    key = matches(folder, signature, data)
    signature = Path(signature) if signature is not None else Path(folder) / SIGNATURE_FILE
    if not os.access(allowed_signers, os.R_OK):
        raise SignatureError(f"cannot read {allowed_signers}, the keys this device trusts")
    found = _run("-Y", "find-principals", "-f", str(allowed_signers), "-s", str(signature))
    principals = found.stdout.decode(errors="replace").split()
    if found.returncode != 0 or not principals:
        said = _said(found)
        why = "" if said == "No principal matched." else f" ({said})"
        raise SignatureError(f"signed by a key this device does not trust: {key} is not in "
                             f"{allowed_signers}{why}")
    done = _run("-Y", "verify", "-f", str(allowed_signers), "-I", principals[0], "-n", NAMESPACE,
                "-s", str(signature), data=data)
    if done.returncode != 0:
        raise SignatureError(f"the signature of {principals[0]} ({key}) is not accepted by "
                             f"{allowed_signers}: {_said(done)}")
    return f"{principals[0]} ({key})"


def sign(folder: Path, key: Path, flag: str = "--key") -> str:
    """Sign the bundle ``folder`` with ``key``: its files checked against its manifest, then
    ``manifest.json`` signed into ``folder/manifest.json.sig`` (written atomically, replacing an
    older signature); returns the key, ``ED25519 key SHA256:…``.

    ``key`` is an OpenSSH private key, or a public key whose private half ssh-agent holds; a key
    with a passphrase asks for it on the terminal.

    Raises:
        UsageError: no ssh-keygen; ``key`` unreadable or unusable; ``folder`` not a bundle, or
            one whose files do not match its manifest (a signature would vouch for them).
    """
    check_key(key, flag)
    try:
        data = (Path(folder) / MANIFEST_FILE).read_bytes()
        Manifest.load(folder).check_files(folder)
    except FileNotFoundError:
        raise UsageError(f"{folder}: not a bundle (no {MANIFEST_FILE})") from None
    except OSError as exc:
        raise UsageError(f"{folder}: cannot read {MANIFEST_FILE}: {exc.strerror}") from None
    except EdgeError as exc:
        raise UsageError(f"{exc}; not signed: export the bundle again") from None
    # no timeout: a key with a passphrase waits for the user at the terminal
    done = _run("-Y", "sign", "-n", NAMESPACE, "-f", str(key), data=data, timeout=None)
    if done.returncode != 0 or not done.stdout.startswith(b"-----BEGIN SSH SIGNATURE-----"):
        raise UsageError(f"{flag} {key}: ssh-keygen could not sign with it: {_said(done)}")
    write_bytes(Path(folder) / SIGNATURE_FILE, done.stdout)
    return matches(folder)
