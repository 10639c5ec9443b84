"""The whole loop on the demo data, a video file as the camera: capture two labels (one new),
mine uncertain frames from the model in use, retrain it with --init-from, and let edge-compare
say which model to ship, with its exit code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks import compare_cli
from edge_runtime.commands import capture as capture_cli
from edge_runtime.commands import classify as classify_cli
from tests.helpers import write_video
from train import cli as train_cli

pytestmark = pytest.mark.long

NEW = "blob"
"""The new class: a magenta blob none of the demo classes looks like."""


def _new_thing_video(path: Path, frames: int, seed: int = 7) -> Path:
    """A camera looking at something none of the demo classes is: a magenta blob on grey, moving
    and noisy, so no two frames (or saved pictures) are the same; another ``seed`` films other
    frames of it."""
    import cv2

    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 64))
    for i in range(frames):
        frame = np.clip(rng.normal(128, 12, (64, 64, 3)), 0, 255).astype(np.uint8)
        cv2.circle(frame, (20 + i % 24, 32), 14, (220, 40, 220), -1)  # BGR magenta
        writer.write(frame)
    writer.release()
    return path


def _capture(video: Path, out: Path, label: str, count: int) -> None:
    code = capture_cli.main(["--camera", str(video), "--out", str(out), "--label", label,
                             "--count", str(count), "--every", "0"])
    assert code == 0
    assert len(list((out / label).glob("*.jpg"))) == count


def test_the_loop(exported_run, demo_dir, tmp_path, capsys):
    known = sorted(p.name for p in demo_dir.iterdir() if p.is_dir())[0]
    known_video = write_video(tmp_path / "known.avi",
                              sorted((demo_dir / known).iterdir()), frames=30)
    new_video = _new_thing_video(tmp_path / "new.avi", frames=60)

    # 1. capture on the device: a class the model knows, and a new one
    photos = tmp_path / "photos"
    _capture(known_video, photos, known, 12)
    _capture(new_video, photos, NEW, 30)

    # 2. mine: the model in use has never seen the new class (--below 1.0: every frame under
    # full certainty, as an out-of-distribution picture may still score high)
    hard = tmp_path / "hard"
    code = classify_cli.main(["--model", str(exported_run / "export" / "model_int8.tflite"),
                              "--camera", str(new_video), "--headless", "--json",
                              "--save-uncertain", str(hard), "--below", "1.0",
                              "--max-per-minute", "10"])
    assert code == 0
    mined = sorted(hard.rglob("*.jpg"))
    assert mined and len(mined) <= 10
    journal = (hard / "index.jsonl").read_text().splitlines()
    assert len(journal) == len(mined)
    for path in mined:  # a person labels them: they all show the new class
        shutil.move(path, photos / NEW / path.name)

    # 3. retrain from the model in use, on the old data and the new pictures
    data = tmp_path / "data"
    shutil.copytree(demo_dir, data)
    for folder in photos.iterdir():  # the label folders (index.jsonl beside them: no class)
        if folder.is_dir():
            shutil.copytree(folder, data / folder.name, dirs_exist_ok=True)
    child = tmp_path / "child"
    assert train_cli.main(["--data", str(data), "--out", str(child), "--init-from",
                           str(exported_run), "--epochs", "4", "--fine-tune-epochs", "0",
                           "--batch-size", "16", "--lr", "3e-3"]) == 0
    config = json.loads((child / "config.json").read_text())
    assert config["parent"]["new"] == [NEW] and config["parent"]["dropped"] == []

    # 4. ship only what is better: pictures kept apart, the new class among them, filmed apart
    # from the ones it trained on; 30 of them beside the old test split's 10, so that learning
    # the new class decides the verdict, not the few old pictures either model gets wrong
    heldout = tmp_path / "heldout"
    _capture(_new_thing_video(tmp_path / "new-heldout.avi", frames=30, seed=8), heldout, NEW, 30)
    for path in json.loads((exported_run / "splits.json").read_text())["test"]:
        target = heldout / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(demo_dir / path, target)
    capsys.readouterr()
    assert compare_cli.main([str(exported_run), str(child), "--data", str(heldout)]) == 0
    report = json.loads((child / "compare" / "report.json").read_text())
    assert report["verdict"] == "better", capsys.readouterr().out
    assert report["per_class"][NEW]["a"] == 0.0 and report["b"]["accuracy"] > report["a"]["accuracy"]
    # the other way round the candidate is the old model: worse, exit 1 (a deploy gate)
    assert compare_cli.main([str(child), str(exported_run), "--data", str(heldout),
                             "--out", str(tmp_path / "reverse")]) == 1
    # the default images: both runs' test splits, less what either trained on (by content
    # too: the child's data is a copy of the parent's)
    assert compare_cli.main([str(exported_run), str(child), "--out",
                             str(tmp_path / "default")]) in (0, 1)
    default = json.loads((tmp_path / "default" / "report.json").read_text())
    parent_train = {(demo_dir / p).read_bytes() for p in
                    json.loads((exported_run / "splits.json").read_text())["train"]}
    assert not any(Path(p).read_bytes() in parent_train
                   for p in default["a_only_correct"] + default["b_only_correct"])
