"""``--camera imx500``: the Raspberry Pi AI Camera through the stand-in Picamera2's IMX500 device.

No camera and no Sony tools: ``tests/fake_picamera2`` behaves as picamera2 0.3.36 and the driver
under it do (its docstring: the network uploaded inside ``start()``, which blocks holding the GIL
with no frame; the helper's imports, its stdout notice, its progress child), answers with fixed
class scores once the network runs, and a stand-in ``imx500-package`` (a shell script on PATH)
makes the ``.rpk``. The sensor's scores must come out through the same results as any camera's.
Marked ``edge``: ``make pi-check`` runs them on the emulated Raspberry Pi OS too. Uploads here
last 2 s against a 1 s watchdog, so that one goes unfed if nothing but frames fed it.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import pty
import re
import shutil
import signal
import socket
import stat
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.classifier import FrameClassifier
from edge_runtime.commands.classify import main
from edge_runtime.errors import ModelError
from edge_runtime.manifest import InputSpec, Manifest, Variant
from edge_runtime.sensor_classifier import SensorClassifier
from edge_runtime.sources.ai_camera import network_file, sensor_camera

pytestmark = pytest.mark.edge

FAKE = Path(__file__).resolve().parent / "fake_picamera2"
LABELS = ["cat", "dog", "owl"]
AI_CAMERA = [{"Model": "imx500", "Location": 2, "Rotation": 0, "Num": 0,
              "Id": "/base/axi/pcie@120000/rp1/i2c@88000/imx500@1a"}]
MODULE = [{"Model": "imx708_wide", "Location": 2, "Rotation": 0, "Num": 0,
           "Id": "/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a"}]


WATCHDOG_S = 1.0
"""systemd's watchdog period in the tests that time it (``WATCHDOG_USEC``)."""
UPLOAD_S = 2.0
"""How long those tests' uploads block ``start()``: longer than the watchdog period."""


def _forget_picamera2() -> None:
    """Drop the stand-in and its stand-in dependencies from ``sys.modules``."""
    for name, module in list(sys.modules.items()):
        if name == "picamera2" or name.startswith("picamera2.") or \
                str(getattr(module, "__file__", "") or "").startswith(str(FAKE)):
            del sys.modules[name]


@pytest.fixture()
def ai_camera(monkeypatch, tmp_path):
    """The stand-in Picamera2 with the AI Camera connected; its calls logged to a file. A
    progress child Picamera2 left running is ended afterwards (a test that fails on it must not
    leave the test run waiting at exit)."""
    for name in ("IMAGE", "FORMAT", "FAIL", "IMX500_SCORES", "IMX500_WAIT", "IMX500_UPLOAD_S",
                 "IMX500_PROGRESS"):
        monkeypatch.delenv(f"FAKE_PICAMERA2_{name}", raising=False)
    monkeypatch.setenv("FAKE_PICAMERA2_CAMERAS", json.dumps(AI_CAMERA))
    monkeypatch.setenv("FAKE_PICAMERA2_LOG", str(tmp_path / "camera.log"))
    monkeypatch.syspath_prepend(str(FAKE))
    _forget_picamera2()
    import picamera2

    picamera2.INSTANCES.clear()
    picamera2.NETWORKS.clear()
    picamera2.UPLOADED.clear()
    yield picamera2
    for child in multiprocessing.active_children():
        child.kill()
        child.join()
    _forget_picamera2()


