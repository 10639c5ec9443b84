"""edge_runtime below the CLI: backend fall-through, the frame hand-over, the OpenCV capture
thread, and the proof that nothing in the package imports TensorFlow (or OpenCV, for files)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_runtime import interpreter
from edge_runtime.classifier import Classifier
from edge_runtime.errors import CameraError
from edge_runtime.frames import to_rgb_frame
from edge_runtime.sources.frame_source import END, FrameSlot
from edge_runtime.sources.opencv_source import OpenCVSource
from edge_runtime.stream.loop import classify_stream
from tests.helpers import demo_images, solid_video, write_video

# the edge extra alone runs these (no TensorFlow): make pi-check runs them on arm64
pytestmark = pytest.mark.edge

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def video(tmp_path, demo_dir) -> Path:
    return write_video(tmp_path / "clip.avi", demo_images(demo_dir), frames=12)


# ----------------------------------------------------------------------------- backends

class _Refuses:
    """An Interpreter class whose construction fails the way a broken delegate does."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError("failed to create the XNNPACK delegate")


def _fake_backends(monkeypatch, failures):
    """Make ``interpreter_class`` answer each backend with its failure in ``failures`` (a class
    that refuses to construct, or an exception to raise) and with the real LiteRT class
    otherwise, which stands in for the others without importing TensorFlow. Returns the list
    of backends tried, in order."""
    real = interpreter.interpreter_class("ai_edge_litert")
    tried = []

    def fake_class(name):
        tried.append(name)
        failure = failures.get(name)
        if isinstance(failure, BaseException):
            raise failure
        return failure or real

    monkeypatch.setattr(interpreter, "interpreter_class", fake_class)
    return tried


def test_make_interpreter_uses_the_next_backend_when_one_fails_to_create(bundle, monkeypatch):
    tried = _fake_backends(monkeypatch, {
        "ai_edge_litert": _Refuses,
        "tflite_runtime": ImportError("No module named 'tflite_runtime'"),
    })
    interp, backend = interpreter.make_interpreter(bundle / "model_int8.tflite", threads=1)
    assert backend == "tensorflow" and tried == list(interpreter.BACKENDS)
    assert interp.get_input_details()[0]["shape"].tolist() == [1, 64, 64, 3]


def test_make_interpreter_stops_at_the_first_backend_that_works(bundle, monkeypatch):
    tried = _fake_backends(monkeypatch, {"ai_edge_litert": _Refuses})
    _, backend = interpreter.make_interpreter(bundle / "model_fp32.tflite")
    assert backend == "tflite_runtime" and tried == ["ai_edge_litert", "tflite_runtime"]


def test_every_backend_failing_is_a_backend_error_naming_each(bundle, monkeypatch):
    monkeypatch.setattr(interpreter, "interpreter_class", lambda name: _Refuses)
    with pytest.raises(interpreter.BackendError) as error:
        interpreter.make_interpreter(bundle / "model_fp32.tflite")
    for name in interpreter.BACKENDS:
        assert name in str(error.value)


@pytest.mark.skipif(importlib.util.find_spec("tflite_runtime") is not None,
                    reason="tflite_runtime is installed here")
def test_forcing_a_missing_backend_is_a_backend_error(bundle):
    with pytest.raises(interpreter.BackendError, match="tflite_runtime: not installed"):
        interpreter.make_interpreter(bundle / "model_fp32.tflite", backend="tflite_runtime")


# ----------------------------------------------------------------------------- frame hand-over

def test_frame_slot_keeps_only_the_newest_frame():
    slot = FrameSlot()
    for number in (1, 2, 3):
        assert slot.put(number, np.full((2, 2, 3), number, np.uint8))
    number, frame = slot.take()
    assert number == 3 and frame[0, 0, 0] == 3 and slot.dropped == 2
    assert slot.take(timeout=0.01) is None  # nothing newer: waits, no repeat of frame 3


def test_frame_slot_keep_all_hands_over_every_frame_in_order():
    slot = FrameSlot(keep_all=True)

    def produce():
        for number in range(1, 41):
            slot.put(number, np.zeros((1, 1, 3), np.uint8))
        slot.close()

    producer = threading.Thread(target=produce)
    producer.start()
    received = []
    while (item := slot.take(timeout=5)) is not END:
        received.append(item[0])
        if len(received) % 10 == 0:
            time.sleep(0.01)  # a slow consumer must not lose frames
    producer.join(timeout=5)
    assert received == list(range(1, 41)) and slot.dropped == 0


def test_frame_slot_close_wakes_both_sides_and_keeps_the_last_frame():
    slot = FrameSlot(keep_all=True, depth=2)
    slot.put(0, np.zeros((1, 1, 3), np.uint8))
    slot.put(1, np.zeros((1, 1, 3), np.uint8))
    blocked = threading.Thread(target=slot.put, args=(2, np.zeros((1, 1, 3), np.uint8)))
    blocked.start()  # waits: the slot is full
    time.sleep(0.05)
    assert blocked.is_alive()
    slot.close()
    blocked.join(timeout=5)
    assert not blocked.is_alive()
    assert [slot.take()[0], slot.take()[0]] == [0, 1]  # frame 2 came after the close
    assert slot.take() is END and not slot.put(3, np.zeros((1, 1, 3), np.uint8))
    assert slot.take(timeout=0) is END  # the end is not mistaken for a timeout


