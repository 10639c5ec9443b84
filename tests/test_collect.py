"""The device's data root (edge_runtime/capture/data_root.py) and what edge-collect does with a
copy of it on the workstation (deploy/collect/): each distinct picture once, by sha256, across
hosts and runs; a second run that changes nothing; a run killed mid-way that a second completes;
the drift report. No ssh here: the copies are written where rsync would put them (``--staged``);
tests/test_collect_fleet.py pulls them over sshd."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deploy.collect import drift
from deploy.collect.cli import main
from deploy.collect.collection import Collection, read_index
from deploy.collect.pull import Host
from edge_runtime.capture import data_root

START = datetime(2026, 12, 4, 7, 0, tzinfo=timezone.utc)


def jpeg(seed: int, noise: int = 0, size: int = 48) -> bytes:
    """A picture of its own for each ``seed``; ``noise`` > 0 gives a near-duplicate of it."""
    rng = np.random.default_rng(seed)
    base = np.kron(rng.integers(0, 255, (4, 4, 3)), np.ones((size // 4, size // 4, 1)))
    if noise:
        base = base + np.random.default_rng(1000 + noise).integers(-3, 4, base.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def write_device(root: Path, captures=(), uncertain=(), shadow=(), monitor=()) -> None:
    """A device's data root written through the contract's own functions, as the device's
    writers would: ``captures`` (label, name, bytes), ``uncertain`` (prediction, name, bytes,
    top score), ``shadow`` (name, bytes), ``monitor`` (records)."""
    for n, (label, name, data) in enumerate(captures):
        path = root / data_root.CAPTURES / label / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        data_root.append_record(data_root.index_path(root, data_root.CAPTURES), {
            "time": data_root.utc_time(START.timestamp() + n),
            "file": path.relative_to(root).as_posix(), "label": label, "source": "picam:0",
            "model_version": None})
    for n, (prediction, name, data, score) in enumerate(uncertain):
        path = root / data_root.UNCERTAIN / prediction / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        data_root.append_record(data_root.index_path(root, data_root.UNCERTAIN), {
            "time": data_root.utc_time(START.timestamp() + 60 + n),
            "file": path.relative_to(root).as_posix(), "prediction": prediction,
            "scores": [{"label": prediction, "score": score},
                       {"label": "other", "score": round(score - 0.1, 3)}],
            "model_version": "0123456789ab", "source": "picam:0"})
    for name, data in shadow:
        path = root / data_root.SHADOW / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        data_root.append_record(data_root.index_path(root, data_root.SHADOW), {
            "time": data_root.utc_time(START.timestamp() + 120),
            "file": path.relative_to(root).as_posix(),
            "live": {"label": "cup", "score": 0.7, "version": "0123456789ab"},
            "candidate": {"label": "mug", "score": 0.8, "version": "ba9876543210"},
            "source": "picam:0"})
    for record in monitor:
        data_root.append_record(root / data_root.MONITOR_FILE, record)


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes (the state a second run must not change)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------- the data root

@pytest.mark.edge  # the device's side: runs on the Pi (make pi-check)
def test_default_data_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGE_DATA_ROOT", str(tmp_path / "données pi"))
    assert data_root.default_data_root() == tmp_path / "données pi"
    monkeypatch.setenv("EDGE_DATA_ROOT", "  ")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data_root.default_data_root() == tmp_path / "edge-data"


@pytest.mark.edge  # the device's side: runs on the Pi (make pi-check)
def test_a_torn_last_line_is_skipped_and_the_next_record_starts_a_line(tmp_path):
    path = tmp_path / "captures" / "index.jsonl"
    data_root.append_record(path, {"n": 1})
    with open(path, "ab") as f:
        f.write(b'{"n": 2, "fi')  # the plug pulled mid-write
    assert [r["n"] for r in data_root.read_records(path)] == [1]
    data_root.append_record(path, {"n": 3, "label": "café"})
    assert list(data_root.read_records(path)) == [{"n": 1}, {"n": 3, "label": "café"}]
    assert list(data_root.read_records(tmp_path / "absent.jsonl")) == []


@pytest.mark.edge  # the device's side: runs on the Pi (make pi-check)
def test_the_monitor_file_is_rotated_past_its_size(tmp_path):
    current, rotated = tmp_path / data_root.MONITOR_FILE, tmp_path / data_root.MONITOR_ROTATED
    for n in range(30):
        data_root.append_record(current, {"time": data_root.utc_time(n), "frames": n},
                                max_bytes=400, rotated=rotated)
    assert current.stat().st_size <= 400 and rotated.stat().st_size <= 400
    frames = [r["frames"] for r in data_root.monitor_records(tmp_path)]
    assert frames == list(range(frames[0], 30)) and frames[0] > 0  # the oldest were dropped


@pytest.mark.edge  # the device's side: runs on the Pi (make pi-check)
def test_times_are_utc_and_read_back(tmp_path):
    text = data_root.utc_time(START.timestamp() + 0.25)
    assert text == "2026-12-04T07:00:00.250+00:00"
    assert data_root.parse_time(text) == START + timedelta(milliseconds=250)
    assert data_root.parse_time("2026-12-04T07:00:00Z") == START


# ---------------------------------------------------------------------------- the collection

def test_edge_collect_and_edge_label_import_no_tensorflow():
    script = ("import sys\n"
              "import deploy.collect.cli, deploy.label.cli, deploy.collect.drift\n"
              "print(sorted(n for n in sys.modules if n.split('.')[0] in ('tensorflow', 'keras')))")
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[1],
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stderr[-2000:]


def staged(collection: Collection, host: str) -> Path:
    return collection.staging(host)


@pytest.fixture
def two_hosts(tmp_path):
    """A collection with two hosts' copies: one picture on both (captured on a, uncertain on
    b), one shadow frame on b, a picture from a device that stopped before its index line."""
    collection = Collection(tmp_path / "collected")
    shared, only_a, only_b, shadow = jpeg(1), jpeg(2), jpeg(3), jpeg(4)
    write_device(staged(collection, "pi-a"),
                 captures=[("cup", "capture-1.jpg", shared), ("cup", "capture-2.jpg", only_a)],
                 monitor=[{"time": data_root.utc_time(START.timestamp()), "frames": 10}])
    write_device(staged(collection, "pi b"),
                 captures=[("tasse à café", "capture-1.jpg", only_b)],
                 uncertain=[("mug", "uncertain-1.jpg", shared, 0.41)],
                 shadow=[("shadow-1.jpg", shadow)])
    lost = staged(collection, "pi b") / data_root.UNCERTAIN / "cup" / "uncertain-9.jpg"
    lost.parent.mkdir()
    lost.write_bytes(jpeg(5))
    (lost.parent / ".uncertain.1234.part").write_bytes(b"half a pic")  # a writer's temp file
    return collection, {"shared": shared, "only_a": only_a, "only_b": only_b,
                        "shadow": shadow, "lost": lost.read_bytes()}


def by_bytes(folder: Path) -> dict[bytes, list[str]]:
    found: dict[bytes, list[str]] = {}
    for name, data in tree(folder).items():
        if not name.startswith(".") and name.endswith(".jpg"):
            found.setdefault(data, []).append(name)
    return found


def test_each_distinct_picture_is_stored_once_with_every_host_that_had_it(two_hosts):
    collection, pictures = two_hosts
    with collection.locked():
        a, b = collection.take("pi-a"), collection.take("pi b")
        collection.finish()
    assert (a.pictures, a.new, a.monitor) == (2, 2, 1)
    assert (b.pictures, b.new, b.monitor) == (4, 3, 0)
    stored = by_bytes(collection.folder)
    assert all(len(names) == 1 for names in stored.values())
    assert set(stored) == set(pictures.values())
    index = read_index(collection.index_path)
    lines = collection.index_path.read_text().splitlines()
    assert len(lines) == len(index) == 5  # one line per picture after the run
    shared = next(e for e in index.values() if e["file"] in stored[pictures["shared"]])
    assert shared["hosts"] == ["pi b", "pi-a"] and shared["label"] == "cup"
    assert shared["file"].startswith("cup/")  # labelled on pi-a: stored under its label
    assert shared["prediction"] == "mug" and shared["scores"][0]["score"] == 0.41
    assert shared["model_versions"] == ["0123456789ab"]
    assert shared["first_time"] < shared["last_time"]
    files = {e["file"].split("/")[0]: e for e in index.values()}
    assert files["tasse à café"]["kind"] == "capture"
    shadow = next(e for e in index.values() if e["kind"] == "shadow")
    assert shadow["file"].startswith("unlabelled/") and shadow["label"] is None
    assert shadow["shadow"]["candidate"]["label"] == "mug"
    assert shadow["model_versions"] == ["0123456789ab", "ba9876543210"]
    lost = next(e for e in index.values() if e["prediction"] == "cup")
    assert lost["scores"] is None and lost["file"].startswith("unlabelled/")
    # the stored picture is the staged one's second name: no second copy on the disk
    staged_shared = staged(collection, "pi-a") / "captures/cup/capture-1.jpg"
    assert os.path.samefile(staged_shared, collection.folder / shared["file"])
    assert (collection.folder / "monitor" / "pi-a.jsonl").is_file()


def test_a_second_run_changes_nothing(two_hosts):
    collection, _ = two_hosts
    for host in ("pi-a", "pi b"):
        collection.take(host)
    collection.finish()
    before = tree(collection.folder)
    again = Collection(collection.folder)
    assert [again.take(h).new for h in ("pi-a", "pi b")] == [0, 0]
    again.finish()
    assert tree(collection.folder) == before


def test_a_run_killed_after_storing_loses_nothing_and_the_next_completes(two_hosts,
                                                                         monkeypatch):
    collection, pictures = two_hosts

    def killed(path, records):
        raise KeyboardInterrupt  # as if kill -9 came before the index lines

    monkeypatch.setattr(data_root, "append_records", killed)
    with pytest.raises(KeyboardInterrupt):
        collection.take("pi b")
    monkeypatch.undo()
    assert not collection.index_path.exists()
    again = Collection(collection.folder)
    for host in ("pi b", "pi-a"):
        again.take(host)
    again.finish()
    stored = by_bytes(collection.folder)
    assert all(len(names) == 1 for names in stored.values()), stored
    assert len(read_index(collection.index_path)) == len(pictures)


def test_a_picture_moved_out_is_not_stored_again(two_hosts, tmp_path):
    collection, _ = two_hosts
    collection.take("pi-a")
    collection.finish()
    entry = next(iter(collection.entries.values()))
    os.rename(collection.folder / entry["file"], tmp_path / "elsewhere.jpg")  # edge-label's
    again = Collection(collection.folder)
    assert again.take("pi-a").new == 0
    assert not (collection.folder / entry["file"]).exists()


def test_another_run_writing_into_the_folder_is_refused(two_hosts, capsys):
    collection, _ = two_hosts
    with collection.locked():
        code = main(["pi-a", "--staged", "--out",
                     str(collection.folder)])
    assert code == 2
    assert "another edge-collect is writing into" in capsys.readouterr().err


def test_staged_copies_through_the_command(two_hosts, capsys):
    collection, _ = two_hosts
    code = main(["pi-a", "pi b", "pi-c", "--staged", "--out", str(collection.folder), "--json"])
    out, err = capsys.readouterr()
    rows = {r["host"]: r for r in map(json.loads, out.splitlines())}
    assert code == 1  # pi-c has no copy
    assert (rows["pi-a"]["new"], rows["pi b"]["new"]) == (2, 3)
    assert rows["pi-c"]["ok"] is False and "no staged copy" in rows["pi-c"]["result"]
    assert "1 of 3 host(s) not collected: pi-c" in err


@pytest.mark.parametrize("argv,message", [
    (["--out", "x"], "name the hosts to collect from"),
    (["pi", "--staged", "--prune-remote", "--out", "x"], "--prune-remote needs ssh"),
    (["-oProxyCommand=x", "--out", "x"], "unrecognized arguments"),
    (["pi/a", "--out", "x", "--staged"], "path separator"),
    (["--out", "x", "--report"], "no monitoring records"),
])
def test_usage_errors_are_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_host_and_path():
    assert Host.parse("pi@10.0.0.7") == Host("pi@10.0.0.7", None)
    assert Host.parse("pi-door:/srv/edge data") == Host("pi-door", "/srv/edge data")
    for bad in (":/srv", "-oProxyCommand=x"):  # the second one ssh would take for an option
        with pytest.raises(ValueError, match="cannot start with '-' .* nor be empty"):
            Host.parse(bad)


# ---------------------------------------------------------------------------- the drift report

def monitor_day(drifting: bool) -> list[dict]:
    """A day of records a minute apart, every 10 minutes: a steady mix, or one where 'mug'
    takes over and the confidence falls in the afternoon."""
    records = []
    for n in range(0, 24 * 60, 10):
        late = drifting and n > 12 * 60
        counts = {"cup": 20, "mug": 40} if late else {"cup": 45, "mug": 15}
        records.append({"time": data_root.utc_time(START.timestamp() + 60 * n),
                        "model_version": "0123456789ab", "frames": 60, "fps": 1.0,
                        "class_counts": counts, "mean_top1": 0.62 if late else 0.9,
                        "uncertain_share": 0.3 if late else 0.02, "soc_temp_c": 55.0})
    return records


def test_the_drift_report_flags_the_host_whose_mix_and_confidence_moved(tmp_path):
    pytest.importorskip("matplotlib")
    for host, drifting in (("pi-steady", False), ("pi-window", True)):
        data_root.append_records(tmp_path / "monitor" / f"{host}.jsonl", monitor_day(drifting))
    rows, png, why = drift.write_report(tmp_path)
    assert why is None and png == tmp_path / "report" / "drift.png"
    assert [r.host for r in rows] == ["pi-window", "pi-steady"]
    window, steady = rows
    assert window.watch and window.shift == pytest.approx(40 / 60 - 15 / 60, abs=1e-4)
    assert window.confidence_change == pytest.approx(0.62 - 0.9, abs=1e-4)
    assert steady.watch == [] and steady.shift == 0.0 and steady.confidence_change == 0.0
    saved = json.loads((tmp_path / "report" / "drift.json").read_text())
    assert saved["hosts"][0]["host"] == "pi-window"
    assert "| pi-window |" in (tmp_path / "report" / "drift.md").read_text()
    with Image.open(png) as image:
        assert image.size[0] > 800 and image.size[1] > 400


def test_the_command_draws_the_report_alone(tmp_path, capsys):
    data_root.append_records(tmp_path / "monitor" / "pi.jsonl", monitor_day(True))
    code = main(["--out", str(tmp_path), "--report", "--json"])
    report = json.loads(capsys.readouterr().out)["report"]
    assert code == 0 and report["flagged"] == ["pi"] and report["hosts"] == 1


def test_a_picture_stored_unlabelled_moves_to_its_label_when_a_device_labels_it(two_hosts):
    collection, pictures = two_hosts
    collection.take("pi b")  # the shared picture arrives as an uncertain frame first
    first = next(e for e in collection.entries.values() if e["prediction"] == "mug")
    assert first["file"].startswith("unlabelled/")
    collection.take("pi-a")  # pi-a captured it as a cup
    collection.finish()
    entry = read_index(collection.index_path)[first["sha256"]]
    assert entry["file"].startswith("cup/") and entry["label"] == "cup"
    assert by_bytes(collection.folder)[pictures["shared"]] == [entry["file"]]


def test_the_host_is_asked_for_its_own_data_root(tmp_path, monkeypatch):
    """The remote command, run by sh here: the host's $EDGE_DATA_ROOT, else ~/edge-data, else
    nothing (none yet); HOST:PATH's path, ~ expanded there."""
    from deploy.collect import pull

    home = tmp_path / "home of pi"
    (home / "edge-data").mkdir(parents=True)
    (tmp_path / "données").mkdir()
    environment = {"HOME": str(home), "PATH": os.environ["PATH"]}

    def run_here(host, settings, command, stdin=None):
        return subprocess.run(["sh", "-c", command], capture_output=True, text=True, cwd=home,
                              env=environment)

    monkeypatch.setattr(pull, "_ssh", run_here)

    def asked(host: Host) -> str:
        return pull.remote_root(host, None).stdout.strip()

    assert asked(Host("pi")) == str(home / "edge-data")
    environment["EDGE_DATA_ROOT"] = str(tmp_path / "données")
    assert asked(Host("pi")) == str(tmp_path / "données")
    environment["EDGE_DATA_ROOT"] = str(tmp_path / "absent")
    assert asked(Host("pi")) == ""
    assert asked(Host("pi", "~/edge-data")) == str(home / "edge-data")


def test_a_link_in_a_copy_is_not_taken_for_a_picture(two_hosts, tmp_path):
    collection, _ = two_hosts
    secret = tmp_path / "workstation-secret.jpg"
    secret.write_bytes(jpeg(99))
    (staged(collection, "pi-a") / "captures" / "cup" / "link.jpg").symlink_to(secret)
    assert collection.take("pi-a").pictures == 2
    assert jpeg(99) not in by_bytes(collection.folder)