@pytest.fixture()
def packager(monkeypatch, tmp_path) -> Path:
    """A stand-in ``imx500-package -i ZIP -o DIR`` on PATH, logging each run."""
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "imx500-package"
    script.write_text('#!/bin/sh\necho run >> "$(dirname "$0")/runs"\n'
                      'cp "$2" "$4/network.rpk"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return folder / "runs"


@pytest.fixture()
def sensor_bundle(tmp_path) -> Path:
    """A bundle with an imx500 variant (a stand-in packerOut.zip) and no .tflite."""
    bundle = tmp_path / "export"
    (bundle / "imx500").mkdir(parents=True)
    (bundle / "imx500" / "packerOut.zip").write_bytes(b"PK stand-in")
    variant = Variant(file="imx500/packerOut.zip", bytes=11, input_dtype="int8",
                      output_dtype="uint8", accuracy=0.9, agreement=0.95, max_abs_diff=0.1,
                      extra={"runs_on": "imx500"})
    Manifest(input=InputSpec(64, 64), labels=tuple(LABELS),
             variants={"imx500": variant}).save(bundle)
    return bundle


@pytest.fixture()
def notified(monkeypatch, tmp_path) -> Iterator[Callable[[], list[tuple[float, str]]]]:
    """A socket at ``NOTIFY_SOCKET``, as systemd gives a ``Type=notify`` service, read at once by
    a process of its own, as systemd reads it (this one's threads stop while the stand-in's
    start() holds the GIL, and the socket queues only ``net.unix.max_dgram_qlen`` messages, often
    10). The function yielded returns what came so far, in order: (when it came, message)."""
    address, record = tmp_path / "notify", tmp_path / "notified.jsonl"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(address))
    reader = os.fork()
    if reader == 0:  # the reader: until killed
        try:
            with open(record, "a", encoding="utf-8") as out:
                while True:
                    data = listener.recv(1024)
                    out.write(json.dumps([time.monotonic(), data.decode()]) + "\n")
                    out.flush()
        finally:
            os._exit(0)
    listener.close()
    monkeypatch.setenv("NOTIFY_SOCKET", str(address))
    marker = "TEST-DRAINED"

    def received() -> list[tuple[float, str]]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            sender.sendto(marker.encode(), str(address))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            lines = [json.loads(line) for line in record.read_text().splitlines()] \
                if record.exists() else []
            if lines and lines[-1][1] == marker:
                return [(sent, message) for sent, message in lines if message != marker]
            time.sleep(0.01)
        raise AssertionError("the notify socket's reader did not answer")

    try:
        yield received
    finally:
        os.kill(reader, signal.SIGKILL)
        os.waitpid(reader, 0)


def _messages(received: list[tuple[float, str]]) -> list[str]:
    return [message for _, message in received]


def _upload_free(received: list[tuple[float, str]]) -> list[str]:
    """The messages but those about the AI Camera's upload (its watch's, and the status
    cleared after it)."""
    return [m for m in _messages(received) if "EXTEND_TIMEOUT_USEC=" not in m and m != "STATUS="]


def _feeds(received: list[tuple[float, str]]) -> list[float]:
    """When the watchdog was fed."""
    return [sent for sent, message in received if "WATCHDOG=1" in message.split("\n")]


def _json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def test_the_sensor_s_scores_come_out_as_any_camera_s_results(ai_camera, packager,
                                                              sensor_bundle, capfd, tmp_path):
    code = main(["--model", str(sensor_bundle / "imx500" / "packerOut.zip"), "--camera",
                 "imx500", "--camera-size", "96x64", "--headless", "--json", "--max-frames",
                 "3", "--top-k", "2"])
    out, err = capfd.readouterr()
    lines = _json_lines(out)
    assert code == 0, err
    assert len(lines) == 4 and lines[-1]["summary"]["frames"] == 3
    assert lines[0]["source"].startswith("imx500#")
    assert [p["label"] for p in lines[0]["top_k"]] == ["dog", "owl"]
    assert lines[0]["top_k"][0]["score"] == pytest.approx(0.7)
    assert lines[0]["latency_ms"] == pytest.approx(4.2)  # the sensor's own inference time
    log = (tmp_path / "camera.log").read_text().split()
    assert log[:4] == ["imx500:network.rpk", "init", "configure", "start"]
    assert log[-2:] == ["stop", "close"]
    assert "fw_progress" not in log  # Picamera2's progress child is not started: ours shows it
    assert (sensor_bundle / "imx500" / "network.rpk").is_file()


