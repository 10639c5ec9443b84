"""edge-model's trust: a bundle is bound whole (every file by sha256, nothing else copied),
installed versions are re-checked and repaired, a service that does not commit a version gets
the old one back, and one whose version is damaged at start falls back (deploy/store.py).

The refusals before the answers check run on bundles made by hand (TensorFlow-free, fast); a
hand-made bundle with nothing wrong is refused at the answers check (its models are not
models), so each refusal below is the check under test, not a later one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from deploy.model_cli import main
from deploy.store import Store, activate
from edge_runtime.service_status import STATUS_FILE, ServiceStatus, StatusReporter, read_status
from edge_runtime.service_status import write_status as write_service_status
from tests.bundle_variants import hand_made, rehash, renamed, slim, with_sensor_network
from tests.test_edge_model import edge_model

pytestmark = pytest.mark.edge

REPO = Path(__file__).resolve().parents[1]


def refused_by(root: Path, bundle: Path, capsys) -> tuple[str, str, str]:
    """Activate ``bundle`` expecting a refusal: (the failed check, its detail, stderr)."""
    code, out, err = edge_model(root, "activate", str(bundle), "--json", capsys=capsys)
    assert code == 1, err
    report = json.loads(out)
    assert report["result"] == "refused" and "Traceback" not in err
    failed = [c for c in report["checks"] if not c["ok"]]
    assert len(failed) == 1
    return failed[0]["name"], failed[0]["detail"], err


def nothing_changed(root: Path) -> None:
    """No current link, and nothing left in versions/ (not even a hidden half-copy)."""
    assert not os.path.lexists(root / "current")
    assert list((root / "versions").iterdir()) == []


# ----------------------------------------------------------------------------- bound whole

def test_a_hand_made_bundle_with_nothing_wrong_gets_to_the_answers_check(tmp_path, capsys):
    """The control for the refusals below: every check of what the bundle holds passes."""
    check, detail, _ = refused_by(tmp_path / "models", hand_made(tmp_path / "b"), capsys)
    assert check == "answers", detail


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def _write(bundle: Path, manifest: dict) -> None:
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def no_variant(bundle: Path) -> None:
    for name in list(_manifest(bundle)["variants"]):
        (bundle / f"model_{name}.tflite").unlink()
    rehash(bundle, variants={})


def unhashed_variant(bundle: Path) -> None:
    manifest = _manifest(bundle)
    del manifest["variants"]["int8"]["sha256"]
    _write(bundle, manifest)


def older_export(bundle: Path) -> None:
    manifest = _manifest(bundle)
    del manifest["files"]
    _write(bundle, manifest)


def no_int8(bundle: Path) -> None:
    (bundle / "model_int8.tflite").rename(bundle / "model_fp32.tflite")
    manifest = _manifest(bundle)
    manifest["variants"] = {"fp32": {**manifest["variants"]["int8"], "file": "model_fp32.tflite"}}
    _write(bundle, manifest)
    rehash(bundle)


def variant_left_out_of_files(bundle: Path) -> None:
    manifest = _manifest(bundle)
    del manifest["files"]["model_int8.tflite"]
    _write(bundle, manifest)


@pytest.mark.parametrize("make, says", [
    (no_variant, "names no variant"),
    (unhashed_variant, "variant int8 has no sha256"),
    (older_export, "binds no file but the variants"),
    (no_int8, "no int8 variant, the one the service runs"),
    (variant_left_out_of_files, "model_int8.tflite is not among the manifest's files"),
])
def test_a_manifest_that_does_not_bind_the_model_is_refused(tmp_path, capsys, make, says):
    bundle = hand_made(tmp_path / "b")
    make(bundle)
    check, detail, err = refused_by(tmp_path / "models", bundle, capsys)
    assert check == "manifest" and says in detail, detail
    assert "re-export" in detail or make not in (unhashed_variant, older_export)
    assert "the manifest check failed" in err
    nothing_changed(tmp_path / "models")


def unlisted_file(bundle: Path, outside: Path) -> None:
    (bundle / "notes.txt").write_text("mine")


def hidden_unlisted_file(bundle: Path, outside: Path) -> None:
    (bundle / "imx500").mkdir()
    (bundle / "imx500" / ".cache").write_text("x")


def listed_file_missing(bundle: Path, outside: Path) -> None:
    (bundle / "labels.txt").unlink()


def link_to_a_file(bundle: Path, outside: Path) -> None:
    (outside / "model.tflite").write_bytes((bundle / "model_int8.tflite").read_bytes())
    (bundle / "model_int8.tflite").unlink()
    (bundle / "model_int8.tflite").symlink_to(outside / "model.tflite")


def link_to_dev_zero(bundle: Path, outside: Path) -> None:
    (bundle / "eval_set.npz").unlink()
    (bundle / "eval_set.npz").symlink_to("/dev/zero")


def link_to_a_folder(bundle: Path, outside: Path) -> None:
    (outside / "home").mkdir()
    (outside / "home" / "secret.txt").write_text("not the model's")
    (bundle / "imx500").symlink_to(outside / "home", target_is_directory=True)


def fifo(bundle: Path, outside: Path) -> None:
    (bundle / "labels.txt").unlink()
    os.mkfifo(bundle / "labels.txt")


def device_file(bundle: Path, outside: Path) -> None:
    (bundle / "eval_set.npz").unlink()
    try:
        os.mknod(bundle / "eval_set.npz", 0o600 | 0o020000, os.makedev(1, 5))  # /dev/zero's
    except PermissionError:
        pytest.skip("making a device file needs root (CAP_MKNOD); the FIFO case runs anyway")


@pytest.mark.parametrize("make, says", [
    (unlisted_file, "notes.txt is not among the manifest's files"),
    (hidden_unlisted_file, "imx500/.cache is not among the manifest's files"),
    (listed_file_missing, "labels.txt is in the manifest but not in the bundle"),
    (link_to_a_file, "model_int8.tflite is a symbolic link"),
    (link_to_dev_zero, "eval_set.npz is a symbolic link"),
    (link_to_a_folder, "imx500 is a symbolic link"),
    (fifo, "labels.txt is a FIFO, not a file"),
    (device_file, "eval_set.npz is a character device, not a file"),
])
def test_only_what_the_manifest_binds_is_copied(tmp_path, capsys, make, says):
    bundle = hand_made(tmp_path / "b")
    make(bundle, tmp_path)
    check, detail, err = refused_by(tmp_path / "models", bundle, capsys)
    assert check == "copy" and detail.startswith(says), detail
    lines = err.strip().splitlines()  # manifest ok; refused, the failed check and why in it
    assert len(lines) == 2 and f"the copy check failed: {says}" in lines[1], err
    nothing_changed(tmp_path / "models")


def test_a_refused_bundle_in_incoming_is_removed_so_the_next_deploy_copies_it_whole(
        tmp_path, capsys):
    root = tmp_path / "models"
    code, out, _ = edge_model(root, "incoming", "abc", capsys=capsys)
    incoming = Path(out.strip())
    shutil.rmtree(incoming)
    bundle = hand_made(incoming)
    (bundle / "notes.txt").write_text("mine")
    assert refused_by(root, bundle, capsys)[0] == "copy"
    assert not incoming.exists()


def test_no_room_on_the_card_refuses_before_anything_is_copied(tmp_path, capsys):
    root = tmp_path / "models"
    free_mb = shutil.disk_usage(tmp_path).free / 1e6
    code, out, err = edge_model(root, "activate", str(hand_made(tmp_path / "b")), "--json",
                                "--min-free-mb", f"{free_mb + 1000:.0f}", capsys=capsys)
    assert code == 1
    failed = [c for c in json.loads(out)["checks"] if not c["ok"]]
    assert [c["name"] for c in failed] == ["copy"]
    assert "MB free; the copy needs" in failed[0]["detail"]
    assert "--min-free-mb" in failed[0]["detail"]
    nothing_changed(root)


# ----------------------------------------------------------------------------- labels

def test_labels_are_any_printable_name_one_per_line():
    from common.labels import label_problem, labels_text, parse_labels

    labels = ["golden retriever", "crème brûlée", "日本酒", "no.2"]
    assert all(label_problem(label) is None for label in labels)
    assert parse_labels(labels_text(labels)) == labels
    for bad in ("a\u2028b", "zero\u200bwidth", "bell\x07", "line\nbreak", "a/b"):
        assert label_problem(bad), bad


def test_training_takes_class_folders_with_spaces_and_accents_and_refuses_unprintable(
        tmp_path, demo_dir):
    from common.errors import DataError
    from train.splits import scan_folder

    data = tmp_path / "data"
    for label, source in zip(["golden retriever", "crème brûlée"],
                             sorted(p for p in demo_dir.iterdir() if p.is_dir())):
        shutil.copytree(source, data / label)
    assert scan_folder(data)[1] == ["crème brûlée", "golden retriever"]
    shutil.copytree(data / "golden retriever", data / "tab\there")
    with pytest.raises(DataError, match="rename the folder"):
        scan_folder(data)


def test_labels_txt_that_is_not_the_manifest_s_labels_one_per_line_is_refused(tmp_path,
                                                                              capsys):
    bundle = hand_made(tmp_path / "b")
    # the same words, split at the space: what reading labels.txt by words did
    (bundle / "labels.txt").write_text("golden\nretriever\ncrème brûlée\n")
    rehash(bundle)
    check, detail, _ = refused_by(tmp_path / "models", bundle, capsys)
    assert check == "labels" and "one a line" in detail


# ----------------------------------------------------------------------------- the service

def test_the_status_file_names_the_version_each_loaded_model_classifies_with(tmp_path):
    root = tmp_path / "models"
    for version in ("aaa", "bbb"):
        (root / "versions" / version).mkdir(parents=True)
        (root / "versions" / version / "model_int8.tflite").write_bytes(b"m")
    (root / "current").symlink_to("versions/aaa")
    reporter = StatusReporter(root / "current" / "model_int8.tflite")
    assert read_status(root) is None  # nothing before a frame is classified
    reporter.frame_classified()
    first = read_status(root)
    assert (first.version, first.pid, first.frames) == ("aaa", os.getpid(), 1) and first.alive
    written = (root / STATUS_FILE).stat().st_mtime_ns
    reporter.frame_classified()  # once a model, not once a frame
    assert (root / STATUS_FILE).stat().st_mtime_ns == written
    reporter.loaded(root / "versions" / "bbb" / "model_int8.tflite")  # a reload swapped it in
    reporter.frame_classified()
    assert (read_status(root).version, read_status(root).frames) == ("bbb", 3)
    # a model outside a store: nothing written anywhere
    elsewhere = tmp_path / "pets"
    elsewhere.mkdir()
    StatusReporter(elsewhere / "model_int8.tflite").frame_classified()
    assert list(elsewhere.iterdir()) == []


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def pretend_service(root: Path, version: str, pid: int | None = None) -> None:
    write_service_status(root, ServiceStatus(version, pid or os.getpid(), 10, time.time(),
                                             f"{root}/versions/{version}/model_int8.tflite"))


# ----------------------------------------------------------------------------- the real model

@pytest.fixture(scope="module")
def small(bundle, tmp_path_factory) -> Path:
    """The tiny bundle with its int8 variant only: every check, in a fraction of the time."""
    return slim(bundle, tmp_path_factory.mktemp("slim") / "export")


def test_a_bundle_with_the_ai_camera_s_network_activates(small, tmp_path, capsys):
    root = tmp_path / "models"
    sensor = with_sensor_network(small, tmp_path / "sensor")
    code, out, err = edge_model(root, "activate", str(sensor), "--json", capsys=capsys)
    assert code == 0, err
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert list(checks) == ["manifest", "copy", "sha256", "labels", "imx500", "answers",
                            "commit"]
    assert checks["imx500"]["ok"] and "64x64 → 5 scores" in checks["imx500"]["detail"]
    assert "imx500" not in checks["answers"]["detail"]  # the sensor's network: no CPU answers
    assert (root / "current" / "imx500" / "packerOut.zip").is_file()
    # what imx500-package makes of the checked zip on the device is the device's, not damage
    (root / "current" / "imx500" / "network.rpk").write_bytes(b"packaged here")
    code, _, err = edge_model(root, "check", capsys=capsys)
    assert code == 0 and "intact" in err
    # a network the sensor would feed mis-scaled pictures is refused by its dnnParams.xml
    wrong = with_sensor_network(small, tmp_path / "wrong", scale="0.00390625")
    check, detail, _ = refused_by(root, wrong, capsys)
    assert check == "imx500" and "mis-scaled" in detail


def test_a_damaged_current_version_is_found_and_repaired_by_activating_it_again(
        small, tmp_path, capsys):
    root = tmp_path / "models"
    v1 = renamed(small, tmp_path / "v1", "one-")
    assert edge_model(root, "activate", str(v1), capsys=capsys)[0] == 0
    code, _, err = edge_model(root, "check", capsys=capsys)
    assert code == 0 and "intact" in err
    model = root / "current" / "model_int8.tflite"
    damaged = bytearray(model.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    model.write_bytes(bytes(damaged))  # a failing card: same size, another byte
    (root / "current" / "notes.txt").write_text("dropped here")
    code, _, err = edge_model(root, "check", capsys=capsys)
    assert code == 1 and "DAMAGED" in err
    assert "model_int8.tflite: sha256" in err and "notes.txt: not among" in err
    code, out, err = edge_model(root, "activate", str(v1), "--json", capsys=capsys)
    report = json.loads(out)
    assert code == 0 and report["result"] == "repaired", err
    copy = next(c for c in report["checks"] if c["name"] == "copy")
    assert "model_int8.tflite" in copy["detail"] and "notes.txt" in copy["detail"]
    assert edge_model(root, "check", capsys=capsys)[0] == 0
    # intact and current: looked at, and nothing to do
    code, out, _ = edge_model(root, "activate", str(v1), "--json", capsys=capsys)
    assert json.loads(out)["result"] == "already current"
    assert [c["name"] for c in json.loads(out)["checks"]] == ["manifest", "copy", "sha256",
                                                              "labels"]


def test_an_older_installed_version_is_repaired_from_the_fresh_copy_not_refused(
        small, tmp_path, capsys):
    root = tmp_path / "models"
    v1, v2 = renamed(small, tmp_path / "v1", "one-"), renamed(small, tmp_path / "v2", "two-")
    first = json.loads(edge_model(root, "activate", str(v1), "--json", capsys=capsys)[1])
    assert edge_model(root, "activate", str(v2), capsys=capsys)[0] == 0
    (root / "versions" / first["version"] / "eval_set.npz").write_bytes(b"rotten")
    code, _, err = edge_model(root, "incoming", first["version"], capsys=capsys)
    incoming = root / "incoming" / first["version"]
    shutil.copytree(v1, incoming, dirs_exist_ok=True)
    code, out, err = edge_model(root, "activate", str(incoming), "--json", capsys=capsys)
    assert code == 0 and json.loads(out)["result"] == "activated", err
    assert os.readlink(root / "current") == f"versions/{first['version']}"
    assert incoming.is_dir()  # the copy that repaired it stays for the next deploy's rsync


def test_rollback_onto_a_damaged_previous_version_is_refused(small, tmp_path, capsys):
    root = tmp_path / "models"
    v1, v2 = renamed(small, tmp_path / "v1", "one-"), renamed(small, tmp_path / "v2", "two-")
    assert edge_model(root, "activate", str(v1), capsys=capsys)[0] == 0
    assert edge_model(root, "activate", str(v2), capsys=capsys)[0] == 0
    links = os.readlink(root / "current"), os.readlink(root / "previous")
    (root / "previous" / "labels.txt").write_text("tampered\n")
    code, _, err = edge_model(root, "rollback", capsys=capsys)
    assert code == 1 and "is damaged (labels.txt: sha256" in err and "not rolled back" in err
    assert (os.readlink(root / "current"), os.readlink(root / "previous")) == links


def test_a_service_whose_current_version_is_damaged_falls_back_to_previous_at_start(
        small, tmp_path, capsys):
    root = tmp_path / "models"
    v1, v2 = renamed(small, tmp_path / "v1", "one-"), renamed(small, tmp_path / "v2", "two-")
    assert edge_model(root, "activate", str(v1), capsys=capsys)[0] == 0
    assert edge_model(root, "activate", str(v2), capsys=capsys)[0] == 0
    old, new = os.readlink(root / "previous"), os.readlink(root / "current")
    model = str(root / "current" / "model_int8.tflite")
    # what the unit runs before each start (deploy/edge-classify.service, ExecStartPre=)
    assert main(["check", "--fallback", "--model", model]) == 0
    assert "intact" in capsys.readouterr().err
    (root / "current" / "model_int8.tflite").write_bytes(b"")  # a power cut's empty file
    assert main(["check", "--fallback", "--model", model]) == 0
    err = capsys.readouterr().err
    assert "FALLBACK: current version" in err and "model_int8.tflite: sha256" in err
    assert len([line for line in err.splitlines() if "FALLBACK" in line]) == 1
    assert (os.readlink(root / "current"), os.readlink(root / "previous")) == (old, new)
    # the previous one damaged too: no version to run, said so, exit 1
    (root / "current" / "labels.txt").write_text("x\n")
    assert main(["check", "--fallback", "--model", model]) == 1
    assert "NO VERSION TO RUN" in capsys.readouterr().err
    # a model outside a store has nothing to check
    assert main(["check", "--fallback", "--model", str(v1 / "model_int8.tflite")]) == 0
    assert "nothing to check" in capsys.readouterr().err


def test_a_current_version_that_does_not_load_falls_back_too(small, tmp_path, capsys):
    root = tmp_path / "models"
    v1, v2 = renamed(small, tmp_path / "v1", "one-"), renamed(small, tmp_path / "v2", "two-")
    assert edge_model(root, "activate", str(v1), capsys=capsys)[0] == 0
    assert edge_model(root, "activate", str(v2), capsys=capsys)[0] == 0
    old = os.readlink(root / "previous")
    # every hash intact, but what --model names does not load in the interpreter (a unit
    # pointing at the wrong file of the version, or a runtime that changed under it)
    model = str(root / "current" / "labels.txt")
    assert main(["check", "--fallback", "--model", model]) == 0
    err = capsys.readouterr().err
    assert "labels.txt: does not load" in err and "FALLBACK" in err
    assert os.readlink(root / "current") == old


def test_a_service_that_never_commits_the_new_version_gets_the_old_one_back(
        small, tmp_path, capsys):
    root = tmp_path / "models"
    v1, v2 = renamed(small, tmp_path / "v1", "one-"), renamed(small, tmp_path / "v2", "two-")
    first = json.loads(edge_model(root, "activate", str(v1), "--json", capsys=capsys)[1])
    pretend_service(root, first["version"])  # this process is "the service", on v1
    code, out, err = edge_model(root, "list", capsys=capsys)
    assert "running" in out.splitlines()[1]
    start = time.monotonic()
    code, out, err = edge_model(root, "activate", str(v2), "--json", "--health-timeout", "1",
                                capsys=capsys)
    report = json.loads(out)
    assert code == 1 and report["result"] == "rolled back", err
    assert 1 <= time.monotonic() - start < 30
    assert report["checks"][-1]["name"] == "commit" and not report["checks"][-1]["ok"]
    assert "did not report" in err and f"switched back to {first['version']}" in err
    assert os.readlink(root / "current") == f"versions/{first['version']}"
    # a service that reports the new version after the switch commits it
    second = report["version"]

    def service_reloads():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if os.readlink(root / "current").endswith(second):
                pretend_service(root, second)
                return
            time.sleep(0.05)

    reloader = threading.Thread(target=service_reloads)
    reloader.start()
    code, out, err = edge_model(root, "activate", str(v2), "--json", "--health-timeout", "20",
                                capsys=capsys)
    reloader.join()
    assert code == 0 and json.loads(out)["result"] == "activated", err
    assert "classifies with it" in json.loads(out)["checks"][-1]["detail"]
    code, out, _ = edge_model(root, "list", capsys=capsys)
    rows = {line.split()[1]: line for line in out.splitlines()[1:]}
    assert "running" in rows[second] and rows[second].startswith("*")
    # a status file whose process is gone is no service: nothing to wait for
    pretend_service(root, first["version"], pid=dead_pid())
    assert edge_model(root, "rollback", capsys=capsys)[0] == 0
    code, out, err = edge_model(root, "activate", str(v2), "--json", "--health-timeout", "60",
                                capsys=capsys)
    assert code == 0 and "no service runs" in json.loads(out)["checks"][-1]["detail"]


def test_leftovers_of_an_interrupted_activation_and_stale_incoming_copies_are_pruned(
        small, tmp_path, capsys):
    root = tmp_path / "models"
    v1 = renamed(small, tmp_path / "v1", "one-")
    assert edge_model(root, "activate", str(v1), capsys=capsys)[0] == 0
    (root / "versions" / ".abc.half").mkdir()
    (root / "versions" / ".abc.repair.1234").write_bytes(b"x")
    (root / ".current.999").symlink_to("versions/abc")
    old = root / "incoming" / "0123456789ab"
    old.mkdir(parents=True)
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    young = root / "incoming" / "ba9876543210"  # an edge-deploy copying now
    young.mkdir()
    assert edge_model(root, "prune", capsys=capsys)[0] == 0
    assert [p.name for p in (root / "versions").iterdir()] == [os.readlink(
        root / "current").split("/")[1]]
    assert not os.path.lexists(root / ".current.999")
    assert not old.exists() and young.exists()


def test_the_store_is_used_as_a_library_too(small, tmp_path):
    store = Store(tmp_path / "models")
    done = activate(store, renamed(small, tmp_path / "v1", "one-"), health_timeout_s=1)
    assert done.ok and done.result == "activated"


def test_a_service_on_the_ai_camera_gets_the_network_upload_on_top_of_the_commit_wait(tmp_path):
    from deploy.store import HEALTH_TIMEOUT_S, commit_timeout
    from edge_runtime.stream.upload_watch import DEFAULT_UPLOAD_WAIT_S

    version = tmp_path / "models" / "versions" / "abc"
    assert commit_timeout(version / "model_int8.tflite") == HEALTH_TIMEOUT_S
    # the first frame of a new network comes after its upload: minutes (imx500/packerOut.zip)
    assert commit_timeout(version / "imx500" / "packerOut.zip") == (
        HEALTH_TIMEOUT_S + DEFAULT_UPLOAD_WAIT_S)
