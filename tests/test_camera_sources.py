"""Camera sources: the --camera grammar, Picamera2 through a stand-in module, --list-cameras,
and the proof that a camera frame and the same picture from a file become the same tensor.

No test needs a camera: ``tests/fake_picamera2`` is put on ``sys.path`` in place of the real
Picamera2 and serves known pictures in the real byte orders.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_runtime.classifier import Classifier
from edge_runtime.commands.classify import main
from edge_runtime.errors import CameraError
from edge_runtime.frames import frame_to_image
from edge_runtime.image import is_image_file, load_image
from edge_runtime.sources import open_source as sources
from edge_runtime.sources import picamera
from edge_runtime.sources.camera_spec import CameraSpec, parse_camera, parse_size
from edge_runtime.sources.listing import list_cameras
from edge_runtime.sources.open_source import open_source
from edge_runtime.sources.opencv_source import OpenCVSource
from edge_runtime.sources.picamera import PicameraBroken, PicameraSource
from edge_runtime.stream.loop import classify_stream

FAKE = Path(__file__).resolve().parent / "fake_picamera2"
RED, BLUE = (220, 30, 20), (20, 40, 210)  # the stand-in's default picture, RGB: red | blue


@pytest.fixture()
def fake_picamera2(monkeypatch):
    """The stand-in imported as ``picamera2``; its env knobs cleared."""
    for name in ("CAMERAS", "IMAGE", "FORMAT", "FAIL", "LOG"):
        monkeypatch.delenv(f"FAKE_PICAMERA2_{name}", raising=False)
    monkeypatch.syspath_prepend(str(FAKE))
    sys.modules.pop("picamera2", None)
    import picamera2

    picamera2.INSTANCES.clear()
    yield picamera2
    sys.modules.pop("picamera2", None)


@pytest.fixture()
def no_picamera2(monkeypatch):
    """``import picamera2`` fails, as on a machine without the apt package."""
    monkeypatch.setitem(sys.modules, "picamera2", None)


# ----------------------------------------------------------------------------- grammar

@pytest.mark.parametrize("value, spec", [
    (None, CameraSpec("auto")), ("", CameraSpec("auto")), ("auto", CameraSpec("auto")),
    ("picam", CameraSpec("picam", 0)), ("picam:1", CameraSpec("picam", 1)),
    ("PiCam:2", CameraSpec("picam", 2)),
    ("0", CameraSpec("v4l2", 0)), (" 3 ", CameraSpec("v4l2", 3)),
    ("/dev/video2", CameraSpec("v4l2", 2)), ("/dev/video12", CameraSpec("v4l2", 12)),
    ("clip.mp4", CameraSpec("file", target="clip.mp4")),
    ("/dev/v4l/by-id/usb-cam", CameraSpec("file", target="/dev/v4l/by-id/usb-cam")),
    ("rtsp://10.0.0.5:8554/cam", CameraSpec("url", target="rtsp://10.0.0.5:8554/cam")),
    ("http://cam.local/video.mjpg", CameraSpec("url", target="http://cam.local/video.mjpg")),
    ("HTTPS://cam.local/live", CameraSpec("url", target="HTTPS://cam.local/live")),
])
def test_camera_grammar(value, spec):
    assert parse_camera(value) == spec


def test_picam_with_a_bad_number_is_a_camera_error():
    with pytest.raises(CameraError, match="picam:N"):
        parse_camera("picam:front")


def test_camera_size():
    assert parse_size("640x480") == (640, 480) and parse_size(" 1280X720 ") == (1280, 720)
    for bad in ("640", "0x480", "axb", "640x480x3"):
        with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
            parse_size(bad)


def test_a_stream_url_is_opened_with_ffmpeg_and_read_newest_only(monkeypatch):
    cv2 = pytest.importorskip("cv2")
    opened = []

    class Capture:
        def __init__(self, *args):
            opened.append(args)

        def isOpened(self):
            return True

        def read(self):
            return True, np.zeros((4, 4, 3), np.uint8)

        def get(self, _prop):
            return 25.0

        def release(self):
            pass

    monkeypatch.setattr(cv2, "VideoCapture", Capture)
    source = open_source("rtsp://10.0.0.5/cam")
    assert opened == [("rtsp://10.0.0.5/cam", cv2.CAP_FFMPEG)]
    assert not source.keep_all and source.name == "rtsp://10.0.0.5/cam"
    source.stop()


# ----------------------------------------------------------------------------- Picamera2

@pytest.mark.parametrize("fmt", ["RGB888", "XBGR8888", "BGR888", "XRGB8888"])
def test_picamera_frames_come_out_bgr_whatever_the_format(fake_picamera2, monkeypatch, fmt):
    # RGB888 is B,G,R in memory and XBGR8888 is R,G,B,X: red must stay red either way
    monkeypatch.setenv("FAKE_PICAMERA2_FORMAT", fmt)
    with PicameraSource(0, (64, 48)) as source:
        number, frame = next(source.frames())
    assert number >= 1 and frame.shape == (48, 64, 3) and frame.dtype == np.uint8
    assert frame[0, 0].tolist() == list(RED[::-1]) and frame[0, -1].tolist() == list(BLUE[::-1])
    rgb = np.asarray(frame_to_image(frame))
    assert rgb[0, 0].tolist() == list(RED) and rgb[0, -1].tolist() == list(BLUE)


def test_picamera_is_configured_as_asked_then_started_stopped_and_closed(fake_picamera2):
    source = PicameraSource(0, (320, 240))
    camera = fake_picamera2.INSTANCES[-1]
    assert camera.config["main"] == {"size": (320, 240), "format": "RGB888"}
    assert source.name == "picam:0" and not source.keep_all and source.fps == pytest.approx(30, 0.01)
    with source:
        frames = [n for n, _ in zip(range(3), source.frames())]
    assert len(frames) == 3
    assert camera.calls[:4] == ["init", "configure", "start", "capture"]
    assert camera.calls[-2:] == ["stop", "close"] and camera.closed and not camera.started
    source.stop()  # twice is fine: no second stop or close
    assert camera.calls.count("close") == 1


@pytest.mark.parametrize("fail, expected_tail", [
    ("configure", ["configure", "close"]),
    ("start", ["start", "close"]),
    ("capture", ["capture", "stop", "close"]),
])
def test_picamera_that_fails_to_open_is_closed_again(fake_picamera2, monkeypatch, fail,
                                                      expected_tail):
    monkeypatch.setenv("FAKE_PICAMERA2_FAIL", fail)
    with pytest.raises(CameraError, match=f"cannot start Raspberry Pi camera 0: .*{fail} failed"):
        PicameraSource(0)
    assert fake_picamera2.INSTANCES[-1].calls[-len(expected_tail):] == expected_tail


def test_a_missing_picamera_number_names_the_ones_there(fake_picamera2):
    with pytest.raises(CameraError, match=r"no Raspberry Pi camera 2 .*picam:0 \(imx708_wide\)"):
        PicameraSource(2)
    assert fake_picamera2.INSTANCES == []


def test_picam_without_picamera2_says_how_to_install_it(no_picamera2):
    with pytest.raises(CameraError) as caught:
        open_source("picam")
    message = str(caught.value)
    assert "sudo apt install python3-picamera2" in message
    assert "--system-site-packages" in message and "\n" not in message


NUMPY_1_MODULE_UNDER_NUMPY_2 = """
import sys
# what numpy 2 does when a module built for numpy 1.x imports it: a page on stderr, then raise
sys.stderr.write("A module that was compiled using NumPy 1.x cannot be run in NumPy 2.2.6 "
                 "as it may crash.\\nTraceback (most recent call last): ...\\n")
