"""edge-classify end to end: every variant, inputs, output formats, options, video, and errors."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from common.labels import read_labels
from edge_runtime.commands.classify import main
from edge_runtime.commands.inputs import expand_inputs
from tests.helpers import demo_images, write_video

# the edge extra alone runs these (no TensorFlow): make pi-check runs them on arm64
pytestmark = pytest.mark.edge

VARIANTS = ("fp32", "fp16", "int8")
RESULT_KEYS = {"source", "top_k", "latency_ms"}
PREDICTION_KEYS = {"label", "index", "score"}


def run(capfd, *argv) -> tuple[int, str, str]:
    """``main(argv)`` in-process; stdout and stderr as read at the file-descriptor level."""
    code = main([str(a) for a in argv])
    out, err = capfd.readouterr()
    return code, out, err


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def check_result(obj: dict, labels: list[str], k: int) -> None:
    """One ``--json`` line holds exactly the contract's keys, types and value ranges."""
    assert set(obj) == RESULT_KEYS, obj
    assert isinstance(obj["source"], str) and obj["source"]
    assert isinstance(obj["latency_ms"], float) and obj["latency_ms"] >= 0
    assert isinstance(obj["top_k"], list) and len(obj["top_k"]) <= k
    scores = []
    for prediction in obj["top_k"]:
        assert set(prediction) == PREDICTION_KEYS, prediction
        assert isinstance(prediction["index"], int) and isinstance(prediction["score"], float)
        assert labels[prediction["index"]] == prediction["label"]
        assert 0.0 <= prediction["score"] <= 1.0
        scores.append(prediction["score"])
    assert scores == sorted(scores, reverse=True)


