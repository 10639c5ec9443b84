"""The device's data root as its writers fill it: edge-capture without --out and
--save-uncertain without a folder write under ``$EDGE_DATA_ROOT``, captures and uncertain frames
apart, one JSON line per picture, and ``--max-mb`` bounds the root as a whole."""

from __future__ import annotations

import json

from common.fileio import sha256
from edge_runtime.capture import data_root
from edge_runtime.commands import capture as capture_cli
from edge_runtime.commands import classify as classify_cli
from tests.helpers import demo_images, solid_video, write_video


def index(root, folder: str) -> list[dict]:
    path = data_root.index_path(root, folder)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_captures_and_uncertain_frames_apart_in_one_root(bundle, demo_dir, tmp_path,
                                                        monkeypatch, capsys):
    root = tmp_path / "données du pi"
    monkeypatch.setenv(data_root.ENVIRONMENT, str(root))
    clip = solid_video(tmp_path / "solid.avi", (200, 30, 30), frames=20, size=(96, 48))
    assert capture_cli.main(["--camera", str(clip), "--label", "red cup", "--count", "3",
                             "--every", "0.05"]) == 0, capsys.readouterr().err
    model = bundle / "model_int8.tflite"
    video = write_video(tmp_path / "clip.avi", demo_images(demo_dir), frames=20)
    assert classify_cli.main(["--model", str(model), "--camera", str(video), "--headless",
                              "--save-uncertain", "--below", "1.0", "--max-per-minute", "4"]
                             ) == 0, capsys.readouterr().err

    captures = index(root, data_root.CAPTURES)
    assert len(captures) == 3 == len(list((root / "captures" / "red cup").glob("*.jpg")))
    assert {c["label"] for c in captures} == {"red cup"}
    assert all(c["file"].startswith("captures/red cup/") and (root / c["file"]).is_file()
               and c["time"].endswith("+00:00") for c in captures)
    uncertain = index(root, data_root.UNCERTAIN)
    assert 1 <= len(uncertain) <= 4
    assert len(uncertain) == len(list((root / "uncertain").rglob("*.jpg")))
    assert all(u["file"].startswith("uncertain/") and (root / u["file"]).is_file()
               and u["model_version"] == sha256(model)[:12] and u["scores"]
               for u in uncertain)


def test_max_mb_bounds_the_root_as_a_whole(bundle, demo_dir, tmp_path, monkeypatch, capsys):
    root = tmp_path / "data"
    (root / "captures").mkdir(parents=True)
    (root / "captures" / "earlier.bin").write_bytes(bytes(2_000_000))  # another run's
    monkeypatch.setenv(data_root.ENVIRONMENT, str(root))
    video = write_video(tmp_path / "clip.avi", demo_images(demo_dir), frames=10)
    code = classify_cli.main(["--model", str(bundle / "model_int8.tflite"), "--camera",
                              str(video), "--headless", "--save-uncertain", "--below", "1.0",
                              "--max-mb", "1"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert list((root / "uncertain").rglob("*.jpg")) == [], err
