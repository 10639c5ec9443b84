"""edge-classify --shadow on a looping video: the same model's fp16 and int8 beside its fp32
agree, a candidate that answers otherwise does not, the ``"shadow"`` object in --json, the disagreeing
frames in the data root; and on a store, ``edge-model stage`` → the service's shadow →
``edge-model promote --min-agreement`` (refused below it, activated above), ``stage --clear``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.labels import read_labels
from deploy import model_cli
from edge_runtime.capture import data_root
from edge_runtime.commands import classify as cli
from edge_runtime.service_status import read_status
from tests.bundle_variants import rehash, relabelled, slim
from tests.helpers import demo_images, write_video

FRAMES = 400


@pytest.fixture
def video(demo_dir, tmp_path) -> Path:
    return write_video(tmp_path / "clip.avi", demo_images(demo_dir), frames=40)


def shadow_run(model: Path, candidate: Path, video: Path, capsys) -> dict:
    """A --loop --json run with ``candidate`` as the shadow; its summary's ``"shadow"``."""
    code = cli.main(["--model", str(model), "--camera", str(video), "--loop", "--headless",
                     "--json", "--max-frames", str(FRAMES), "--shadow", str(candidate),
                     "--shadow-share", "1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])["summary"]
    assert summary["frames"] == FRAMES
    return summary["shadow"]


def test_the_same_model_agrees_and_another_model_does_not(bundle, video, tmp_path, capsys,
                                                         monkeypatch):
    root = tmp_path / "édge data"  # the data root, a name with a space and an accent
    monkeypatch.setenv(data_root.ENVIRONMENT, str(root))
    live = bundle / "model_fp32.tflite"

    same = shadow_run(live, bundle / "model_fp16.tflite", video, capsys)
    assert same["frames"] >= 10 and same["agreement"] >= 0.95, same
    assert same["candidate"] != same["live"]
    assert sum(c["frames"] for c in same["per_class"].values()) == same["frames"]
    # int8 rounds: the tests' tiny model (60-90 % accurate) keeps 80-90 % of fp32's answers on
    # its own evaluation set (the manifest's agreement), so the bar here is lower than a real
    # model's 0.9
    quantized = shadow_run(live, bundle / "model_int8.tflite", video, capsys)
    assert quantized["frames"] >= 10 and quantized["agreement"] >= 0.7, quantized

    # the same network under rotated label names: every top-1 names another class, as a
    # model that answers otherwise would
    labels = read_labels(bundle / "labels.txt")
    other = relabelled(bundle, tmp_path / "other", labels[1:] + labels[:1])
    differ = shadow_run(live, other / "model_int8.tflite", video, capsys)
    assert differ["frames"] >= 10 and differ["agreement"] <= 0.1, differ

    lines = [json.loads(x) for x in
             data_root.index_path(root, data_root.SHADOW).read_text().splitlines()]
    assert lines and len(lines) == len(list((root / data_root.SHADOW).rglob("*.jpg")))
    assert all(line["live"]["label"] != line["candidate"]["label"] for line in lines)
    assert all((root / line["file"]).is_file() for line in lines)


def test_shadow_flag_checks(bundle, capsys):
    model = str(bundle / "model_int8.tflite")
    for argv, says in ((["--shadow", str(bundle / "nothing.tflite"), "--camera", "x.avi"],
                        "no such model file"),
                       (["--shadow", model, str(bundle / "labels.txt")], "--camera only"),
                       (["--shadow", model, "--camera", "x.avi", "--shadow-share", "0"],
                        "--shadow-share")):
        assert cli.main(["--model", model, *argv]) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err, err


def edge_model(root: Path, *argv: str, capsys) -> tuple[int, str, str]:
    code = model_cli.main([*argv, "--root", str(root)])
    out, err = capsys.readouterr()
    return code, out, err


def service_run(root: Path, video: Path) -> None:
    """The service on the store, as a process of its own (its pid then dead: promote does not
    wait for a commit): the current version classifies, the staged one shadows it."""
    done = subprocess.run(
        [sys.executable, "-m", "edge_runtime.commands.classify", "--model",
         str(root / "current" / "model_int8.tflite"), "--camera", str(video), "--loop",
         "--headless", "--summary-every", "60", "--max-frames", str(FRAMES),
         "--shadow-share", "1"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, data_root.ENVIRONMENT: str(root.parent / "data")})
    assert done.returncode == 0, done.stderr


def test_stage_then_promote_only_above_the_agreement(bundle, video, tmp_path, capsys):
    root = tmp_path / "models"
    live = slim(bundle, tmp_path / "live")  # int8 only: the checks take a fraction
    assert edge_model(root, "activate", str(live), capsys=capsys)[0] == 0
    assert read_status(root) is None  # no service has run on it yet

    # another version of the same network, under other label names: it disagrees everywhere
    labels = read_labels(live / "labels.txt")
    wrong = rehash(relabelled(live, tmp_path / "wrong", labels[1:] + labels[:1]))
    code, out, err = edge_model(root, "stage", str(wrong), "--json", capsys=capsys)
    assert code == 0 and json.loads(out)["result"] == "staged", err
    code, out, _ = edge_model(root, "promote", "--min-frames", "10", capsys=capsys)
    assert code == 1 and "reported no shadow run" in _
    service_run(root, video)
    shadow = read_status(root).shadow
    assert shadow["frames"] >= 10 and shadow["agreement"] <= 0.5, shadow
    before = os.readlink(root / "current")
    code, out, err = edge_model(root, "promote", "--min-agreement", "0.95", "--min-frames",
                                "20", "--json", capsys=capsys)
    report = json.loads(out)
    assert code == 1 and report["result"] == "not promoted", err
    assert "below --min-agreement 0.95" in err
    assert os.readlink(root / "current") == before and (root / "staged").is_symlink()

    # the same network and labels, another version: it agrees on every frame
    assert edge_model(root, "stage", "--clear", capsys=capsys)[0] == 0
    assert not os.path.lexists(root / "staged")
    good = rehash(slim(bundle, tmp_path / "good"), notes="retrained")
    code, out, err = edge_model(root, "stage", str(good), "--json", capsys=capsys)
    staged = json.loads(out)["version"]
    assert code == 0, err
    code, _, err = edge_model(root, "promote", "--min-frames", "10", capsys=capsys)
    assert code == 1 and f"not of the staged {staged}" in err  # the report is the last one's
    service_run(root, video)
    assert read_status(root).shadow["agreement"] >= 0.95
    code, _, err = edge_model(root, "promote", "--min-frames", str(10 * FRAMES), capsys=capsys)
    assert code == 1 and "fewer than --min-frames" in err
    code, out, err = edge_model(root, "promote", "--min-agreement", "0.95", "--min-frames",
                                "20", "--json", capsys=capsys)
    assert code == 0 and json.loads(out)["result"] == "activated", err
    assert Path(os.readlink(root / "current")).name == staged
    assert not os.path.lexists(root / "staged")