def one_error_line(err: str) -> str:
    """The single stderr line of a failed run (and proof there is no traceback)."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("edge-classify: ")
    return lines[0]


@pytest.fixture(scope="module")
def labels(bundle) -> list[str]:
    return read_labels(bundle / "labels.txt")


@pytest.fixture()
def images(demo_dir) -> list[Path]:
    return demo_images(demo_dir)


# ----------------------------------------------------------------------------- files and folders

@pytest.mark.parametrize("variant", VARIANTS)
def test_files_and_folders_with_every_variant(capfd, bundle, demo_dir, labels, variant):
    single = demo_images(demo_dir / "star")[0]
    code, out, err = run(capfd, "--model", bundle / f"model_{variant}.tflite", "--json",
                         "--top-k", "5", demo_dir / "circle", single)
    assert code == 0, err
    results = json_lines(out)
    assert len(results) == len(demo_images(demo_dir / "circle")) + 1
    assert results[-1]["source"] == str(single)
    for result in results:
        check_result(result, labels, k=5)
        # every class is listed, so the scores are the whole distribution
        tolerance = 0.05 if variant == "int8" else 0.01
        assert sum(p["score"] for p in result["top_k"]) == pytest.approx(1.0, abs=tolerance)
    assert err == ""  # not even the interpreter's own INFO line


def test_fp32_and_fp16_agree_on_top1(capfd, bundle, demo_dir):
    top1 = {}
    for variant in ("fp32", "fp16"):
        code, out, _ = run(capfd, "--model", bundle / f"model_{variant}.tflite", "--json",
                           demo_dir)
        assert code == 0
        top1[variant] = [r["top_k"][0]["label"] for r in json_lines(out)]
    assert len(top1["fp32"]) == len(demo_images(demo_dir))
    agree = np.mean([a == b for a, b in zip(top1["fp32"], top1["fp16"], strict=True)])
    assert agree >= 0.9


def test_table_is_the_default_output(capfd, bundle, images, labels):
    code, out, _ = run(capfd, "--model", bundle / "model_int8.tflite", *images[:4])
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["SOURCE", "LABEL", "SCORE", "MS", "TOP-2", "TOP-3"]
    assert len(rows) == 4
    for image, row in zip(images[:4], rows, strict=True):
        cells = row.split()
        assert cells[0] == str(image) and cells[1] in labels
        assert 0.0 <= float(cells[2]) <= 1.0 and float(cells[3]) >= 0
        assert cells[4] in labels and cells[6] in labels  # "label score" per extra column


@pytest.mark.parametrize("k, expected", [(1, 1), (2, 2), (9, 5)])
def test_top_k(capfd, bundle, images, labels, k, expected):
    code, out, _ = run(capfd, "--model", bundle / "model_fp32.tflite", "--json", "--top-k", k,
                       *images[:3])
    assert code == 0
    results = json_lines(out)
    assert [result["source"] for result in results] == [str(image) for image in images[:3]]
    for result in results:
        check_result(result, labels, k)
        assert len(result["top_k"]) == expected
    code, out, _ = run(capfd, "--model", bundle / "model_fp32.tflite", "--top-k", k, images[0])
    assert out.splitlines()[0].split()[4:] == [f"TOP-{i}" for i in range(2, expected + 1)]


def test_threshold_drops_predictions_below_it(capfd, bundle, images, labels):
    model = bundle / "model_fp32.tflite"
    _, out, _ = run(capfd, "--model", model, "--json", "--top-k", "5", images[0])
    scores = [p["score"] for p in json_lines(out)[0]["top_k"]]
    cut = (scores[0] + scores[1]) / 2
    code, out, _ = run(capfd, "--model", model, "--json", "--top-k", "5", "--threshold", cut,
                       *images[:6])
    assert code == 0
    results = json_lines(out)
    assert len(results[0]["top_k"]) == 1
    for result in results:
        check_result(result, labels, k=5)
        assert all(p["score"] >= cut for p in result["top_k"])
    # over every image, --threshold keeps exactly the answers scored at or above it; 0.5 is far
    # from the 6-decimal rounding of the JSON scores, which 1.0 is not (0.9999996 prints as 1.0)
    _, out, _ = run(capfd, "--model", model, "--json", "--top-k", "5", *images)
    unfiltered = [result["top_k"] for result in json_lines(out)]
    code, out, _ = run(capfd, "--model", model, "--json", "--top-k", "5", "--threshold", "0.5",
                       *images)
    assert code == 0
    assert [result["top_k"] for result in json_lines(out)] == [
        [p for p in top_k if p["score"] >= 0.5] for top_k in unfiltered]
    # at 1 only an answer that prints as certain can stay
    code, out, _ = run(capfd, "--model", model, "--json", "--top-k", "5", "--threshold", "1",
                       *images)
    assert code == 0
    for kept, top_k in zip((result["top_k"] for result in json_lines(out)), unfiltered):
        assert all(p["score"] == 1.0 for p in kept) and kept == top_k[:len(kept)]
    # the table shows an image nothing passed as "-"
    unsure = [image for image, top_k in zip(images, unfiltered) if top_k[0]["score"] < 1]
    assert unsure, "every image scored 1.0: none is left to show an empty row"
    code, out, _ = run(capfd, "--model", model, "--threshold", "1", unsure[0])
    assert out.splitlines()[1].split()[1:3] == ["-", "-"]


def test_glob_patterns_are_expanded_by_the_tool(capfd, bundle, demo_dir, images):
    pngs = sorted(p for p in images if p.suffix == ".png")
    assert pngs
    code, out, _ = run(capfd, "--model", bundle / "model_int8.tflite", "--json",
                       f"{demo_dir}/**/*.png")
    assert code == 0
    assert [r["source"] for r in json_lines(out)] == [str(p) for p in pngs]
    code, out, _ = run(capfd, "--model", bundle / "model_int8.tflite", "--json",
                       f"{demo_dir}/c*")  # folders matched by a pattern are searched too
    assert code == 0 and len(json_lines(out)) == len(demo_images(demo_dir / "circle")) + len(
        demo_images(demo_dir / "cross"))


def test_folders_recurse_skipping_hidden_and_non_image_files(tmp_path, images):
    root = tmp_path / "photos"
    for name in ("a.jpg", "sub/b.png", "sub/deeper/C.JPG", ".hidden.jpg", ".cache/d.jpg",
                 "notes.txt", "sub/e.jpg.bak"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(images[0], root / name)
    found = expand_inputs([str(root), str(root / "a.jpg")])  # a repeat is classified once
    assert [p.relative_to(root).as_posix() for p in found] == ["a.jpg", "sub/b.png",
                                                              "sub/deeper/C.JPG"]


def test_verbose_says_backend_threads_and_input(capfd, bundle, images):
    code, _, err = run(capfd, "--model", bundle / "model_int8.tflite", "--verbose",
                       "--threads", "1", images[0])
    assert code == 0
    assert "backend ai_edge_litert" in err and "1 threads" in err and "64x64 uint8" in err
    _, _, err = run(capfd, "--model", bundle / "model_fp32.tflite", "-v", images[0])
    assert "64x64 float32" in err


def test_help_shows_defaults_and_an_example(capfd):
    code, out, _ = run(capfd, "--help")
    assert code == 0
    assert "(default: 3)" in out and "(default: 0.0)" in out
    assert "edge-classify --model runs/demo/export/model_int8.tflite" in out


# ----------------------------------------------------------------------------- unreadable images

def test_unreadable_images_are_reported_and_the_run_goes_on(capfd, bundle, images, tmp_path):
    rng = np.random.default_rng(0)
    noise = tmp_path / "noise.jpg"
    noise.write_bytes(rng.bytes(3000))
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(images[0].read_bytes()[:200])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    code, out, err = run(capfd, "--model", bundle / "model_int8.tflite", "--json", noise,
                         images[0], truncated, empty, images[1])
    assert code == 1
    assert [r["source"] for r in json_lines(out)] == [str(images[0]), str(images[1])]
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    for bad in (noise, truncated, empty):
        assert sum(str(bad) in line for line in lines) == 1
    assert lines[-1] == "edge-classify: 3 of 5 inputs could not be read"


def test_one_unreadable_image_is_one_line_and_exit_1(capfd, bundle, tmp_path):
    noise = tmp_path / "noise.jpg"
    noise.write_bytes(np.random.default_rng(1).bytes(3000))
    code, out, err = run(capfd, "--model", bundle / "model_fp16.tflite", noise)
    assert code == 1 and out == ""
    assert str(noise) in one_error_line(err)


# ----------------------------------------------------------------------------- usage errors

def _bad_model(tmp_path: Path, bundle: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.tflite"
    if kind == "truncated":
        path.write_bytes((bundle / "model_int8.tflite").read_bytes()[:2000])
    elif kind == "random":
        path.write_bytes(np.random.default_rng(2).bytes(5000))
    return path  # "missing": never written


USAGE_ERRORS = {
    "missing model": (lambda b, t, i: ["--model", _bad_model(t, b, "missing"), i],
                      "does not exist"),
    "truncated model": (lambda b, t, i: ["--model", _bad_model(t, b, "truncated"), i],
                        "not a loadable TFLite model"),
    "not a TFLite file": (lambda b, t, i: ["--model", _bad_model(t, b, "random"), i],
                          "is not a TFLite model"),
    "model is a folder": (lambda b, t, i: ["--model", b, i], "does not exist"),
    "label count mismatch": (lambda b, t, i: ["--model", b / "model_fp32.tflite", "--labels",
                                              _labels_file(t, ["cat", "dog"]), i],
                             "2 labels but the model has 5 outputs"),
    "labels file missing": (lambda b, t, i: ["--model", b / "model_fp32.tflite", "--labels",
                                             t / "nope.txt", i], "cannot read labels"),
    "no input": (lambda b, t, i: ["--model", b / "model_fp32.tflite"], "no input"),
    "path matches nothing": (lambda b, t, i: ["--model", b / "model_fp32.tflite",
                                              t / "nowhere.jpg"], "no such file or folder"),
    "pattern matches nothing": (lambda b, t, i: ["--model", b / "model_fp32.tflite",
                                                 f"{t}/*.jpeg"], "matches no image file"),
    "folder without images": (lambda b, t, i: ["--model", b / "model_fp32.tflite",
                                               _empty_folder(t)], "holds no image files"),
    "camera cannot be opened": (lambda b, t, i: ["--model", b / "model_fp32.tflite",
                                                 "--camera", "99", "--headless"],
                                "cannot open camera 99"),
    "video file missing": (lambda b, t, i: ["--model", b / "model_fp32.tflite", "--camera",
                                            t / "nope.avi"], "does not exist"),
    "video file not a video": (lambda b, t, i: ["--model", b / "model_fp32.tflite", "--camera",
                                                _junk_video(t), "--headless"], "junk.avi"),
    "paths and camera": (lambda b, t, i: ["--model", b / "model_fp32.tflite", i, "--camera"],
                         "not both"),
    "max-frames without camera": (lambda b, t, i: ["--model", b / "model_fp32.tflite", i,
                                                   "--max-frames", "3"], "--camera only"),
    "top-k zero": (lambda b, t, i: ["--model", b / "model_fp32.tflite", "--top-k", "0", i],
                   "--top-k"),
    "threshold above one": (lambda b, t, i: ["--model", b / "model_fp32.tflite", "--threshold",
                                             "1.5", i], "--threshold"),
    "threads not a number": (lambda b, t, i: ["--model", b / "model_fp32.tflite", "--threads",
                                              "many", i], "--threads"),
    "unknown backend": (lambda b, t, i: ["--model", b / "model_fp32.tflite", "--backend", "onnx",
                                         i], "--backend"),
    "model flag missing": (lambda b, t, i: [i], "--model"),
}


def _labels_file(tmp_path: Path, names: list[str]) -> Path:
    path = tmp_path / "labels.txt"
    path.write_text("\n".join(names) + "\n")
    return path


def _empty_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    (folder / ".hidden").mkdir(parents=True)
    (folder / ".hidden" / "x.jpg").write_bytes(b"")
    (folder / "readme.txt").write_text("no pictures here")
    return folder


def _junk_video(tmp_path: Path) -> Path:
    path = tmp_path / "junk.avi"
    path.write_bytes(np.random.default_rng(3).bytes(5000))
    return path


@pytest.mark.parametrize("case", list(USAGE_ERRORS))
def test_usage_errors_exit_2_with_one_line(capfd, bundle, images, tmp_path, case):
    build, message = USAGE_ERRORS[case]
    code, out, err = run(capfd, *build(bundle, tmp_path, images[0]))
    assert code == 2 and out == ""
    assert message in one_error_line(err)


@pytest.mark.skipif(importlib.util.find_spec("tflite_runtime") is not None,
                    reason="tflite_runtime is installed here")
def test_forcing_a_missing_backend_exits_2_naming_it(capfd, bundle, images):
    code, _, err = run(capfd, "--model", bundle / "model_int8.tflite", "--backend",
                       "tflite_runtime", images[0])
    assert code == 2
    line = one_error_line(err)
    assert "tflite_runtime: not installed" in line and "pip install" in line


def test_console_script_end_to_end(bundle, images, tmp_path):
    script = Path(sys.executable).with_name("edge-classify")
    if not script.exists():
        pytest.skip("the edge-classify console script is not installed in this environment")
    done = subprocess.run([script, "--model", bundle / "model_int8.tflite", "--json", images[0]],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == ""
    assert json_lines(done.stdout)[0]["source"] == str(images[0])
    done = subprocess.run([script, "--model", _bad_model(tmp_path, bundle, "truncated"),
                           images[0]], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert "not a loadable TFLite model" in one_error_line(done.stderr)


# ----------------------------------------------------------------------------- camera / video

@pytest.fixture()
def video(tmp_path, images) -> Path:
    return write_video(tmp_path / "clip.avi", images, frames=12)


@pytest.mark.parametrize("max_frames, expected", [(5, 5), (None, 12), (50, 12)])
def test_video_headless_json_frames_and_summary(capfd, bundle, labels, video, max_frames,
                                                expected):
    argv = ["--model", bundle / "model_int8.tflite", "--camera", video, "--headless", "--json"]
    if max_frames is not None:
        argv += ["--max-frames", max_frames]
    code, out, err = run(capfd, *argv)
    assert code == 0 and err == ""
    *frames, last = json_lines(out)
    assert [f["source"] for f in frames] == [f"{video}#{n}" for n in range(1, expected + 1)]
    for frame in frames:
        check_result(frame, labels, k=3)
    assert set(last) == {"summary"}
    summary = last["summary"]
    assert set(summary) == {"frames", "fps", "inference_ms_p50"}
    assert summary["frames"] == expected and summary["fps"] > 0
    assert summary["inference_ms_p50"] > 0


def test_video_table_ends_with_a_summary_line(capfd, bundle, video):
    code, out, _ = run(capfd, "--model", bundle / "model_fp32.tflite", "--camera", video,
                       "--headless", "--max-frames", "3", "--top-k", "1")
    assert code == 0
    header, *rows, summary = out.splitlines()
    assert header.split() == ["SOURCE", "LABEL", "SCORE", "MS"]
    assert [row.split()[0] for row in rows] == [f"{video}#{n}" for n in (1, 2, 3)]
    assert summary.startswith(f"{video}: 3 frames in ") and "fps, inference p50" in summary


def test_no_display_means_headless_without_the_flag(capfd, bundle, video, monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    code, out, err = run(capfd, "--model", bundle / "model_int8.tflite", "--camera", video,
                         "--json", "--max-frames", "2")
    assert code == 0 and err == ""
    assert len(json_lines(out)) == 3


def test_unreachable_display_falls_back_to_lines(capfd, bundle, video, monkeypatch):
    import cv2

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("DISPLAY", ":7391")
    # OpenCV's GUI build (its window probe); Tk's window: tests/test_window.py
    monkeypatch.setattr(cv2, "currentUIFramework", lambda: "QT", raising=False)
    code, out, err = run(capfd, "--model", bundle / "model_int8.tflite", "--camera", video,
                         "--json", "--max-frames", "2")
    assert code == 0 and len(json_lines(out)) == 3
    assert "cannot open a window" in one_error_line(err)


def test_a_window_run_without_opencvs_gui_or_tk_says_what_to_do(capfd, bundle, video,
                                                                 monkeypatch):
    import cv2

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("DISPLAY", ":0")
    # the edge extra's opencv-python-headless, on a Python without python3-tk
    monkeypatch.setattr(cv2, "currentUIFramework", lambda: "", raising=False)
    monkeypatch.setitem(sys.modules, "tkinter", None)
    code, out, err = run(capfd, "--model", bundle / "model_int8.tflite", "--camera", video,
                         "--max-frames", "2")
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert "--headless" in line and "--serve" in line


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_ends_a_video_run_with_a_summary_and_exit_0(bundle, images, tmp_path,
                                                                      signum):
    long_video = write_video(tmp_path / "long.avi", images[:1], frames=2000)
    # Python leaves SIGINT ignored when its parent ignored it (a background job): set the
    # handler explicitly so the child sees Ctrl-C as a terminal user would send it
    launcher = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler);"
                "sys.argv = ['edge-classify'] + sys.argv[1:];"
                "runpy.run_module('edge_runtime.commands.classify', run_name='__main__')")
    child = subprocess.Popen([sys.executable, "-c", launcher, "--model",
                              str(bundle / "model_int8.tflite"), "--camera", str(long_video),
                              "--headless", "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = child.stdout.readline()  # frames are flowing
        child.send_signal(signum)
        # read on through the same buffered reader: communicate() reads the raw pipe and
        # would lose lines that readline() had already buffered
        rest = child.stdout.read()
        err = child.stderr.read()
        child.wait(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 0 and "Traceback" not in err
    lines = json_lines(first + rest)
    summary = lines[-1]["summary"]
    assert 1 <= summary["frames"] < 2000 and summary["frames"] == len(lines) - 1


def test_a_stream_leaves_a_core_to_capture_and_preprocess(capfd, bundle, images, video,
                                                          monkeypatch):
    from edge_runtime import classifier, interpreter

    monkeypatch.setattr(interpreter, "available_cores", lambda: 4)
    monkeypatch.setattr(classifier, "available_cores", lambda: 4)
    # what the interpreter itself is given, not what the command says it gave
    given = []
    real_class = interpreter.interpreter_class

    def recording_class(backend):
        cls = real_class(backend)

        def construct(*args, **kwargs):
            given.append(kwargs["num_threads"])
            return cls(*args, **kwargs)

        return construct

    monkeypatch.setattr(interpreter, "interpreter_class", recording_class)
    for argv, threads in [(["--camera", video, "--headless", "--max-frames", "1"], 3),
                          ([images[0]], 4),
                          (["--camera", video, "--headless", "--max-frames", "1",
                            "--threads", "2"], 2)]:
        given.clear()
        code, _, err = run(capfd, "--model", bundle / "model_int8.tflite", *argv, "-v")
        assert code == 0 and given == [threads], (argv, given)
        assert f"{threads} threads" in err  # and -v says so


# ----------------------------------------------------------------------------- as a service

@pytest.fixture()
def waited(monkeypatch) -> list[float]:
    """The camera wait's clock, stood in for: sleeping moves it on at once, so the tries are
    counted exactly whatever the machine's load. The list holds each sleep, in seconds."""
    from edge_runtime.stream import camera_run

    sleeps: list[float] = []
    clock = types.SimpleNamespace(monotonic=lambda: sum(sleeps), sleep=sleeps.append,
                                  perf_counter=time.perf_counter)
    monkeypatch.setattr(camera_run, "time", clock)
    return sleeps