def test_threshold_and_summary_apply_to_the_sensor_too(ai_camera, packager, sensor_bundle,
                                                        capfd, monkeypatch):
    monkeypatch.setenv("FAKE_PICAMERA2_IMX500_SCORES", "[0.05, 0.35, 0.6]")
    code = main(["--model", str(sensor_bundle / "imx500" / "packerOut.zip"), "--camera",
                 "imx500", "--headless", "--json", "--max-frames", "2", "--threshold", "0.5"])
    lines = _json_lines(capfd.readouterr().out)
    assert code == 0
    assert [[p["label"] for p in line["top_k"]] for line in lines[:-1]] == [["owl"], ["owl"]]


def test_a_model_switched_underneath_opens_the_ai_camera_again_with_its_network(
        ai_camera, packager, sensor_bundle, notified, capfd, tmp_path, monkeypatch):
    """edge-model activate switches the link a service's --model goes through: the sensor's
    network is uploaded as the camera opens, so the camera opens again with the new one (to
    systemd, a reload)."""
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    versions = tmp_path / "versions"
    shutil.copytree(sensor_bundle, versions / "one")
    shutil.copytree(sensor_bundle, versions / "two")
    manifest = json.loads((versions / "two" / "manifest.json").read_text())
    manifest["labels"] = ["ant", "bee", "cow"]
    (versions / "two" / "manifest.json").write_text(json.dumps(manifest))
    current = tmp_path / "current"
    current.symlink_to(versions / "one")

    done = threading.Event()

    def activate_two() -> None:  # once the sensor answers, as edge-model does it: a new link
        while not done.is_set():  # renamed over the old one
            if any(n.frames > 5 for n in ai_camera.NETWORKS.values()):
                (tmp_path / ".current").symlink_to(versions / "two")
                os.replace(tmp_path / ".current", current)
                return
            time.sleep(0.005)

    switcher = threading.Thread(target=activate_two)
    switcher.start()
    try:  # the link is looked at every second: the first run lasts longer than that
        code = main(["--model", str(current / "imx500" / "packerOut.zip"), "--camera",
                     "imx500", "--headless", "--json", "--max-frames", "1000"])
    finally:
        done.set()
        switcher.join()
    out, err = capfd.readouterr()
    assert code == 0, err
    firsts = [line["top_k"][0]["label"] for line in _json_lines(out) if "top_k" in line]
    switched_at = firsts.index("bee")  # the same scores, the new model's labels
    assert set(firsts[:switched_at]) == {"dog"} and set(firsts[switched_at:]) == {"bee"}
    assert len(firsts) - switched_at == 1000  # the new run's own --max-frames
    assert "the model changed" in err and "Traceback" not in err
    uploads = [c for c in (tmp_path / "camera.log").read_text().split() if c.startswith("imx500:")]
    assert len(uploads) == 2  # the network uploaded again as the camera opened again
    assert (versions / "two" / "imx500" / "network.rpk").is_file()
    assert _upload_free(notified()) == ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]


def test_the_sensor_s_classifier_is_a_frame_classifier_that_needs_the_ai_camera(sensor_bundle):
    packed = sensor_bundle / "imx500" / "packerOut.zip"
    classifier = SensorClassifier(packed)  # the manifest one folder up gives the labels
    assert isinstance(classifier, FrameClassifier)
    assert classifier.labels == LABELS and classifier.camera == f"imx500:{packed}"


def test_the_rpk_is_packaged_once_and_kept_beside_the_zip(packager, sensor_bundle):
    packed = sensor_bundle / "imx500" / "packerOut.zip"
    assert network_file(packed) == packed.with_name("network.rpk")
    assert network_file(packed) == packed.with_name("network.rpk")
    assert packager.read_text().split() == ["run"]  # the second time: the cached one