raise ImportError("numpy.core.multiarray failed to import")
"""


@pytest.fixture()
def broken_picamera2(tmp_path, monkeypatch):
    """An installed Picamera2 whose import fails as on Bookworm with numpy 2 in the venv
    (its simplejpeg was built by apt for numpy 1.x), and apt's numpy 1.24.2 beside it."""
    package = tmp_path / "site" / "picamera2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(NUMPY_1_MODULE_UNDER_NUMPY_2)
    apt = tmp_path / "dist-packages" / "numpy-1.24.2.dist-info"
    apt.mkdir(parents=True)
    (apt / "METADATA").write_text("Metadata-Version: 2.1\nName: numpy\nVersion: 1.24.2\n")
    monkeypatch.setattr(picamera, "APT_DIST_PACKAGES", apt.parent)
    monkeypatch.setattr(np, "__version__", "2.2.6")
    monkeypatch.syspath_prepend(str(package.parent))
    sys.modules.pop("picamera2", None)
    yield
    sys.modules.pop("picamera2", None)


NUMPY_FIX = "install 'numpy<2' 'opencv-python-headless<4.12'"


def test_picamera2_broken_by_numpy_says_what_and_how_to_fix_it_in_one_line(broken_picamera2,
                                                                            capfd):
    with pytest.raises(PicameraBroken) as caught:
        open_source("picam")
    message = str(caught.value)
    assert "numpy 1.24.2" in message and "numpy 2.2.6" in message and NUMPY_FIX in message
    assert "\n" not in message
    assert capfd.readouterr().err == ""  # numpy's page of warning kept off the terminal