def test_a_frame_put_just_before_close_is_never_lost(video):
    # The reader hands over its last frame and closes while the consumer's wait has just
    # timed out: the frame must still be yielded (it used to be lost when the consumer
    # then saw "closed" and quit). The interleaving is forced, not left to the scheduler.
    source = OpenCVSource(str(video))
    source._started = True  # no reader thread: the test plays the reader
    slot = source._slot
    real_take = slot.take
    takes = 0

    def take(timeout=None):
        nonlocal takes
        takes += 1
        if takes == 2:
            timed_out = real_take(timeout=0)  # empty: the wait times out ...
            slot.put(99, np.zeros((1, 1, 3), np.uint8))  # ... the last frame arrives ...
            slot.close()  # ... and the reader closes, before the consumer looks again
            return timed_out
        return real_take(timeout)

    slot.take = take
    try:
        assert [number for number, _ in source.frames(poll_s=0.01)] == [1, 99]
    finally:
        source.stop()


# ----------------------------------------------------------------------------- capture thread

def test_to_rgb_frame_swaps_bgr_and_widens_grey_and_bgra():
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 0] = 255  # blue in OpenCV's order
    assert to_rgb_frame(bgr)[0, 0].tolist() == [0, 0, 255]
    assert to_rgb_frame(np.full((2, 2), 7, np.uint8)).shape == (2, 2, 3)
    bgra = np.zeros((2, 2, 4), np.uint8)
    bgra[..., 2] = 255  # red
    assert to_rgb_frame(bgra)[0, 0].tolist() == [255, 0, 0]
    with pytest.raises(ValueError, match="shape"):
        to_rgb_frame(np.zeros((2, 2, 2), np.uint8))


def test_opencv_source_reads_every_frame_of_a_video_file_in_order(video):
    with OpenCVSource(str(video)) as source:
        assert source.keep_all and source.fps == pytest.approx(30.0)
        frames = list(source.frames())
    assert [number for number, _ in frames] == list(range(1, 13))
    assert all(frame.shape == (64, 64, 3) and frame.dtype == np.uint8 for _, frame in frames)
    assert source.dropped == 0 and source.error is None


def test_opencv_source_live_mode_drops_stale_frames_and_ends_on_the_newest(video):
    seen = []
    with OpenCVSource(str(video), keep_all=False) as source:
        for number, _frame in source.frames():
            seen.append(number)
            time.sleep(0.05)  # slower than decoding: the reader runs ahead
    assert seen == sorted(set(seen)) and seen[-1] == 12
    assert source.dropped > 0 and len(seen) + source.dropped == 12


def test_opencv_source_that_already_read_everything_still_hands_over_the_newest(video):
    source = OpenCVSource(str(video), keep_all=False).start()
    source._thread.join(timeout=10)  # the reader is done before anyone asks for a frame
    assert [number for number, _ in source.frames()] == [12]
    source.stop()


def test_opencv_source_stop_ends_the_thread_early(video):
    source = OpenCVSource(str(video)).start()
    for number, _frame in source.frames():
        if number == 3:
            break
    source.stop()
    source.stop()  # twice is fine
    assert not source._thread.is_alive()


@pytest.mark.parametrize("source, message", [
    ("missing.avi", "does not exist"),
    ("junk.avi", "junk.avi"),
    (99, "camera 99"),
])
def test_opencv_source_that_cannot_open_raises_camera_error(tmp_path, monkeypatch, source, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "junk.avi").write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(CameraError, match=message):
        OpenCVSource(source)


def test_opencv_4_without_utils_logging_is_quieted_and_restored(tmp_path, monkeypatch):
    # opencv-python 4.11, which Raspberry Pi OS Bookworm gets, has cv2.setLogLevel and no
    # cv2.utils.logging (OpenCV 5 the other way round): opening must work with either
    import types

    import cv2

    levels = [3]
    monkeypatch.setattr(cv2, "utils", types.SimpleNamespace())
    monkeypatch.setattr(cv2, "getLogLevel", lambda: levels[-1], raising=False)
    monkeypatch.setattr(cv2, "setLogLevel", levels.append, raising=False)
    (tmp_path / "junk.avi").write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(CameraError, match="junk.avi"):
        OpenCVSource(str(tmp_path / "junk.avi"))
    assert levels == [3, 0, 3]  # silent while opening, then as it was


# ----------------------------------------------------------------------------- stream loop

def test_stream_feeds_rgb_frames_to_the_classifier(bundle, tmp_path, monkeypatch):
    classifier = Classifier(bundle / "model_fp32.tflite")
    seen = []
    real_input_tensor = classifier.input_tensor

    def spy(image):
        seen.append(np.asarray(image))
        return real_input_tensor(image)

    monkeypatch.setattr(classifier, "input_tensor", spy)
    red = solid_video(tmp_path / "red.avi", (230, 20, 20), frames=4)
    summary = classify_stream(classifier, OpenCVSource(str(red)), k=2)
    assert summary.frames == 4 and summary.ended_by == "end"
    assert len(seen) == 4  # every frame passed through the spy: the loop below checks them all
    for rgb in seen:
        assert rgb[..., 0].mean() > 180 and rgb[..., 2].mean() < 70  # red stays red