def test_no_packager_says_what_to_install(sensor_bundle, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    with pytest.raises(ModelError, match="sudo apt install imx500-all imx500-tools"):
        network_file(sensor_bundle / "imx500" / "packerOut.zip")


def test_auto_picks_the_ai_camera_when_the_bundle_has_its_network(ai_camera, sensor_bundle,
                                                                  monkeypatch):
    tflite = str(sensor_bundle / "model_int8.tflite")
    packed = sensor_bundle / "imx500" / "packerOut.zip"
    assert sensor_camera(tflite, None) == f"imx500:{packed}"
    assert sensor_camera(tflite, "auto") == f"imx500:{packed}"
    assert sensor_camera(tflite, "picam:0") is None  # asked for the plain camera
    monkeypatch.setenv("FAKE_PICAMERA2_CAMERAS", json.dumps(MODULE))
    assert sensor_camera(tflite, None) is None  # no AI Camera connected


def test_camera_imx500_without_a_sensor_network_is_one_line_exit_2(ai_camera, tmp_path, capfd):
    code = main(["--model", str(tmp_path / "model_int8.tflite"), "--camera", "imx500",
                 "--headless"])
    err = capfd.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--formats ...,imx500" in err


def test_no_ai_camera_connected_is_one_line_exit_2(ai_camera, packager, sensor_bundle, capfd,
                                                   monkeypatch):
    monkeypatch.setenv("FAKE_PICAMERA2_CAMERAS", json.dumps(MODULE))
    code = main(["--model", str(sensor_bundle / "imx500" / "packerOut.zip"), "--camera",
                 "imx500", "--headless"])
    lines = capfd.readouterr().err.strip().splitlines()
    assert code == 2 and "Traceback" not in "".join(lines)
    assert "packaging" in lines[0] and len(lines) == 2  # a note, then the one-line error
    assert "cannot open the AI Camera" in lines[1]


def test_list_cameras_names_the_ai_camera(ai_camera, capfd):
    assert main(["--list-cameras"]) == 0
    out = capfd.readouterr().out
    assert "--camera imx500" in out and "AI Camera" in out


def test_the_device_bench_times_the_sensor_beside_the_cpu_variants(ai_camera, packager,
                                                                   sensor_bundle):
    from benchmarks.sensor import sensor_bench, sensor_line

    manifest = Manifest.load(sensor_bundle)
    row = sensor_bench(sensor_bundle, manifest, frames=5, size=(96, 64))
    assert row["model"] == "imx500" and row["frames"] == 5
    assert row["dnn_ms_p50"] == pytest.approx(4.2) and row["fps"] > 0
    assert row["cpu_ms_per_frame"] >= 0
    line = sensor_line(row, {"int8": 12.5})
    assert "answers/s" in line and "int8 12.5 ms" in line
    assert ai_camera.INSTANCES[-1].calls[-2:] == ["stop", "close"]


def test_the_device_bench_without_the_ai_camera_says_why(ai_camera, sensor_bundle, monkeypatch):
    from benchmarks.sensor import sensor_bench

    monkeypatch.setenv("FAKE_PICAMERA2_CAMERAS", json.dumps(MODULE))
    row = sensor_bench(sensor_bundle, Manifest.load(sensor_bundle), frames=5)
    assert row == {"model": "imx500", "skipped": "no AI Camera connected (Picamera2 lists none)"}


def test_frames_before_the_sensor_s_first_answer_feed_the_watchdog(ai_camera, packager,
                                                                   sensor_bundle, notified,
                                                                   capfd, monkeypatch):
    """The first frames after the camera's start come without the sensor's answer: each one
    feeds the watchdog, READY=1 waits for the first classified one."""
    monkeypatch.setenv("WATCHDOG_USEC", "1")  # every frame feeds it
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.setenv("FAKE_PICAMERA2_IMX500_WAIT", "5")
    code = main(["--model", str(sensor_bundle / "imx500" / "packerOut.zip"), "--camera",
                 "imx500", "--headless", "--json", "--max-frames", "3"])
    _, err = capfd.readouterr()
    assert code == 0, err
    assert _upload_free(notified()) == (["WATCHDOG=1"] * 5 + ["READY=1"] + ["WATCHDOG=1"] * 3
                                        + ["STOPPING=1"])


def _second_version(sensor_bundle: Path, versions: Path) -> None:
    """Versions ``one`` and ``two`` of the bundle, with networks of other bytes (the camera
    uploads ``two``'s: it has not had it) and other labels."""
    shutil.copytree(sensor_bundle, versions / "one")
    shutil.copytree(sensor_bundle, versions / "two")
    (versions / "two" / "imx500" / "packerOut.zip").write_bytes(b"PK stand-in, retrained")
    manifest = json.loads((versions / "two" / "manifest.json").read_text())
    manifest["labels"] = ["ant", "bee", "cow"]
    (versions / "two" / "manifest.json").write_text(json.dumps(manifest))


def test_a_run_survives_multi_second_uploads_at_start_and_after_a_switch(
        ai_camera, packager, sensor_bundle, notified, capfd, tmp_path, monkeypatch):
    """start() blocks through each upload, the GIL held, no frame: a child process tells systemd
    (WATCHDOG=1, EXTEND_TIMEOUT_USEC= past TimeoutStartSec= and a reload's timeout, STATUS= with
    the progress) from the first start's first message to the end, the watchdog never unfed for
    its period; the same after a switch to a network the camera has not had."""
    monkeypatch.setenv("WATCHDOG_USEC", str(int(WATCHDOG_S * 1e6)))
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.setenv("FAKE_PICAMERA2_IMX500_UPLOAD_S", str(UPLOAD_S))
    monkeypatch.setenv("FAKE_PICAMERA2_IMX500_PROGRESS", "direct")
    versions = tmp_path / "versions"
    _second_version(sensor_bundle, versions)
    current = tmp_path / "current"
    current.symlink_to(versions / "one")
    done = threading.Event()

    def activate_two() -> None:  # once the sensor answers, as edge-model does it
        while not done.is_set():
            if any(n.frames > 5 for n in ai_camera.NETWORKS.values()):
                (tmp_path / ".current").symlink_to(versions / "two")
                os.replace(tmp_path / ".current", current)
                return
            time.sleep(0.005)

    switcher = threading.Thread(target=activate_two)
    switcher.start()
    try:  # the link is looked at every second: the first run lasts longer than that
        code = main(["--model", str(current / "imx500" / "packerOut.zip"), "--camera",
                     "imx500", "--headless", "--json", "--max-frames", "600"])
    finally:
        done.set()
        switcher.join()
    _, err = capfd.readouterr()
    assert code == 0, err
    received = notified()
    messages = _messages(received)
    assert [m for m in messages if m in ("READY=1", "RELOADING=1", "STOPPING=1")] == \
        ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]
    uploads = [(sent, m) for sent, m in received if "EXTEND_TIMEOUT_USEC=" in m]
    assert messages[0] == uploads[0][1]  # from the first start's first moment
    reload_at = received[messages.index("RELOADING=1")][0]
    first, second = ([u for u in uploads if u[0] < reload_at],
                     [u for u in uploads if u[0] > reload_at])
    for upload in (first, second):  # a message every quarter period, for the whole upload
        assert upload[-1][0] - upload[0][0] >= UPLOAD_S - WATCHDOG_S / 2
        assert len(upload) >= UPLOAD_S / (WATCHDOG_S / 4) - 2
    for _, message in uploads:
        fields = dict(line.split("=", 1) for line in message.splitlines())
        assert "WATCHDOG" in fields and int(fields["EXTEND_TIMEOUT_USEC"]) >= 10 * WATCHDOG_S * 1e6
    percents = [int(m.split("(")[1].split(" %")[0]) for _, m in second if " %)" in m]
    assert percents == sorted(percents) and percents[-1] >= 50  # the driver's progress, read
    feeds = _feeds(received)
    gaps = [b - a for a, b in zip(feeds, feeds[1:])]
    assert max(gaps) < WATCHDOG_S, f"the watchdog went unfed for {max(gaps):.2f} s"


