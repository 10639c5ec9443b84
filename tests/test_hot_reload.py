"""A running camera changes models between two frames (edge_runtime/stream/reload.py), and tells
systemd's watchdog it is alive only while frames are
classified (edge_runtime/stream/sdnotify.py)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from benchmarks.soak import live_view_url
from deploy.store import Store, activate
from edge_runtime.classifier import Prediction
from edge_runtime.sources.frame_source import FrameSource
from edge_runtime.stream.camera_run import CameraOptions, run_camera
from edge_runtime.stream.reload import ModelWatch
from edge_runtime.stream.sdnotify import Notifier
from tests.bundle_variants import renamed
from tests.helpers import demo_images, write_video

pytestmark = pytest.mark.edge

REPO = Path(__file__).resolve().parents[1]


def switch(link: Path, target: str) -> None:
    """The link switched by hand (as edge-model would, atomically), here to what no check passes."""
    temporary = link.with_name(".current.new")
    os.symlink(target, temporary)
    os.replace(temporary, link)


def test_a_looping_camera_run_switches_models_without_losing_a_frame(bundle, demo_dir,
                                                                      tmp_path):
    video = write_video(tmp_path / "clip.avi", demo_images(demo_dir)[:10], 10)
    store = Store(tmp_path / "models")
    assert activate(store, renamed(bundle, tmp_path / "v1", "old-")).ok
    broken = store.root / "versions" / "broken"  # what no check would let through
    broken.mkdir()
    (broken / "model_fp32.tflite").write_bytes(b"not a model")
    current = store.root / "current"
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_runtime.commands.classify",
         "--model", str(current / "model_fp32.tflite"),
         "--camera", str(video), "--loop", "--headless", "--json", "--serve", "0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[dict] = []
    reader = threading.Thread(target=lambda: lines.extend(json.loads(x) for x in process.stdout))
    reader.start()
    errors: list[str] = []
    try:
        url = live_view_url(process.stderr, errors)
        assert url, "".join(errors)
        drain = threading.Thread(target=lambda: errors.extend(process.stderr))
        drain.start()

        def labels_seen() -> set[str]:
            return {r["top_k"][0]["label"].split("-")[0] for r in list(lines) if "top_k" in r}

        def wait_for(condition, seconds=30.0):
            deadline = time.monotonic() + seconds
            while not condition() and time.monotonic() < deadline:
                time.sleep(0.1)
            return condition()

        assert wait_for(lambda: len(lines) > 15)  # looped once past the end of the video
        assert labels_seen() == {"old"}
        # edge-model activate: checked, then the link switched underneath the running camera,
        # which commits it: status.json names the new version at its first frame
        done = activate(store, renamed(bundle, tmp_path / "v2", "new-"))
        assert done.result == "activated", done.to_json()
        assert done.checks[-1].detail.startswith(f"the service (pid {process.pid})")
        assert wait_for(lambda: "new" in labels_seen()), "".join(errors)
        with urllib.request.urlopen(url + "/predictions", timeout=10) as answer:
            assert json.load(answer)["top_k"][0]["label"].startswith("new-")
        # a model that cannot load: the running one stays, one line says so
        seen = len(lines)
        switch(current, "versions/broken")
        assert wait_for(lambda: any("model reload failed" in e for e in errors))
        assert wait_for(lambda: len(lines) > seen + 30)
        assert {r["top_k"][0]["label"].split("-")[0] for r in lines[seen + 10:]} == {"new"}
        with urllib.request.urlopen(url + "/healthz", timeout=10) as answer:
            assert answer.status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        reader.join(timeout=10)
    assert code == 0, "".join(errors)
    frames = [r for r in lines if "top_k" in r]
    numbers = [int(r["source"].rsplit("#", 1)[1]) for r in frames]
    # a recording hands over every frame: none lost across the swap, in order
    assert numbers == list(range(1, len(numbers) + 1))
    labels = [r["top_k"][0]["label"].split("-")[0] for r in frames]
    first_new = labels.index("new")
    assert set(labels[:first_new]) == {"old"} and set(labels[first_new:]) == {"new"}
    assert sum("model reload failed" in e for e in errors) == 1
    assert sum("model reloaded" in e for e in errors) == 1, "".join(errors)


# ----------------------------------------------------------------------------- the watchdog

class StallingSource(FrameSource):
    """A camera that delivers ``good`` frames, then hangs in its capture call (as libcamera
    can) until ``release`` is set."""

    def __init__(self, good: int) -> None:
        self.name, self.fps, self.keep_all = "stalling", 0.0, False
        self.good = good
        self.release = threading.Event()
        self._begin(np.zeros((8, 8, 3), np.uint8))

    def _read(self):
        if self.frames_read < self.good:
            time.sleep(0.02)
            return np.zeros((8, 8, 3), np.uint8)
        self.release.wait()
        return None

    def _release(self) -> None:
        pass


class CountingClassifier:
    """What a camera run needs of a classifier, without a model (a path that is in no store)."""

    labels = ["a", "b"]
    camera = None  # any camera's frames
    model_path = Path("counting.tflite")

    def frame_tensor(self, frame):
        return np.zeros(1)

    def classify_tensor(self, tensor, k=3, threshold=0.0):
        return [Prediction("a", 0, 1.0)], 0.1


def test_a_stalled_camera_stops_notifying_the_watchdog(tmp_path, monkeypatch):
    address = str(tmp_path / "notify")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(0.1)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # 0.2 s: a datagram every 0.05 s at most
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    source = StallingSource(good=40)
    monkeypatch.setattr("edge_runtime.stream.camera_run.open_camera",
                        lambda options, alive, uploading: source)
    codes = []
    run = threading.Thread(target=lambda: codes.append(
        run_camera(CountingClassifier(), CameraOptions(camera="0", headless=True,
                                                       summary_every_s=60))))
    received: list[tuple[float, str]] = []
    run.start()
    try:
        deadline = time.monotonic() + 4.0  # 40 frames take 0.8 s, then the camera hangs
        while time.monotonic() < deadline:
            try:
                received.append((time.monotonic(), listener.recv(256).decode()))
            except TimeoutError:
                pass
    finally:
        source.release.set()
        run.join(timeout=10)
    with listener:
        ending = []
        while True:
            try:
                ending.append(listener.recv(256).decode())
            except TimeoutError:
                break
    states = [state for _, state in received]
    assert states[0] == "READY=1" and states.count("READY=1") == 1
    assert states.count("WATCHDOG=1") >= 3
    last = max(t for t, state in received if state == "WATCHDOG=1")
    # frozen for over 2 s: silent well past the 0.2 s timeout, so systemd would restart it
    assert deadline - last > 2.0, states
    assert codes == [1]  # the camera "stopped delivering" once released
    assert ending == ["STOPPING=1"]


def test_no_notify_socket_sends_nothing_and_abstract_names_are_understood(monkeypatch):
    assert Notifier({}).send("READY=1") is False
    notifier = Notifier({"NOTIFY_SOCKET": "@edge-test", "WATCHDOG_USEC": "30000000",
                         "WATCHDOG_PID": str(os.getpid() + 1)})
    assert notifier.address == "\0edge-test"
    assert notifier.watchdog_s == 0.0  # the watchdog is another process's


def test_a_full_notify_queue_drops_messages_and_never_blocks_the_run(tmp_path):
    """systemd not reading (its queue full): a message is dropped, the frame loop goes on."""
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(address)  # never read
        notifier = Notifier({"NOTIFY_SOCKET": address})
        tries: list[bool] = []

        def fill() -> None:
            for _ in range(100_000):
                tries.append(notifier.send("WATCHDOG=1"))
                if not tries[-1]:
                    return

        sender = threading.Thread(target=fill, daemon=True)
        sender.start()
        sender.join(timeout=10)
        notifier.close()
    assert not sender.is_alive(), "a send blocked on the full queue"
    assert tries[0] is True and tries[-1] is False


def test_sighup_reloads_the_same_path_and_a_model_that_fails_keeps_the_old(tmp_path):
    model = tmp_path / "model.tflite"
    model.write_bytes(b"TFL3")
    loads: list[str] = []

    def load(path: str):
        loads.append(path)
        if len(loads) == 2:
            raise ValueError("not a\nmodel")
        return f"classifier {len(loads)}"

    def next_swap(watch: ModelWatch, seconds: float = 5.0):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            new = watch()
            if new is not None:
                return new
            time.sleep(0.01)
        return None

    watch = ModelWatch(model, load, poll_s=3600)  # only SIGHUP can ask
    assert watch() is None and loads == []
    # default, or ignored when the tests were started under nohup (as a CI job may be)
    before = signal.getsignal(signal.SIGHUP)
    # the logger may not propagate (run_command configured it in an earlier test): listen to it
    logger = logging.getLogger("edge_runtime.stream.reload")
    records: list[logging.LogRecord] = []
    listener = logging.Handler()
    listener.emit = records.append
    logger.addHandler(listener)
    previous_level = logger.level
    logger.setLevel(logging.INFO)
    with watch.sighup():
        os.kill(os.getpid(), signal.SIGHUP)  # systemctl reload
        assert next_swap(watch) == "classifier 1"
        assert loads == [str(model)] and watch.reloads == 1
        os.kill(os.getpid(), signal.SIGHUP)
        assert next_swap(watch, 1.0) is None  # the load failed: nothing to swap
    logger.removeHandler(listener)
    logger.setLevel(previous_level)
    failures = [r.getMessage() for r in records if "reload failed" in r.getMessage()]
    assert len(failures) == 1 and "\n" not in failures[0] and "not a model" in failures[0]
    assert signal.getsignal(signal.SIGHUP) is before  # put back after the run


def test_the_table_widens_when_a_reloaded_model_brings_longer_or_more_classes():
    """The printed table (edge_runtime/stream/results.py) keeps its columns aligned across a
    reload."""
    import io

    from edge_runtime.stream.results import ResultWriter

    stream = io.StringIO()
    writer = ResultWriter(False, 2, len("cam#1"), len("cat"), stream)
    writer.result("cam#1", [Prediction("cat", 0, 0.9), Prediction("dog", 1, 0.1)], 1.0)
    writer.result("cam#2", [Prediction("new-longer-name", 2, 0.8), Prediction("cat", 0, 0.1),
                            Prediction("dog", 1, 0.1)], 1.0)
    header, first, second_header, second = stream.getvalue().splitlines()
    assert header.split() == ["SOURCE", "LABEL", "SCORE", "MS", "TOP-2"]
    assert second_header.split() == ["SOURCE", "LABEL", "SCORE", "MS", "TOP-2", "TOP-3"]
    assert second.split()[:3] == ["cam#2", "new-longer-name", "0.800"]
    # every column starts where its header's does
    for name in ("SCORE", "TOP-2", "TOP-3"):
        start = second_header.index(name)
        assert second[start - 2:start] == "  " and second[start] != " "
    assert first.index("0.900") == header.index("SCORE")


# ------------------------------------------------------- one way to switch, CPU and sensor

class Recording(FrameSource):
    """A recording of ``n`` frames: every one handed over, in order."""

    def __init__(self, name: str, n: int) -> None:
        self.name, self.fps, self.keep_all, self.left = name, 0.0, True, n
        self._begin(np.zeros((8, 8, 3), np.uint8))

    def _read(self):
        time.sleep(0.01)  # the writer of kept frames keeps up
        self.left -= 1
        return np.zeros((8, 8, 3), np.uint8) if self.left > 1 else None

    def _release(self) -> None:
        pass


class Labelled:
    """A stand-in model whose every answer is its one label, at 0.5; ``camera``: the camera its
    frames must come from (the AI Camera's network), None for a model on the CPU."""

    def __init__(self, folder: Path, label: str, camera: str | None = None) -> None:
        self.model_path = folder / f"{label}.model"
        self.model_path.write_text(label)
        self.labels, self.camera = [label, "other"], camera

    def frame_tensor(self, frame):
        return np.zeros(1)

    def classify_tensor(self, tensor, k=3, threshold=0.0):
        return [Prediction(self.labels[0], 0, 0.5)], 1.0


class Switches:
    """A model watch that brings ``models[n]`` at its ``n``-th look (one look a frame)."""

    def __init__(self, models: dict[int, Labelled]) -> None:
        self.models, self.looks = models, 0

    def sighup(self):
        return contextlib.nullcontext(self)

    def __call__(self):
        self.looks += 1
        return self.models.get(self.looks)


def test_a_switch_swaps_a_cpu_model_in_place_and_opens_the_camera_again_for_the_sensor(
        tmp_path, monkeypatch, capsys):
    """One way through for every switch: the watch's new model is swapped in between two frames,
    and when it needs a camera of its own (the AI Camera's network) the camera opens again for
    it, the run going on (live view, kept frames, systemd told of a reload)."""
    from common.fileio import sha256
    from edge_runtime.capture.uncertain import UncertainOptions
    from edge_runtime.stream import camera_run
    from edge_runtime.stream.camera_run import ServeOptions

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify"))
    listener.settimeout(0.1)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    cpu, newer, sensor = (Labelled(tmp_path, "cpu"), Labelled(tmp_path, "newer"),
                          Labelled(tmp_path, "sensor", camera="imx500:net.rpk"))
    opened: list[str] = []
    monkeypatch.setattr(camera_run, "open_camera", lambda options, alive, uploading: opened.append(
        options.camera) or Recording(options.camera, 30 if len(opened) == 1 else 6))
    panels = []
    make_panel = camera_run._capture_panel
    monkeypatch.setattr(camera_run, "_capture_panel",
                        lambda *args: panels.append(make_panel(*args)) or panels[-1])
    options = CameraOptions(camera="0", headless=True, json=True,
                            serve=ServeOptions("127.0.0.1", 0), capture_to=str(tmp_path / "cap"),
                            save_uncertain=UncertainOptions(str(tmp_path / "hard"), 0.6, None,
                                                            1000, None, 0.0))
    code = run_camera(cpu, options, Switches({5: newer, 10: sensor}))
    # an earlier command of this session may have sent the log to stdout: the JSON lines only
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if line.startswith("{")]
    assert code == 0
    firsts = [line["top_k"][0]["label"] for line in lines if "top_k" in line]
    # frame 10 came from the CPU's camera: dropped when the sensor's model came
    assert firsts == ["cpu"] * 4 + ["newer"] * 5 + ["sensor"] * 5
    assert opened == ["0", "imx500:net.rpk"]  # the CPU's swap kept the camera
    states = []
    with listener:
        while True:
            try:
                states.append(listener.recv(256).decode())
            except TimeoutError:
                break
    assert states == ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]
    journal = [json.loads(line) for line in
               (tmp_path / "hard" / "index.jsonl").read_text().splitlines()]
    by_label = {line["prediction"]: line["model_version"] for line in journal}
    assert by_label["cpu"] == sha256(cpu.model_path)[:12]
    assert by_label["sensor"] == sha256(sensor.model_path)[:12]
    assert set(by_label) <= {"cpu", "newer", "sensor"}
    assert panels[0].labels == sensor.labels  # the capture panel offers the new model's labels