def test_stream_max_frames_and_callback_stop(bundle, video):
    classifier = Classifier(bundle / "model_int8.tflite")
    summary = classify_stream(classifier, OpenCVSource(str(video)), max_frames=5)
    assert (summary.frames, summary.ended_by) == (5, "max-frames")
    assert len(summary.latencies_ms) == 5 and summary.fps > 0 and summary.inference_ms_p50 > 0
    numbers = []
    summary = classify_stream(classifier, OpenCVSource(str(video)),
                              on_frame=lambda n, *_: numbers.append(n) or n < 4)
    assert (summary.frames, summary.ended_by, numbers) == (4, "stop", [1, 2, 3, 4])


def test_ctrl_c_ends_a_stream_cleanly_with_a_summary(bundle, video):
    classifier = Classifier(bundle / "model_int8.tflite")
    source = OpenCVSource(str(video))

    def interrupt_at_three(number, *_):
        if number == 3:
            raise KeyboardInterrupt
        return True

    summary = classify_stream(classifier, source, on_frame=interrupt_at_three)
    # Ctrl-C while frame 3's result was being delivered: only frames 1 and 2 reached the user
    assert (summary.frames, summary.ended_by) == (2, "interrupt")
    assert not source._thread.is_alive()
    assert summary.to_json()["summary"]["frames"] == 2


# ----------------------------------------------------------------------------- no TensorFlow

def test_no_module_imports_tensorflow_and_files_need_no_opencv(bundle, demo_dir, tmp_path):
    image = demo_images(demo_dir)[0]
    clip = write_video(tmp_path / "clip.avi", [image], frames=3)
    script = textwrap.dedent(f"""
        import importlib, json, pkgutil, sys
        import edge_runtime
        names = [m.name for m in pkgutil.walk_packages(edge_runtime.__path__, "edge_runtime.")]
        for name in names:
            importlib.import_module(name)
        from edge_runtime.commands.classify import main
        files_rc = main(["--model", {str(bundle / "model_int8.tflite")!r}, "--json",
                         {str(image)!r}])
        cv2_after_files = "cv2" in sys.modules
        camera_rc = main(["--model", {str(bundle / "model_fp32.tflite")!r}, "--json",
                          "--camera", {str(clip)!r}, "--headless"])
        heavy = sorted(n for n in sys.modules if n.split(".")[0] in (
            "tensorflow", "keras", "tf_keras", "model_compression_toolkit", "edgemdt_tpc"))
        print(json.dumps({{"modules": names, "files_rc": files_rc, "camera_rc": camera_rc,
                          "cv2_after_files": cv2_after_files, "heavy": heavy}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"edge_runtime.commands.classify", "edge_runtime.sources.opencv_source",
            "edge_runtime.classifier", "edge_runtime.interpreter",
            "edge_runtime.live.server"} <= set(report["modules"])
    assert report["files_rc"] == 0 and report["camera_rc"] == 0
    assert report["cv2_after_files"] is False  # OpenCV is the camera path's alone
    assert report["heavy"] == []
    lines = [json.loads(line) for line in done.stdout.strip().splitlines()[:-1]]
    assert lines[-1] == {"summary": lines[-1]["summary"]} and lines[-1]["summary"]["frames"] == 3


def test_ctrl_c_signal_ends_a_stream_between_frames(bundle, video, ctrl_c_handler):
    # A real SIGINT while a frame's result is being delivered: that frame is counted (its
    # result is out) and the run ends before the next one, instead of KeyboardInterrupt
    # landing wherever the main thread happens to be.
    import os
    import signal

    classifier = Classifier(bundle / "model_int8.tflite")
    seen = []

    def ctrl_c_at_three(number, *_):
        seen.append(number)
        if number == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return True

    summary = classify_stream(classifier, OpenCVSource(str(video)), on_frame=ctrl_c_at_three)
    assert (summary.frames, summary.ended_by, seen) == (3, "interrupt", [1, 2, 3])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_importing_the_package_costs_neither_numpy_nor_pillow():
    """Every ``edge_runtime.…`` import runs the package's ``__init__`` first: it stays light,
    and its public names still come when asked for."""
    script = textwrap.dedent("""
        import sys
        import edge_runtime
        import edge_runtime.errors
        light = [m for m in ("numpy", "PIL") if m in sys.modules]
        from edge_runtime import Classifier, Manifest, classifier
        print(light, Classifier.__module__, Manifest.__module__, classifier.__name__)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["[]", "edge_runtime.classifier", "edge_runtime.manifest",
                                   "edge_runtime.classifier"]


def test_a_classifier_is_a_frame_classifier_for_any_camera(bundle):
    from edge_runtime.classifier import FrameClassifier

    classifier = Classifier(bundle / "model_int8.tflite")
    assert isinstance(classifier, FrameClassifier) and classifier.camera is None