def test_past_upload_wait_systemd_is_no_longer_told_the_run_is_alive(
        ai_camera, packager, sensor_bundle, notified, capfd, monkeypatch):
    """An upload that goes on past --upload-wait: the watch says so and stops telling systemd,
    for its watchdog to restart the service (here the upload ends after all)."""
    monkeypatch.setenv("WATCHDOG_USEC", str(int(WATCHDOG_S * 1e6)))
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.setenv("FAKE_PICAMERA2_IMX500_UPLOAD_S", str(UPLOAD_S))
    code = main(["--model", str(sensor_bundle / "imx500" / "packerOut.zip"), "--camera",
                 "imx500", "--headless", "--json", "--max-frames", "2", "--upload-wait", "0.5"])
    _, err = capfd.readouterr()
    assert code == 0, err
    received = notified()
    uploads = [sent for sent, m in received if "EXTEND_TIMEOUT_USEC=" in m]
    assert uploads[-1] - uploads[0] <= 0.5 + WATCHDOG_S / 4 + 0.1  # none after the bound
    feeds = _feeds(received)
    assert max(b - a for a, b in zip(feeds, feeds[1:])) > UPLOAD_S - 0.5 - WATCHDOG_S / 4
    assert "--upload-wait 0.5" in err and "no longer telling systemd" in err
    assert "longer than --upload-wait" in err


