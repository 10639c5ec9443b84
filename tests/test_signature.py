"""Signed bundles (deploy/signature.py): ``edge-model sign`` writes an OpenSSH signature of the
manifest, and a device with ``ROOT/allowed_signers`` activates only bundles signed, as they are,
by a key listed there; without the file nothing changes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from deploy import deploy_cli, model_cli
from deploy.signature import SIGNATURE_FILE, SignatureError, matches, verify
from deploy.store import version_of
from edge_runtime.manifest import MANIFEST_FILE
from tests.bundle_variants import corrupted, renamed

pytestmark = pytest.mark.edge

if shutil.which("ssh-keygen") is None:
    pytest.skip("ssh-keygen is not installed (apt install openssh-client)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    """Two ed25519 keys, alice's (trusted) and mallory's, without passphrases."""
    folder = tmp_path_factory.mktemp("keys")
    for name in ("alice", "mallory"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@laptop",
                        "-f", str(folder / name)], check=True)
    return {name: folder / name for name in ("alice", "mallory")}


def trust(root: Path, key: Path, principal: str = "alice@example.com",
          options: str = "") -> Path:
    """``root/allowed_signers`` listing ``key`` (OpenSSH's format: principals, options, key)."""
    root.mkdir(parents=True, exist_ok=True)
    public = key.with_name(key.name + ".pub").read_text().split()[:2]
    (root / "allowed_signers").write_text(
        f"# the keys this device trusts\n{principal} {options} {' '.join(public)}\n")
    return root / "allowed_signers"


def edge_model(*args: str, capsys) -> tuple[int, str, str]:
    code = model_cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def signed(bundle: Path, out: Path, key: Path, prefix: str, capsys) -> Path:
    """A copy of the tests' bundle (another version), signed with ``key`` by ``edge-model sign``."""
    copy = renamed(bundle, out, prefix)
    code, _, err = edge_model("sign", str(copy), "--key", str(key), capsys=capsys)
    assert code == 0, err
    return copy


def current(root: Path) -> str | None:
    return os.readlink(root / "current").split("/")[-1] if (root / "current").is_symlink() else None


def test_a_bundle_signed_by_a_trusted_key_activates_and_keeps_its_signature(bundle, tmp_path,
                                                                            keys, capsys):
    copy = signed(bundle, tmp_path / "v1", keys["alice"], "one-", capsys)
    signature = (copy / SIGNATURE_FILE).read_text()
    assert signature.startswith("-----BEGIN SSH SIGNATURE-----")
    root = tmp_path / "models"
    trust(root, keys["alice"])
    code, out, err = edge_model("activate", str(copy), "--root", str(root), "--json",
                                capsys=capsys)
    assert code == 0, err
    report = json.loads(out)
    assert [c["name"] for c in report["checks"]] == ["signature", "manifest", "copy", "sha256",
                                                     "labels", "answers", "commit"]
    assert report["checks"][0]["ok"] and "alice@example.com (ED25519 key SHA256:" in \
        report["checks"][0]["detail"]
    assert current(root) == version_of(copy)
    # the signature travels with the version, so the device can check it again later
    assert (root / "versions" / version_of(copy) / SIGNATURE_FILE).read_text() == signature
    assert "not checked" not in err


def _unsigned(copy: Path, keys) -> None:
    (copy / SIGNATURE_FILE).unlink()


def _by_another_key(copy: Path, keys) -> None:
    model_cli.main(["sign", str(copy), "--key", str(keys["mallory"])])


def _manifest_changed_after_signing(copy: Path, keys) -> None:
    # one byte of the manifest outside what binds the files (its model name's first letter's
    # case): every file still matches the manifest, the signature does not
    data = (copy / MANIFEST_FILE).read_bytes()
    name = json.loads(data)["model"]["name"].encode()
    changed = bytes([name[0] ^ 0x20]) + name[1:]
    assert data.count(b'"' + name + b'"') == 1
    (copy / MANIFEST_FILE).write_bytes(data.replace(b'"' + name + b'"', b'"' + changed + b'"'))


def _signed_for_something_else(copy: Path, keys) -> None:
    # alice's key, the manifest's bytes, but the namespace of file signing ("file")
    done = subprocess.run(["ssh-keygen", "-Y", "sign", "-n", "file", "-f", str(keys["alice"])],
                          input=(copy / MANIFEST_FILE).read_bytes(), capture_output=True,
                          check=True)
    (copy / SIGNATURE_FILE).write_bytes(done.stdout)


def _garbage_signature(copy: Path, keys) -> None:
    (copy / SIGNATURE_FILE).write_text("-----BEGIN SSH SIGNATURE-----\nnot one\n")


@pytest.mark.parametrize("spoil, reason", [
    (_unsigned, "is not signed"),
    (_by_another_key, "signed by a key this device does not trust"),
    (_manifest_changed_after_signing, "changed after signing"),
    (_signed_for_something_else, "changed after signing, or was signed for something else"),
    (_garbage_signature, "is not a signature of this manifest.json"),
])
def test_a_device_that_trusts_keys_refuses_in_one_line(bundle, tmp_path, keys, capsys, spoil,
                                                      reason):
    root = tmp_path / "models"
    trust(root, keys["alice"])
    good = signed(bundle, tmp_path / "good", keys["alice"], "one-", capsys)
    assert edge_model("activate", str(good), "--root", str(root), capsys=capsys)[0] == 0
    bad = signed(bundle, tmp_path / "bad", keys["alice"], "two-", capsys)
    spoil(bad, keys)
    capsys.readouterr()
    code, out, err = edge_model("activate", str(bad), "--root", str(root), capsys=capsys)
    assert code == 1
    assert len(err.strip().splitlines()) == 1, err
    assert reason in err and "the signature check failed" in err and "Traceback" not in err
    assert f"current stays {version_of(good)}" in err
    assert current(root) == version_of(good)
    assert sorted(p.name for p in (root / "versions").iterdir()) == [version_of(good)]


def test_a_variant_changed_after_signing_is_caught_by_its_sha256(bundle, tmp_path, keys,
                                                                  capsys):
    root = tmp_path / "models"
    trust(root, keys["alice"])
    copy = signed(bundle, tmp_path / "v1", keys["alice"], "one-", capsys)
    damaged = corrupted(copy, tmp_path / "damaged")  # the signed manifest, a changed int8 file
    code, out, err = edge_model("activate", str(damaged), "--root", str(root), "--json",
                                capsys=capsys)
    assert code == 1
    checks = {c["name"]: c["ok"] for c in json.loads(out)["checks"]}
    assert checks == {"signature": True, "manifest": True, "copy": True, "sha256": False}
    assert current(root) is None


def test_the_signers_file_decides_namespaces_and_principals(bundle, tmp_path, keys, capsys):
    copy = signed(bundle, tmp_path / "v1", keys["alice"], "one-", capsys)
    allowed = trust(tmp_path / "a", keys["alice"], "*@example.com,ci@build")
    assert verify(copy, allowed).startswith("*@example.com (ED25519 key SHA256:")
    # listed, but only for signing files: not for bundles
    narrow = trust(tmp_path / "b", keys["alice"], options='namespaces="file"')
    with pytest.raises(SignatureError, match="not accepted by .*namespace"):
        verify(copy, narrow)
    # an allowed_signers that is a broken link fails closed
    broken = tmp_path / "c" / "allowed_signers"
    broken.parent.mkdir()
    broken.symlink_to(tmp_path / "nowhere")
    with pytest.raises(SignatureError, match="cannot read"):
        verify(copy, broken)
    code, _, err = edge_model("activate", str(copy), "--root", str(broken.parent), capsys=capsys)
    assert code == 1 and "cannot read" in err and current(broken.parent) is None


def test_without_allowed_signers_nothing_changes_but_a_note(bundle, tmp_path, keys, capsys):
    root = tmp_path / "models"
    copy = signed(bundle, tmp_path / "v1", keys["mallory"], "one-", capsys)
    code, out, err = edge_model("activate", str(copy), "--root", str(root), "--json",
                                capsys=capsys)
    assert code == 0, err
    assert [c["name"] for c in json.loads(out)["checks"]] == ["manifest", "copy", "sha256",
                                                              "labels", "answers", "commit"]
    assert f"note: {SIGNATURE_FILE} not checked: there is no {root / 'allowed_signers'}" in err
    plain = renamed(bundle, tmp_path / "v2", "two-")
    code, _, err = edge_model("activate", str(plain), "--root", str(root), capsys=capsys)
    assert code == 0 and "not checked" not in err


def test_a_version_installed_before_signing_takes_the_signature_it_comes_with(bundle, tmp_path,
                                                                              keys, capsys):
    root = tmp_path / "models"
    v1 = renamed(bundle, tmp_path / "v1", "one-")
    v2 = renamed(bundle, tmp_path / "v2", "two-")
    for copy in (v1, v2):  # both installed unsigned, v2 current
        assert edge_model("activate", str(copy), "--root", str(root), capsys=capsys)[0] == 0
    trust(root, keys["alice"])
    code, _, err = edge_model("activate", str(v1), "--root", str(root), capsys=capsys)
    assert code == 1 and "is not signed" in err and current(root) == version_of(v2)
    edge_model("sign", str(v1), "--key", str(keys["alice"]), capsys=capsys)
    code, _, err = edge_model("activate", str(v1), "--root", str(root), capsys=capsys)
    assert code == 0, err
    assert current(root) == version_of(v1)
    assert (root / "versions" / version_of(v1) / SIGNATURE_FILE).read_bytes() == \
        (v1 / SIGNATURE_FILE).read_bytes()


def test_sign_refuses_a_damaged_bundle_or_a_key_that_cannot_sign(bundle, tmp_path, keys,
                                                                 capsys):
    damaged = corrupted(bundle, tmp_path / "damaged")
    code, _, err = edge_model("sign", str(damaged), "--key", str(keys["alice"]), capsys=capsys)
    assert code == 2 and "does not match the manifest" in err and "not signed" in err
    assert len(err.strip().splitlines()) == 1
    copy = renamed(bundle, tmp_path / "copy", "one-")
    for key in (tmp_path / "no-such-key", copy / "labels.txt"):
        code, _, err = edge_model("sign", str(copy), "--key", str(key), capsys=capsys)
        assert code == 2 and f"--key {key}" in err and len(err.strip().splitlines()) == 1
    code, _, err = edge_model("sign", str(tmp_path), "--key", str(keys["alice"]), capsys=capsys)
    assert code == 2 and "not a bundle" in err
    assert not list(tmp_path.rglob(SIGNATURE_FILE))
    # a second signature replaces the first, atomically (no temporary left)
    for key in ("mallory", "alice"):
        assert edge_model("sign", str(copy), "--key", str(keys[key]), capsys=capsys)[0] == 0
    assert matches(copy) == verify(copy, trust(tmp_path / "d", keys["alice"])).split(" (")[1][:-1]
    assert sorted(p.name for p in copy.iterdir() if p.name.startswith(".")) == []


def test_no_ssh_keygen_is_one_line_and_exit_2(bundle, tmp_path, keys, capsys, monkeypatch):
    copy = signed(bundle, tmp_path / "v1", keys["alice"], "one-", capsys)
    root = tmp_path / "models"
    trust(root, keys["alice"])
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    for args in (("sign", str(copy), "--key", str(keys["alice"])),
                 ("activate", str(copy), "--root", str(root))):
        code, _, err = edge_model(*args, capsys=capsys)
        assert code == 2 and "ssh-keygen is not installed" in err, err
        assert len(err.strip().splitlines()) == 1
    assert current(root) is None and not [p for p in (root / "versions").iterdir()]


def test_edge_deploy_refuses_a_signature_that_does_not_match_before_any_host(bundle, tmp_path,
                                                                            keys, capsys):
    copy = signed(bundle, tmp_path / "v1", keys["alice"], "one-", capsys)
    _manifest_changed_after_signing(copy, keys)
    code = deploy_cli.main([str(copy), "pi-kitchen", "--ssh-config", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert code == 2 and "changed after signing" in err and "edge-model sign" in err
    assert len(err.strip().splitlines()) == 1
