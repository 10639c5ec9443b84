"""``--camera imx500``: the Raspberry Pi AI Camera through the stand-in Picamera2's IMX500 device.

No camera and no Sony tools: ``tests/fake_picamera2`` answers with fixed class scores once a
network is "uploaded", and a stand-in ``imx500-package`` (a shell script on PATH) makes the
``.rpk``. The sensor's scores must come out through the same results as any camera's.
Marked ``edge``: ``make pi-check`` runs them on the emulated Raspberry Pi OS too, with its apt
package of the stand-in.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

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


def _forget_picamera2() -> None:
    for name in [n for n in sys.modules if n == "picamera2" or n.startswith("picamera2.")]:
        del sys.modules[name]


@pytest.fixture()
def ai_camera(monkeypatch, tmp_path):
    """The stand-in Picamera2 with the AI Camera connected; its calls logged to a file."""
    for name in ("IMAGE", "FORMAT", "FAIL", "IMX500_SCORES", "IMX500_WAIT"):
        monkeypatch.delenv(f"FAKE_PICAMERA2_{name}", raising=False)
    monkeypatch.setenv("FAKE_PICAMERA2_CAMERAS", json.dumps(AI_CAMERA))
    monkeypatch.setenv("FAKE_PICAMERA2_LOG", str(tmp_path / "camera.log"))
    monkeypatch.syspath_prepend(str(FAKE))
    _forget_picamera2()
    import picamera2

    picamera2.INSTANCES.clear()
    picamera2.NETWORKS.clear()
    yield picamera2
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
def notified(monkeypatch, tmp_path) -> Iterator[Callable[[], list[str]]]:
    """A socket at ``NOTIFY_SOCKET``, as systemd gives a ``Type=notify`` service; the function
    yielded returns what was sent to it so far, in order."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify"))
    listener.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))

    def received() -> list[str]:
        states = []
        while True:
            try:
                states.append(listener.recv(256).decode())
            except BlockingIOError:
                return states

    with listener:
        yield received


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
    assert log[:2] == ["init", "imx500:network.rpk"] or "imx500:network.rpk" in log
    assert "fw_progress" in log and log[-2:] == ["stop", "close"]
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
    assert notified() == ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]


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


def test_the_watchdog_is_fed_while_the_sensor_loads_its_network(ai_camera, packager,
                                                                sensor_bundle, notified, capfd,
                                                                monkeypatch):
    """The upload takes tens of seconds, again after each model switch, while systemd's
    watchdog already runs (WatchdogSec=30): the frames that come without an answer feed it,
    READY=1 waits for the first classified one."""
    monkeypatch.setenv("WATCHDOG_USEC", "1")  # every frame feeds it
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.setenv("FAKE_PICAMERA2_IMX500_WAIT", "5")
    code = main(["--model", str(sensor_bundle / "imx500" / "packerOut.zip"), "--camera",
                 "imx500", "--headless", "--json", "--max-frames", "3"])
    _, err = capfd.readouterr()
    assert code == 0, err
    assert notified() == ["WATCHDOG=1"] * 5 + ["READY=1"] + ["WATCHDOG=1"] * 3 + ["STOPPING=1"]