def test_on_a_terminal_the_upload_s_progress_is_shown(ai_camera, packager, sensor_bundle,
                                                     monkeypatch):
    """Run on a terminal: the upload's progress (the driver's, where Picamera2 can read it) is
    shown on stderr, one line updated in place, while start() blocks."""
    monkeypatch.setenv("FAKE_PICAMERA2_IMX500_UPLOAD_S", "1.5")
    monkeypatch.setenv("FAKE_PICAMERA2_IMX500_PROGRESS", "direct")
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    master, terminal = pty.openpty()
    saved = os.dup(2)
    os.dup2(terminal, 2)
    stderr = os.fdopen(os.dup(2), "w", encoding="utf-8")
    monkeypatch.setattr(sys, "stderr", stderr)
    try:
        code = main(["--model", str(sensor_bundle / "imx500" / "packerOut.zip"), "--camera",
                     "imx500", "--headless", "--json", "--max-frames", "1"])
    finally:
        stderr.close()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(terminal)
    os.set_blocking(master, False)
    shown = b""
    with contextlib.suppress(BlockingIOError, OSError):
        while chunk := os.read(master, 4096):
            shown += chunk
    os.close(master)
    assert code == 0, shown
    assert re.search(rb"\ruploading the network to the AI Camera \([1-9][0-9]* %\)", shown), shown


def test_picamera2_s_stdout_notice_stays_out_of_the_json(ai_camera, packager, sensor_bundle,
                                                         capfd):
    """IMX500() print()s "progress bar is not available" (picamera2 0.3.35 and later, where
    debugfs is root's): stdout holds the JSON lines only; with --verbose the notice is on
    stderr."""
    code = main(["--model", str(sensor_bundle / "imx500" / "packerOut.zip"), "--camera",
                 "imx500", "--headless", "--json", "--max-frames", "2", "--verbose"])
    out, err = capfd.readouterr()
    assert code == 0, err
    assert [sorted(line) for line in _json_lines(out)][-1] == ["summary"]
    assert "IMX500 firmware update progress bar is not available" in err


def test_a_failed_start_leaves_no_child_to_wait_for(ai_camera, packager, sensor_bundle, capfd,
                                                    monkeypatch):
    """start() fails where the upload's progress is readable: one line, exit 2, and no child
    process left running (Picamera2's progress child is a non-daemon one that loops until the
    upload passes 95 %: Python's exit would wait for it forever)."""
    monkeypatch.setenv("FAKE_PICAMERA2_IMX500_PROGRESS", "direct")
    monkeypatch.setenv("FAKE_PICAMERA2_FAIL", "start")
    code = main(["--model", str(sensor_bundle / "imx500" / "packerOut.zip"), "--camera",
                 "imx500", "--headless", "--json"])
    err = capfd.readouterr().err
    assert code == 2 and "cannot start the AI Camera" in err.strip().splitlines()[-1]
    assert multiprocessing.active_children() == []
    with pytest.raises(ChildProcessError):  # the upload's watch is gone too
        os.waitpid(-1, os.WNOHANG)