@pytest.fixture()
def camera_tries(monkeypatch, video, waited):
    """``--camera 0`` opens on the third try (the clip stands in for the camera); the list
    holds the camera number of each try. Tries are 0.125 s apart instead of 1 s."""
    from edge_runtime.errors import CameraError
    from edge_runtime.sources.opencv_source import OpenCVSource
    from edge_runtime.stream import camera_run

    tries: list[int] = []

    def open_source(spec, size, quiet=True, loop=False, alive=None, uploading=None):
        tries.append(spec.index)
        if len(tries) < 3 or spec.index == 7:  # camera 7 never appears
            raise CameraError(f"cannot open camera {spec.index}")
        return OpenCVSource(str(video))

    monkeypatch.setattr(camera_run, "open_source", open_source)
    monkeypatch.setattr(camera_run, "CAMERA_RETRY_S", 0.125)
    return tries


def test_camera_wait_tries_again_until_the_camera_appears(capfd, bundle, camera_tries, waited):
    code, out, err = run(capfd, "--model", bundle / "model_int8.tflite", "--camera", "0",
                         "--camera-wait", "30", "--headless", "--json", "--max-frames", "3")
    assert code == 0 and camera_tries == [0, 0, 0] and waited == [0.125, 0.125]
    assert "camera 0 is not there yet (cannot open camera 0); trying again" in one_error_line(err)
    assert json_lines(out)[-1]["summary"]["frames"] == 3


