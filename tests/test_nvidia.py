"""A workstation whose NVIDIA GPU TensorFlow cannot see says so, in one line, with the fix:
simulated with a fake ``nvidia-smi`` on PATH (this machine has no GPU, so TensorFlow lists none)."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from train import nvidia

REPO = Path(__file__).resolve().parents[1]
CARD = "NVIDIA GeForce RTX 4090"
CUDA_BUILD = {"is_cuda_build": True, "cuda_version": "12.5.1", "cudnn_version": "9"}


def fake_nvidia_smi(folder: Path, stdout: str, code: int = 0) -> Path:
    """An ``nvidia-smi`` in ``folder`` that prints ``stdout`` and exits with ``code``."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{stdout}\nEOF\nexit {code}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return folder


@pytest.fixture
def gpu_machine(tmp_path, monkeypatch) -> Path:
    """PATH leads to an ``nvidia-smi`` that lists one card (TensorFlow here sees none)."""
    bin_dir = fake_nvidia_smi(tmp_path / "bin", f"GPU 0: {CARD} (UUID: GPU-5e1f0c2a-1b2c)")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return bin_dir


def test_nvidia_smi_lists_the_cards(gpu_machine, tmp_path):
    assert nvidia.nvidia_gpus(proc=tmp_path / "none") == [f"GPU 0: {CARD}"]


def test_without_nvidia_smi_the_driver_folders_name_the_cards(tmp_path, monkeypatch):
    # nvidia-smi there but failing (a driver it cannot talk to), as on a broken install
    bin_dir = fake_nvidia_smi(tmp_path / "bin", "NVIDIA-SMI has failed because it couldn't "
                              "communicate with the NVIDIA driver.", code=9)
    monkeypatch.setenv("PATH", str(bin_dir))
    proc = tmp_path / "gpus"
    (proc / "0000:01:00.0").mkdir(parents=True)
    (proc / "0000:01:00.0" / "information").write_text(f"Model: \t\t {CARD}\nIRQ:   150\n")
    (proc / "0000:02:00.0").mkdir()  # no information file: named by its address
    assert nvidia.nvidia_gpus(proc=proc) == [f"GPU 0: {CARD}", "GPU 1: NVIDIA GPU at 0000:02:00.0"]


def test_a_machine_without_nvidia_has_no_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi at all
    assert nvidia.nvidia_gpus(proc=tmp_path / "none") == []


def test_the_hint_names_the_card_and_the_fix_for_each_cause():
    gpus = [f"GPU 0: {CARD}"]
    missing = nvidia.unseen_gpu_hint(gpus, "2.21.0", CUDA_BUILD, cuda_libraries=False)
    assert CARD in missing and "pip install 'edge-toolchain[gpu]'" in missing
    assert "make demo GPU=1" in missing and missing.endswith("training on the CPU")
    mismatch = nvidia.unseen_gpu_hint(gpus, "2.21.0", CUDA_BUILD, cuda_libraries=True)
    assert "CUDA 12.5.1" in mismatch and "driver" in mismatch and "pip install" not in mismatch
    cpu_only = nvidia.unseen_gpu_hint(gpus, "2.21.0", {"is_cuda_build": False}, False)
    assert "built without CUDA" in cpu_only and "edge-toolchain[gpu]" in cpu_only
    assert all("\n" not in line for line in (missing, mismatch, cpu_only))


@pytest.mark.parametrize("value, hidden", [("", True), ("-1", True), ("0", False), (None, False)])
def test_cuda_visible_devices_can_hide_the_gpus_on_purpose(value, hidden):
    environ = {} if value is None else {"CUDA_VISIBLE_DEVICES": value}
    assert nvidia.gpus_hidden(environ) is hidden


def test_edge_train_warns_when_tensorflow_cannot_see_the_gpu(gpu_machine, caplog):
    from train.accelerator import setup_device

    with caplog.at_level(logging.WARNING, logger="train.accelerator"):
        device = setup_device("none", mixed_precision=False)
    assert device.gpus == [] and device.training_on().startswith("training on the CPU (")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and CARD in warnings[0], warnings
    assert "edge-toolchain[gpu]" in warnings[0] or "driver" in warnings[0]


def test_no_warning_without_an_nvidia_gpu_or_when_hidden(gpu_machine, tmp_path, monkeypatch,
                                                          caplog):
    from train.accelerator import setup_device

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    with caplog.at_level(logging.WARNING, logger="train.accelerator"):
        setup_device("none", mixed_precision=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(nvidia, "PROC_GPUS", tmp_path / "none")
    monkeypatch.setenv("PATH", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="train.accelerator"):
        setup_device("none", mixed_precision=False)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_device_line_names_the_gpu_and_the_precision():
    from train.accelerator import DeviceSetup

    on_gpu = DeviceSetup(strategy=None, strategy_name="none", gpus=["/physical_device:GPU:0"],
                         mixed_precision=True, gpu_names=(f"GPU 0: {CARD}",))
    assert on_gpu.training_on() == f"training on GPU 0: {CARD}, mixed precision"
    two = DeviceSetup(strategy=None, strategy_name="mirrored", gpus=["a", "b"],
                      mixed_precision=False, gpu_names=("GPU 0: A", "GPU 1: B"))
    assert two.training_on() == "training on 2 GPUs (GPU 0: A; GPU 1: B)"
    cores = len(os.sched_getaffinity(0))
    on_cpu = DeviceSetup(strategy=None, strategy_name="none", gpus=[], mixed_precision=False)
    assert on_cpu.training_on() == f"training on the CPU ({cores} core{'s' * (cores != 1)})"


def test_gpu_check_skips_in_one_line_without_an_nvidia_gpu_before_tensorflow_starts(tmp_path):
    script = ("import sys; from pathlib import Path; from train import nvidia; "
              f"nvidia.PROC_GPUS = Path({str(tmp_path / 'none')!r}); "
              "from benchmarks.gpu_check import main; code = main([]); "
              "assert 'tensorflow' not in sys.modules; sys.exit(code)")
    env = {**os.environ, "PATH": str(tmp_path)}  # no nvidia-smi
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "gpu-check skipped: no GPU visible to TensorFlow: this machine has no NVIDIA GPU "
        f"(nvidia-smi -L lists none, no {tmp_path / 'none'})"]


def test_gpu_check_fails_when_tensorflow_cannot_see_the_nvidia_gpu(gpu_machine, capsys):
    from benchmarks.gpu_check import main

    assert main([]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("gpu-check: failed: this machine has")
    assert CARD in err and "training on the CPU" in err


def test_gpu_check_reports_images_per_second_after_the_first_epoch():
    from benchmarks.gpu_check import format_rates, phase_rates

    history = [{"phase": 1, "seconds": 30.0}, {"phase": 1, "seconds": 2.0},
               {"phase": 1, "seconds": 3.0}, {"phase": 2, "seconds": 8.0}]
    rows = phase_rates(history, images=1000)
    assert [(r["epochs"], r["images_per_second"]) for r in rows] == [(3, 400), (1, 125)]
    lines = format_rates("demo", rows, 1000)
    assert lines[0].endswith("400 images/s after the first")
    assert lines[1].endswith("125 images/s (tracing included)")
