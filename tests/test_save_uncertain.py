"""edge-classify --save-uncertain: which frames are kept, the journal, the writer thread that
drops rather than waits, the per-minute limit; and --capture-to's flag checks."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from common.fileio import sha256
from edge_runtime.capture.uncertain import UncertainOptions, UncertainSaver, is_uncertain
from edge_runtime.classifier import Prediction
from edge_runtime.commands import classify as cli
from tests.helpers import demo_images, write_video

FRAME = np.zeros((48, 64, 3), np.uint8)


def _p(*scores: float) -> list[Prediction]:
    return [Prediction(f"c{i}", i, s) for i, s in enumerate(scores)]


@pytest.mark.edge
def test_which_frames_are_uncertain():
    assert is_uncertain(_p(0.4, 0.3), 0.5, None)
    assert not is_uncertain(_p(0.6, 0.3), 0.5, None)
    assert is_uncertain(_p(0.6, 0.35), 0.5, 0.3)  # close top two
    assert not is_uncertain(_p(0.6, 0.25), 0.5, 0.3)
    assert is_uncertain([], 0.5, None)  # nothing above --threshold


@pytest.mark.edge
def test_a_busy_writer_drops_frames_instead_of_waiting(tmp_path, monkeypatch):
    saver = UncertainSaver(UncertainOptions(str(tmp_path), max_per_minute=1000), "abc")
    release = threading.Event()
    real_save = saver.writer.save
    monkeypatch.setattr(saver.writer, "save",
                        lambda *a, **k: (release.wait(), real_save(*a, **k))[1])
    started = time.perf_counter()
    queued = [saver.offer(FRAME, _p(0.2, 0.1), f"cam#{i}") for i in range(50)]
    assert time.perf_counter() - started < 0.5  # the camera loop never waited
    release.set()
    summary = saver.close()
    # one being written, one queued at most: the rest dropped, and counted
    assert saver.saved == sum(queued) <= 2 and saver.dropped == 50 - sum(queued)
    assert f"{saver.dropped} dropped (writer busy)" in summary
    lines = [json.loads(x) for x in (tmp_path / "index.jsonl").read_text().splitlines()]
    assert len(lines) == saver.saved and lines[0]["model_version"] == "abc"
    assert lines[0]["prediction"] == "c0" and (tmp_path / lines[0]["file"]).is_file()
    assert [s["label"] for s in lines[0]["scores"]] == ["c0", "c1"]


@pytest.mark.edge
def test_max_per_minute(tmp_path):
    now = [0.0]
    saver = UncertainSaver(UncertainOptions(str(tmp_path), max_per_minute=2), "abc",
                           clock=lambda: now[0])
    kept = []
    for second in range(0, 130, 10):
        now[0] = float(second)
        kept.append(saver.offer(FRAME, _p(0.1), "cam"))
        time.sleep(0.05)  # the writer takes each before the next
    saver.close()
    # 2 in each minute: at 0 and 10, then 60 and 70, then 120
    assert [s for s, k in zip(range(0, 130, 10), kept) if k] == [0, 10, 60, 70, 120]
    assert saver.over_rate == 8


@pytest.mark.parametrize("argv, message", [
    (["a.jpg", "--save-uncertain", "d"], "apply to --camera only"),
    (["--camera", "v.avi", "--capture-to", "d"], "add --serve"),
    (["--camera", "v.avi", "--below", "0.3"], "apply to --save-uncertain"),
    (["--camera", "v.avi", "--max-mb", "5"], "apply to --save-uncertain, --capture-to"),
    (["--camera", "v.avi", "--max-per-minute", "5"], "applies to --save-uncertain and --shadow"),
    (["a.jpg", "--monitor"], "apply to --camera only"),
    (["a.jpg", "--shadow", "c.tflite"], "apply to --camera only"),
])
def test_flag_checks(argv, message, capsys):
    assert cli.main(["--model", "m.tflite", *argv]) == 2
    assert message in capsys.readouterr().err


def test_save_uncertain_on_a_video(bundle, demo_dir, tmp_path, capsys):
    video = write_video(tmp_path / "clip.avi", demo_images(demo_dir), frames=40)
    model = bundle / "model_int8.tflite"
    code = cli.main(["--model", str(model), "--camera", str(video), "--headless", "--json",
                     "--save-uncertain", str(tmp_path / "hard"), "--below", "1.0",
                     "--max-per-minute", "5"])
    err = capsys.readouterr().err
    assert code == 0, err
    lines = [json.loads(x) for x in (tmp_path / "hard" / "index.jsonl").read_text()
             .splitlines()]
    files = sorted((tmp_path / "hard").rglob("*.jpg"))
    assert 1 <= len(lines) == len(files) <= 5
    assert {line["model_version"] for line in lines} == {sha256(model)[:12]}
    assert all((tmp_path / "hard" / line["file"]).is_file() for line in lines)
    assert "save-uncertain:" in err and "over --max-per-minute 5" in err