def test_camera_wait_gives_up_with_exit_2(capfd, bundle, camera_tries, waited):
    code, out, err = run(capfd, "--model", bundle / "model_int8.tflite", "--camera", "7",
                         "--camera-wait", "0.5", "--headless")
    assert code == 2 and out == ""
    waiting, error = err.strip().splitlines()  # one line for the wait, one for the end
    assert "not there yet" in waiting and "Traceback" not in err
    assert error == "edge-classify: error: cannot open camera 7 (after waiting 0.5 s for it)"
    # a try at 0, 0.125, 0.25, 0.375 and 0.5 s: the whole wait, then no more
    assert camera_tries == [7] * 5 and waited == [0.125] * 4


def test_without_camera_wait_a_missing_camera_stops_at_once(capfd, bundle, camera_tries,
                                                            waited):
    code, _, err = run(capfd, "--model", bundle / "model_int8.tflite", "--camera", "0",
                       "--headless")
    assert code == 2 and camera_tries == [0] and waited == []
    assert one_error_line(err) == "edge-classify: error: cannot open camera 0"


def test_camera_wait_never_waits_for_a_configuration_mistake(capfd, bundle, tmp_path,
                                                             monkeypatch, waited):
    from edge_runtime.errors import CameraError
    from edge_runtime.sources import picamera
    from edge_runtime.stream import camera_run

    # a video file that is not there: a path to fix, not a camera still starting
    code, _, err = run(capfd, "--model", bundle / "model_int8.tflite", "--camera",
                       tmp_path / "missing.mp4", "--camera-wait", "30", "--headless")
    assert code == 2 and "missing.mp4" in one_error_line(err)
    # a model that is not there: the camera is not even tried
    tries = []
    monkeypatch.setattr(camera_run, "open_source", lambda *a, **k: tries.append(a))
    code, _, err = run(capfd, "--model", tmp_path / "missing.tflite", "--camera", "0",
                       "--camera-wait", "30", "--headless")
    assert code == 2 and "missing.tflite" in one_error_line(err) and tries == []

    # Picamera2 missing for picam: a library to install, not a camera still starting
    def no_picamera2(quiet=True):
        raise CameraError("Picamera2 is not importable here")

    monkeypatch.setattr(picamera, "import_picamera2", no_picamera2)
    code, _, err = run(capfd, "--model", bundle / "model_int8.tflite", "--camera", "picam",
                       "--camera-wait", "30", "--headless")
    assert code == 2 and "Picamera2" in one_error_line(err) and tries == []
    assert waited == []  # not a moment


