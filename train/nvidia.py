"""The NVIDIA GPUs the driver lists, and why TensorFlow cannot see them: TensorFlow-free.

A workstation's ``pip install tensorflow`` runs on the CPU however good its card is, unless
CUDA's libraries came with it (``tensorflow[and-cuda]``: this package's ``gpu`` extra).
``edge-train`` asks :func:`unseen_gpu_hint` when TensorFlow lists no GPU, so such a machine
says so in one line instead of training on the CPU silently; ``make gpu-check`` asks
:func:`nvidia_gpus` before it installs anything.

    python -m train.nvidia    # the GPUs the driver lists; exit 1 when there is none
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

PROC_GPUS = Path("/proc/driver/nvidia/gpus")
"""One folder per GPU (its PCI address) while the NVIDIA kernel driver is loaded, each with an
``information`` file whose ``Model:`` line names the card."""
NVIDIA_SMI_TIMEOUT_S = 10
"""A wedged driver can hang ``nvidia-smi``: past this, the GPUs are read from /proc."""
GPU_EXTRA_HINT = "pip install 'edge-toolchain[gpu]' (in a clone: make demo GPU=1)"
"""How to get TensorFlow with CUDA's libraries (pyproject.toml's ``gpu`` extra)."""
CUDA_LIBRARY = "nvidia.cudnn"
"""A module that ``tensorflow[and-cuda]`` installs (the ``nvidia-cudnn-cu12`` wheel): present,
TensorFlow has CUDA's libraries at hand."""


def nvidia_gpus(proc: Path | None = None) -> list[str]:
    """The NVIDIA GPUs of this machine as ``"GPU 0: NVIDIA GeForce RTX 4090"``: from
    ``nvidia-smi -L`` (found on PATH), else from the driver's folders under ``proc`` (default
    :data:`PROC_GPUS`); empty when neither answers (no NVIDIA driver, or no card)."""
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                 timeout=NVIDIA_SMI_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        listing = None
    if listing is not None and listing.returncode == 0:
        # "GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-…)"; MIG slices are indented lines
        found = [m.group(1) for m in re.finditer(r"^(GPU \d+: .+?)(?: \(UUID: [^)]*\))?\s*$",
                                                 listing.stdout, re.MULTILINE)]
        if found:
            return found
    try:
        folders = sorted(p for p in (proc or PROC_GPUS).iterdir() if p.is_dir())
    except OSError:
        return []
    return [f"GPU {index}: {_proc_model(folder)}" for index, folder in enumerate(folders)]


def _proc_model(folder: Path) -> str:
    try:
        text = (folder / "information").read_text(errors="replace")
    except OSError:
        return f"NVIDIA GPU at {folder.name}"
    match = re.search(r"^Model:\s*(.+?)\s*$", text, re.MULTILINE)
    return match.group(1) if match else f"NVIDIA GPU at {folder.name}"


def gpus_hidden(environ=os.environ) -> bool:
    """Whether ``CUDA_VISIBLE_DEVICES`` hides every GPU on purpose (``""`` or ``-1``)."""
    value = environ.get("CUDA_VISIBLE_DEVICES")
    return value is not None and value.strip() in ("", "-1")


def cuda_libraries_installed() -> bool:
    """Whether CUDA's pip-installed libraries (``tensorflow[and-cuda]``) are importable."""
    try:
        return importlib.util.find_spec(CUDA_LIBRARY) is not None
    except (ImportError, ValueError):
        return False


def unseen_gpu_hint(gpus: list[str], tf_version: str, build: dict,
                    cuda_libraries: bool) -> str:
    """The one line that says why TensorFlow sees none of ``gpus`` and what to do.

    Args:
        gpus: what :func:`nvidia_gpus` found (not empty).
        tf_version: ``tf.__version__``.
        build: ``tf.sysconfig.get_build_info()`` (``is_cuda_build``, ``cuda_version``,
            ``cudnn_version``).
        cuda_libraries: :func:`cuda_libraries_installed`.
    """
    cards = "; ".join(gpus)
    seen = f"this machine has an NVIDIA GPU ({cards}) that TensorFlow {tf_version} cannot see"
    if not build.get("is_cuda_build"):
        return (f"{seen}: this TensorFlow is built without CUDA; on Linux x86_64 "
                f"{GPU_EXTRA_HINT}; training on the CPU")
    if not cuda_libraries:
        return f"{seen}: CUDA's libraries are not installed: {GPU_EXTRA_HINT}; training on the CPU"
    cuda, cudnn = build.get("cuda_version", "?"), build.get("cudnn_version", "?")
    return (f"{seen} although CUDA's libraries are installed: it was built for CUDA {cuda} and "
            f"cuDNN {cudnn}, which need a driver that supports CUDA {cuda} (nvidia-smi's header "
            "names the CUDA version the driver supports: update the driver if it is older; "
            "TF_CPP_MIN_LOG_LEVEL=0 shows which library failed to load); training on the CPU")


def main() -> int:
    gpus = nvidia_gpus()
    print("\n".join(gpus) if gpus else "no NVIDIA GPU (nvidia-smi -L lists none, and "
          f"{PROC_GPUS} does not exist)")
    return 0 if gpus else 1


if __name__ == "__main__":
    sys.exit(main())