def test_auto_never_passes_a_broken_picamera2_over_for_another_camera(broken_picamera2,
                                                                      monkeypatch):
    opened = []
    monkeypatch.setattr(sources, "OpenCVSource", lambda *a, **k: opened.append(a))
    with pytest.raises(PicameraBroken, match="numpy"):
        open_source("auto")
    assert opened == []


def test_list_cameras_with_a_broken_picamera2_is_one_line_exit_2(broken_picamera2, capfd):
    assert main(["--list-cameras"]) == 2
    out, err = capfd.readouterr()
    assert err.count("\n") == 1 and NUMPY_FIX in err and "Traceback" not in err
    assert "--camera" not in out  # no list that looks usable


def test_picamera2_broken_otherwise_says_reinstall(tmp_path, monkeypatch):
    package = tmp_path / "picamera2"
    package.mkdir()
    (package / "__init__.py").write_text("import simplejpeg_missing_here\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    with pytest.raises(PicameraBroken, match="apt install --reinstall python3-picamera2"):
        open_source("picam")
    sys.modules.pop("picamera2", None)


def test_auto_prefers_a_camera_module_else_v4l2_camera_0(fake_picamera2, monkeypatch):
    opened = []
    monkeypatch.setattr(sources, "OpenCVSource",
                        lambda *args, **kwargs: opened.append((args, kwargs)) or "v4l2")
    source = open_source(None, (160, 120))
    assert isinstance(source, PicameraSource) and source.name == "picam:0"
    source.stop()
    # libcamera lists USB webcams too; auto leaves those to V4L2
    monkeypatch.setenv("FAKE_PICAMERA2_CAMERAS", json.dumps(
        [{"Model": "uvcvideo", "Num": 0, "Id": "/base/axi/pcie@120000/rp1/usb@200000-1:1.0"}]))
    assert open_source("auto", (160, 120)) == "v4l2"
    monkeypatch.setenv("FAKE_PICAMERA2_CAMERAS", "[]")
    assert open_source("auto", (160, 120)) == "v4l2"
    assert opened == [((0,), {"quiet": True, "size": (160, 120)})] * 2


def test_auto_without_picamera2_opens_v4l2_camera_0(no_picamera2, monkeypatch):
    opened = []
    monkeypatch.setattr(sources, "OpenCVSource",
                        lambda *args, **kwargs: opened.append(args) or "v4l2")
    assert open_source("auto") == "v4l2" and opened == [(0,)]


# ----------------------------------------------------------------------------- --list-cameras

def _sysfs(tmp_path: Path, devices: dict[int, str]) -> Path:
    root = tmp_path / "video4linux"
    for number, name in devices.items():
        (root / f"video{number}").mkdir(parents=True)
        (root / f"video{number}" / "name").write_text(name + "\n")
    root.mkdir(exist_ok=True)
    return root


def test_list_cameras_shows_picamera_models_and_v4l2_names(fake_picamera2, tmp_path):
    sysfs = _sysfs(tmp_path, {10: "bcm2835-codec-decode", 0: "USB2.0 HD UVC WebCam", 2: "x"})
    lines = list_cameras(sysfs)
    text = "\n".join(lines)
    assert "--camera picam:0" in text and "imx708_wide" in text
    devices = [line for line in lines if "/dev/video" in line]
    assert [line.split()[2] for line in devices] == ["/dev/video0", "/dev/video2", "/dev/video10"]
    assert devices[0].split()[1] == "0" and devices[0].endswith("USB2.0 HD UVC WebCam")


def test_list_cameras_without_picamera2_or_devices_says_so(no_picamera2, tmp_path):
    text = "\n".join(list_cameras(_sysfs(tmp_path, {})))
    assert "sudo apt install python3-picamera2" in text and "lists no video device" in text


def test_cli_list_cameras_needs_no_model(fake_picamera2, capfd):
    assert main(["--list-cameras"]) == 0
    out, err = capfd.readouterr()
    assert "--camera picam:0" in out and "imx708_wide" in out and err == ""


def test_cli_still_needs_a_model_for_anything_else(capfd):
    assert main(["photo.jpg"]) == 2
    _, err = capfd.readouterr()
    assert "--model" in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- with a model

def test_cli_picam_without_picamera2_is_one_line_exit_2(bundle, no_picamera2, capfd):
    code = main(["--model", str(bundle / "model_int8.tflite"), "--camera", "picam",
                 "--headless"])
    out, err = capfd.readouterr()
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "python3-picamera2" in err and "--system-site-packages" in err


def test_cli_classifies_the_pi_camera_and_releases_it(bundle, fake_picamera2, capfd):
    code = main(["--model", str(bundle / "model_int8.tflite"), "--camera", "picam:0",
                 "--camera-size", "96x64", "--headless", "--json", "--max-frames", "4"])
    out, _ = capfd.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(lines) == 5 and lines[-1]["summary"]["frames"] == 4
    assert lines[0]["source"].startswith("picam:0#")
    camera = fake_picamera2.INSTANCES[-1]
    assert camera.config["main"]["size"] == (96, 64) and camera.calls[-2:] == ["stop", "close"]


def test_picamera_is_released_when_the_loop_raises(bundle, fake_picamera2):
    classifier = Classifier(bundle / "model_int8.tflite")

    def fail(*_):
        raise RuntimeError("display went away")

    with pytest.raises(RuntimeError, match="display went away"):
        classify_stream(classifier, PicameraSource(0, (64, 48)), on_frame=fail)
    assert fake_picamera2.INSTANCES[-1].calls[-2:] == ["stop", "close"]


def _picture(demo_dir: Path, tmp_path: Path, size=(200, 150)) -> tuple[Path, np.ndarray]:
    """A PNG of a demo image at ``size`` (lossless), and its RGB pixels."""
    source = sorted(p for p in demo_dir.rglob("*") if is_image_file(p))[7]
    rgb = np.asarray(load_image(source).resize(size, Image.Resampling.BICUBIC))
    png = tmp_path / "picture.png"
    Image.fromarray(rgb).save(png)
    return png, rgb


def _tensors_fed(classifier: Classifier, monkeypatch) -> list[np.ndarray]:
    fed: list[np.ndarray] = []
    real = classifier.classify_tensor

    def spy(tensor, k=3, threshold=0.0):
        fed.append(tensor.copy())
        return real(tensor, k, threshold)

    monkeypatch.setattr(classifier, "classify_tensor", spy)
    return fed


def test_a_pi_camera_frame_and_the_same_picture_from_a_file_give_one_tensor(
        bundle, demo_dir, tmp_path, fake_picamera2, monkeypatch):
    png, _rgb = _picture(demo_dir, tmp_path)
    monkeypatch.setenv("FAKE_PICAMERA2_IMAGE", str(png))  # served as B,G,R bytes (RGB888)
    classifier = Classifier(bundle / "model_int8.tflite")
    from_file = classifier.input_tensor(load_image(png))
    fed = _tensors_fed(classifier, monkeypatch)
    summary = classify_stream(classifier, PicameraSource(0, (200, 150)), max_frames=3)
    assert summary.frames == 3 and len(fed) == 3
    for tensor in fed:
        assert np.array_equal(tensor, from_file)
    # and the file path's scores are the camera's
    file_scores = classifier.classify_file(png, k=5)[0]
    assert classifier.classify_tensor(fed[0], k=5)[0] == file_scores


def test_a_lossless_video_frame_and_the_same_picture_from_a_file_give_one_tensor(
        bundle, demo_dir, tmp_path, monkeypatch):
    cv2 = pytest.importorskip("cv2")
    png, rgb = _picture(demo_dir, tmp_path)
    clip = tmp_path / "lossless.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"FFV1"), 30.0, rgb.shape[1::-1])
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write FFV1 (lossless) video")
    for _ in range(3):
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    classifier = Classifier(bundle / "model_fp32.tflite")
    fed = _tensors_fed(classifier, monkeypatch)
    assert classify_stream(classifier, OpenCVSource(str(clip))).frames == 3
    from_file = classifier.input_tensor(load_image(png))
    assert len(fed) == 3  # every frame reached the model: the comparison below is not empty
    assert all(np.array_equal(tensor, from_file) for tensor in fed)


def test_frames_are_preprocessed_off_the_inference_thread(bundle, video_of_8):
    classifier = Classifier(bundle / "model_int8.tflite")
    threads = []
    real = classifier.input_tensor
    classifier.input_tensor = lambda image: threads.append(threading.current_thread()) or real(
        image)
    summary = classify_stream(classifier, OpenCVSource(str(video_of_8)))
    assert summary.frames == 8 and len(threads) == 8
    assert threading.main_thread() not in threads


@pytest.fixture()
def video_of_8(tmp_path) -> Path:
    cv2 = pytest.importorskip("cv2")
    clip = tmp_path / "eight.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 48))
    for i in range(8):
        writer.write(np.full((48, 64, 3), 30 * i, np.uint8))
    writer.release()
    return clip


def test_camera_loop_benchmark_reports_each_stage_and_the_goal(bundle, video_of_8, tmp_path,
                                                               capsys):
    from benchmarks import camera_loop

    out = tmp_path / "loop.json"
    assert camera_loop.main(["--model", str(bundle / "model_int8.tflite"), "--video",
                             str(video_of_8), "--repeats", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for stage in ("decode alone", "preprocess alone", "invoke alone", "camera loop",
                  "loop / max(decode, invoke)", "load average"):
        assert stage in printed
    report = json.loads(out.read_text())
    assert set(report["rows"]) == {"decode", "preprocess", "invoke", "loop"}
    assert all(row["frames"] == 8 and len(row["runs_ms_per_frame"]) == 2
               for row in report["rows"].values())
    assert report["shadow"] is None
    # the loop with a candidate beside it: the same model as its shadow agrees on every frame
    # it compared, and the rate the loop keeps is held to 1 - share
    assert camera_loop.main(["--model", str(bundle / "model_int8.tflite"), "--video",
                             str(video_of_8), "--repeats", "1", "--out", str(out), "--shadow",
                             str(bundle / "model_int8.tflite"), "--shadow-share", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "camera loop with a shadow (share 0.5)" in printed
    assert "of its frame rate (bound ≥ 0.50" in printed
    shadow = json.loads(out.read_text())["shadow"]
    assert shadow["frames"] >= 1 and shadow["agreement"] == 1.0 and shadow["bound"] == 0.5
    assert shadow["frames"] + shadow["skipped"] <= 8 and shadow["frame_rate_kept"] > 0
    assert camera_loop.main(["--model", str(bundle / "model_int8.tflite"), "--video",
                             str(tmp_path / "none.avi")]) == 2