def test_summary_every_replaces_the_line_per_frame(capfd, bundle, labels, video, monkeypatch):
    from edge_runtime.stream import camera_run
    from edge_runtime.stream.summary import PeriodicSummary

    ticks = iter(range(1000))  # a clock one second further at each look: 1 frame = 1 s
    monkeypatch.setattr(camera_run, "PeriodicSummary",
                        lambda every_s: PeriodicSummary(every_s, clock=lambda: next(ticks)))
    code, out, err = run(capfd, "--model", bundle / "model_int8.tflite", "--camera", video,
                         "--headless", "--json", "--summary-every", "4")
    assert code == 0 and err == ""
    *periods, last = json_lines(out)
    assert [set(p) for p in periods] == [{"period"}] * 3  # frames 1-4, 5-8, 9-12
    for period in (p["period"] for p in periods):
        assert set(period) == {"seconds", "frames", "fps", "inference_ms_p50", "top_label",
                               "top_label_frames"}
        assert period["frames"] == 4 and period["seconds"] == 4 and period["fps"] == 1.0
        assert period["top_label"] in labels and 1 <= period["top_label_frames"] <= 4
        assert period["inference_ms_p50"] > 0
    assert last["summary"]["frames"] == 12
    code, out, _ = run(capfd, "--model", bundle / "model_int8.tflite", "--camera", video,
                       "--headless", "--summary-every", "4")
    *periods, last = out.splitlines()
    assert len(periods) == 3 and last.startswith(f"{video}: 12 frames in ")
    assert all(p.startswith(f"{video}: last 4 s: 4 frames, 1.0 fps, inference p50 ")
               and ", most often " in p for p in periods), periods


