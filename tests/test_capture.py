"""edge-capture and its writer, and the live view's capture endpoint: labels, names that never
overwrite, disk limits, a camera that vanishes, the token. TensorFlow-free."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from common.labels import label_problem
from edge_runtime.capture.writer import CaptureError, CaptureLimit, PictureWriter
from edge_runtime.commands import capture as capture_cli
from edge_runtime.live import LiveServer
from edge_runtime.live.capture_panel import CapturePanel
from edge_runtime.sources.frame_source import FrameSource
from tests.helpers import solid_video

pytestmark = pytest.mark.edge

FRAME = np.full((48, 96, 3), (30, 60, 200), np.uint8)  # BGR, 96x48: not a model's square


@pytest.mark.parametrize("label", ["a/b", "..", ".", "../up", "a\\b", "x\ny", "tab\t", "",
                                   "  ", ".hidden", " cup"])
def test_labels_that_are_not_one_plain_folder_name_are_refused(label, tmp_path):
    assert label_problem(label)
    with pytest.raises(CaptureError):
        PictureWriter(tmp_path).save(FRAME, label)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("label", ["cup", "tasse à café", "no.2", "a..b"])
def test_plain_labels_are_accepted(label):
    assert label_problem(label) is None


def test_a_picture_never_overwrites_one(tmp_path, monkeypatch):
    import time as time_module

    monkeypatch.setattr(time_module, "strftime", lambda *_: "20260101-000000")
    taken = tmp_path / "cup" / "capture-20260101-000000-0001.jpg"
    taken.parent.mkdir()
    taken.write_bytes(b"the user's own picture")
    writer = PictureWriter(tmp_path)
    first, second = writer.save(FRAME, "cup"), writer.save(FRAME, "cup")
    assert taken.read_bytes() == b"the user's own picture"
    assert first.name == "capture-20260101-000000-0002.jpg" and second != first
    # the frame as the camera gave it: its own size, no temporary file left behind
    assert Image.open(first).size == (96, 48)
    assert sorted(p.name for p in taken.parent.iterdir()) == [
        taken.name, first.name, second.name]
    assert writer.counts() == {"cup": 3} and writer.saved == {"cup": 2}


def test_max_mb_and_a_nearly_full_disk_stop_the_writer(tmp_path):
    small = PictureWriter(tmp_path / "a", max_mb=0.001)
    with pytest.raises(CaptureLimit, match="--max-mb"):
        for _ in range(100):
            small.save(FRAME, "cup")
    assert small.written_bytes <= 1000
    full = PictureWriter(tmp_path / "b", min_free_mb=1e12)  # a disk with less than 1 PB free
    with pytest.raises(CaptureLimit, match="nearly full"):
        full.save(FRAME, "cup")
    assert not (tmp_path / "b" / "cup").exists() or not any((tmp_path / "b" / "cup").iterdir())


def test_edge_capture_saves_full_frames_from_a_video(tmp_path, capsys):
    video = solid_video(tmp_path / "clip.avi", (200, 30, 30), frames=30, size=(96, 48))
    code = capture_cli.main(["--camera", str(video), "--out", str(tmp_path / "photos"),
                             "--label", "cup", "--count", "3", "--every", "0.1"])
    assert code == 0, capsys.readouterr().err
    saved = sorted((tmp_path / "photos" / "cup").iterdir())
    assert len(saved) == 3 and all(Image.open(p).size == (96, 48) for p in saved)
    err = capsys.readouterr().err
    assert "saved 3/3" in err and "3 picture(s) saved" in err


@pytest.mark.parametrize("argv, message", [
    (["--label", ".."], "label '..' starts with a dot"),
    (["--label", "a/b"], "path separator"),
    ([], "give --label L"),
])
def test_bad_usage_is_one_line_exit_2(tmp_path, capsys, argv, message):
    code = capture_cli.main(["--camera", str(tmp_path / "none.avi"), "--out",
                             str(tmp_path / "photos"), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err


def test_a_full_disk_stops_capture_with_one_line_exit_1(tmp_path, capsys):
    video = solid_video(tmp_path / "clip.avi", (200, 30, 30), frames=10)
    code = capture_cli.main(["--camera", str(video), "--out", str(tmp_path / "photos"),
                             "--label", "cup", "--every", "0", "--min-free-mb", "1e12"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and "nearly full" in err[-1] and "0 picture(s) saved" in err[-1]


class _Vanishing(FrameSource):
    """A live camera that gives ``n`` frames, then is gone (unplugged)."""

    keep_all = False

    def __init__(self, n: int) -> None:
        self.name, self.fps, self.left = "camera:9", 0.0, n
        self._begin(FRAME.copy())

    def _read(self):
        import time

        time.sleep(0.02)
        self.left -= 1
        return FRAME.copy() if self.left > 0 else None

    def _release(self) -> None:
        pass


def test_a_camera_that_vanishes_keeps_what_was_saved_and_exits_1(tmp_path, capsys,
                                                                 monkeypatch):
    import edge_runtime.stream.camera_run as camera_run

    monkeypatch.setattr(camera_run, "open_camera", lambda options: _Vanishing(8))
    code = capture_cli.main(["--camera", "9", "--out", str(tmp_path / "photos"),
                             "--label", "cup", "--every", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    kept = list((tmp_path / "photos" / "cup").iterdir())
    assert code == 1 and kept
    assert "camera:9 stopped delivering frames" in err[-1]
    assert f"{len(kept)} picture(s) saved" in err[-1]


def _post(url: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return exc.code, json.loads(body) if body.startswith(b"{") else {}


def test_the_capture_endpoint_needs_the_token_a_plain_label_and_room(tmp_path):
    panel = CapturePanel(PictureWriter(tmp_path / "photos"), ["cup", "mug"])
    # on loopback, with no token asked for: a panel makes the server require one anyway
    with LiveServer("127.0.0.1", 0, capture=panel) as live:
        assert live.token
        stop = threading.Event()

        def camera() -> None:  # frames keep coming: a burst takes newer ones
            number = 0
            while not stop.is_set():
                number += 1
                live.publish(number, FRAME, {"source": f"test#{number}", "top_k": [],
                                             "latency_ms": None})
                time.sleep(0.02)

        threading.Thread(target=camera, daemon=True).start()
        time.sleep(0.1)
        base = f"http://127.0.0.1:{live.port}/capture"
        assert _post(f"{base}?label=cup")[0] == 403
        assert _post(f"{base}?label=cup&token=wrong")[0] == 403
        status, body = _post(f"{base}?label=..%2Fetc{live.query().replace('?', '&')}")
        assert status == 400 and "label" in body["error"]
        status, body = _post(f"{base}?label=cup&count=2{live.query().replace('?', '&')}")
        assert status == 200 and len(body["saved"]) == 2 and body["counts"] == {"cup": 2}
        assert body["labels"] == ["cup", "mug"]
        panel.writer.budget.min_free_bytes = 10 ** 18  # the disk is now nearly full
        status, body = _post(f"{base}?label=cup{live.query().replace('?', '&')}")
        assert status == 507 and "nearly full" in body["error"]
        stop.set()
    assert sorted(p.parent.name for p in (tmp_path / "photos").rglob("*.jpg")) == ["cup", "cup"]