def test_no_permission_on_debugfs_says_so_and_what_to_do(ai_camera, packager, sensor_bundle,
                                                         capfd, monkeypatch):
    """picamera2 before 0.3.35 opens the upload's progress files in /sys/kernel/debug in
    IMX500(): a user who may not read them gets PermissionError, not a camera that is not
    connected."""
    monkeypatch.setenv("FAKE_PICAMERA2_IMX500_PROGRESS", "denied")
    code = main(["--model", str(sensor_bundle / "imx500" / "packerOut.zip"), "--camera",
                 "imx500", "--headless"])
    line = capfd.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "permission denied" in line and "/sys/kernel/debug/" in line
    assert "0.3.35" in line and "--only-upgrade python3-picamera2" in line
    assert "is it connected" not in line


@pytest.mark.parametrize("module, package", [("Imath", "python3-openexr"),
                                             ("libarchive", "python3-libarchive-c")])
def test_a_module_the_imx500_helper_lacks_is_named_with_its_apt_package(
        ai_camera, packager, sensor_bundle, capfd, monkeypatch, module, package):
    """picamera2's IMX500 helper imports Imath and OpenEXR (python3-openexr, missing from
    Trixie's python3-picamera2 0.3.32: picamera2 #1345), libarchive and more at import time."""
    monkeypatch.setitem(sys.modules, module, None)  # import fails: ModuleNotFoundError
    code = main(["--model", str(sensor_bundle / "imx500" / "packerOut.zip"), "--camera",
                 "imx500", "--headless"])
    line = capfd.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and f"module {module}," in line and f"sudo apt install {package}" in line


def _rpk(intrinsics: dict) -> bytes:
    """A ``.rpk`` as imx500-package lays it out: a firmware block ('9464' … '3695'), then a CPIO
    ("newc") archive holding ``network_intrinsics``."""
    block = b"9464" + struct.pack(">I", 16) + bytes(16 + 52) + b"3695"
    data = json.dumps(intrinsics).encode()
    archive = b""
    for name, body in (("network_intrinsics", data), ("TRAILER!!!", b"")):
        header = b"070701" + b"".join(b"%08X" % v for v in (
            0, 0o100644, 0, 0, 1, 0, len(body), 0, 0, 0, 0, len(name) + 1, 0))
        entry = header + name.encode() + b"\0"
        entry += bytes(-len(entry) % 4) + body
        archive += entry + bytes(-len(entry) % 4)
    return block + archive


def test_a_network_that_outputs_logits_gets_softmax(ai_camera, capfd, tmp_path, monkeypatch):
    """A third-party .rpk whose intrinsics say softmax (its output is logits): its scores are
    probabilities, as Picamera2's classification demo makes them."""
    rpk = tmp_path / "logits.rpk"
    rpk.write_bytes(_rpk({"task": "classification", "cpu": {"softmax": True}}))
    (tmp_path / "labels.txt").write_text("\n".join(LABELS) + "\n")
    monkeypatch.setenv("FAKE_PICAMERA2_IMX500_SCORES", "[1.0, 3.0, 0.5]")
    code = main(["--model", str(rpk), "--labels", str(tmp_path / "labels.txt"), "--camera",
                 "imx500", "--headless", "--json", "--max-frames", "1"])
    out, err = capfd.readouterr()
    assert code == 0, err
    top = _json_lines(out)[0]["top_k"]
    expected = np.exp([1.0, 3.0, 0.5]) / np.exp([1.0, 3.0, 0.5]).sum()
    assert [p["label"] for p in top] == ["dog", "cat", "owl"]
    assert [p["score"] for p in top] == pytest.approx(sorted(expected, reverse=True), abs=1e-4)
    assert "logits" in err