@pytest.mark.parametrize("flag", ["--camera-wait", "--summary-every"])
def test_camera_only_flags_refuse_files(capfd, bundle, images, flag):
    code, _, err = run(capfd, "--model", bundle / "model_int8.tflite", images[0], flag, "5")
    assert code == 2 and f"{flag} applies to --camera only" in one_error_line(err)


def test_a_camera_run_stopped_before_its_first_frame_exits_0(capfd, bundle, monkeypatch):
    # the one rule: Ctrl-C or SIGTERM (run_command raises it as KeyboardInterrupt) ends a
    # --camera run with 0 whenever it comes, so `systemctl stop` never leaves a failed unit
    from edge_runtime.commands import classify as cli
    from edge_runtime.stream import camera_run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(camera_run, "open_source", interrupted)
    code, out, err = run(capfd, "--model", bundle / "model_int8.tflite", "--camera", "0",
                         "--headless")
    assert code == 0 and out == ""
    assert one_error_line(err) == "edge-classify: stopped (Ctrl-C or SIGTERM)"
    # a run over files interrupted is not finished: 130
    monkeypatch.setattr(cli, "classify_files", interrupted)
    code, _, err = run(capfd, "--model", bundle / "model_int8.tflite",
                       bundle / "labels.txt")
    assert code == 130 and one_error_line(err) == "edge-classify: interrupted"


def test_sigterm_while_waiting_for_the_camera_exits_0(bundle):
    # a network camera that refuses connections stands in for one still booting
    launcher = ("import runpy, sys; sys.argv = ['edge-classify'] + sys.argv[1:];"
                "runpy.run_module('edge_runtime.commands.classify', run_name='__main__')")
    child = subprocess.Popen([sys.executable, "-c", launcher, "--model",
                              str(bundle / "model_int8.tflite"), "--camera",
                              f"rtsp://127.0.0.1:{_closed_port()}/camera", "--camera-wait", "120",
                              "--headless"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    try:
        waiting = child.stderr.readline()
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=30)
    finally:
        child.kill()
    assert "is not there yet" in waiting, waiting + child.stderr.read()
    assert child.returncode == 0 and out == ""
    assert err.strip() == "edge-classify: stopped (Ctrl-C or SIGTERM)"


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens there once the probe is closed
