"""make pi-check: rehearse the Raspberry Pi install on an emulated Raspberry Pi OS (arm64).

What a Pi owner does, under qemu-user emulation on this machine, in an arm64 Debian userland
made to look like Raspberry Pi OS Lite where it matters (scripts/pi_userland.py: debootstrap
minbase, no desktop library; Python and numpy from apt, a module apt built against that
numpy, Picamera2 as an apt package that imports it): the README's Pi install lines *as written*
(read from README.md, the block after the ``pi-install`` marker) in a folder holding only the
wheel built from this checkout (``make wheel``: a Pi needs no clone), then with the venv they make:

1. the venv weighs at most 200 MB (``du``), and what weighs what is printed,
2. the apt modules (Picamera2 and what it imports) still import: the venv kept apt's numpy,
3. ``--list-cameras`` lists the camera module, and ``--camera picam`` classifies its frames as the
   same picture read from a file (colour order checked: the picture with red and blue swapped
   scores differently),
4. a recording through ``--camera VIDEO --headless``, and the live view (``--serve``) fetched
   from this machine; without ``--headless`` where a display is named: one line, exit 2,
5. numpy upgraded by hand (Bookworm: numpy 2 over apt's 1.24): ``--list-cameras`` and
   ``--camera picam`` say what is wrong in one line, exit 2, no traceback,
6. the edge test subset (``pytest -m edge``) on a prebuilt tiny data set and bundle,
7. ``edge-classify`` on the tiny data set with fp32 and int8: one result per image, labels from
   the bundle, accuracy well above chance, top-1 equal to this machine's (int8: on 75 % of images,
   since ARM and x86 int8 kernels round differently),
8. ``edge-bench BUNDLE_DIR`` (the TensorFlow-free device bench) on a copy of the bundle.

Correctness only: emulated timings mean nothing.

Built once and cached outside the repository: the userland (``debootstrap``: bookworm ~5 min,
trixie ~15) and the tiny bundle (trained here with TensorFlow, about 1 min; rebuilt when train/,
export/ or edge_runtime/ change). Needs root, binfmt_misc and the Debian packages
qemu-user-static, debootstrap and binfmt-support (installed with apt-get when missing).

Environment:
    PI_CHECK_SUITE     bookworm (default; Raspberry Pi OS 12, Python 3.11, numpy 1.24) or trixie
                       (Raspberry Pi OS 13, Python 3.13, numpy 2.2)
    PI_CHECK_ROOT      the arm64 userland (default /var/cache/edge-toolchain/pi-SUITE-arm64)
    PI_CHECK_CACHE     the tiny bundle's cache (default /var/cache/edge-toolchain)
    PI_CHECK_MIRROR    Debian mirror for debootstrap (default: this machine's apt sources)
    PI_CHECK_REBUILD=1 build the userland again
    PI_CHECK_OPTIONAL=1  where this machine cannot emulate arm64, say why and exit 0 (CI)

Exit codes (common/errors.py): 0 every check passed; 1 a check failed; 2 bad usage (run from
the checkout with the dev venv's python) or this machine cannot rehearse (no root, binfmt_misc
or apt), unless PI_CHECK_OPTIONAL=1; 3 a bug in pi-check (one line, the traceback saved to a
file); 130 interrupted.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import NamedTuple

import pi_userland as userland
from pi_userland import REPO, CannotRehearse, Failed, Usage, in_guest, say

from common.argtypes import Parser, add_verbosity
from common.command import run_main
from common.command import say as print_error
from common.errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError
from common.labels import read_labels
from edge_runtime.eval_set import required_agreement

PROG = "pi-check"
CACHE = Path(os.environ.get("PI_CHECK_CACHE", "/var/cache/edge-toolchain"))
SUITE = os.environ.get("PI_CHECK_SUITE", "bookworm")
ROOT = Path(os.environ.get("PI_CHECK_ROOT", userland.default_root(SUITE, CACHE)))

# inside the userland, as the README has them: a clone of the repository and the venv ~/edge
SRC = Path("/root/edge-toolchain")
VENV = Path("/root/edge")
WORK = Path("/opt/pi-check/work")  # the tiny data set and bundle
PI_HOME = Path("/opt/pi-check/home")  # the wheel, copied as a Pi owner copies it: no checkout
VENV_PATH = f"{VENV}/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
INSTALL_MARKER = "<!-- pi-install"
"""In README.md: the fenced block after this marker is the Pi install that pi-check runs."""
CAMERA_SIZE = (640, 480)
"""edge-classify's default --camera-size: the picture the stand-in camera shows has this size,
so its frames are that picture's pixels exactly."""
VIDEO = WORK / "clip.avi"
VIDEO_FRAMES = 24
"""A recording of the test pictures (MJPG, 160x120), for --camera VIDEO and the live view."""
VENV_LIMIT_MB = 200
"""The most the README's venv may weigh on the SD card (MB of 10^6 bytes, as du counts)."""


def guest(args: list, **kwargs) -> subprocess.CompletedProcess:
    """Run ``args`` in the userland with the README's venv first on PATH."""
    return in_guest(ROOT, args, path=VENV_PATH, **kwargs)


# ----------------------------------------------------------------------------- the checkout

def checkout_files() -> list[str]:
    """The checkout's files as git sees them (tracked, and untracked ones not ignored)."""
    done = userland.run(["git", "-C", REPO, "ls-files", "-z", "--cached", "--others",
                         "--exclude-standard"], capture_output=True, check=False)
    if done.returncode != 0:
        raise Usage(f"not a git checkout: {REPO} ({done.stderr.strip()})")
    return [name for name in done.stdout.split("\0") if name and (REPO / name).is_file()]


def copy_checkout(root: Path) -> None:
    """This checkout into the userland, fresh each run: what ``git clone`` would give a Pi."""
    target = root / str(SRC).lstrip("/")
    shutil.rmtree(target, ignore_errors=True)
    for name in checkout_files():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target / name)


def copy_wheel(root: Path) -> Path:
    """The wheel of this checkout (what ``make wheel`` builds), built aside here and copied
    alone into the userland's :data:`PI_HOME`, where the README's install lines run."""
    target = root / str(PI_HOME).lstrip("/")
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="pi-check-wheel-") as built:
        done = userland.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                             "--wheel-dir", built, str(REPO)], capture_output=True, check=False)
        wheels = list(Path(built).glob("*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            raise Failed(f"building the wheel failed: {done.stderr[-800:]}")
        shutil.copy2(wheels[0], target / wheels[0].name)
    return target / wheels[0].name


def readme_install_lines(readme: Path = REPO / "README.md") -> str:
    """The shell lines of the README's Pi install (the fenced block after the marker)."""
    text = readme.read_text(encoding="utf-8")
    at = text.find(INSTALL_MARKER)
    block = re.search(r"^```(?:bash|sh)?\n(.*?)^```", text[at:], re.S | re.M) if at >= 0 else None
    if block is None:
        raise Usage(f"README.md has no fenced block after {INSTALL_MARKER!r}: nothing to rehearse")
    return block.group(1)


# ----------------------------------------------------------------------------- the tiny bundle

def tiny_bundle() -> Path:
    """The tiny data set and bundle (``tests.tiny_bundle``), built once per version of the code
    that makes them into ``$EDGE_TEST_CACHE`` (where CI's pytest sessions share it), else into
    this check's cache."""
    if subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True,
                      cwd=REPO).returncode != 0:
        raise Usage(f"{sys.executable} has no TensorFlow to train the tiny bundle: "
                    "run make pi-check (it uses .venv with the dev extra)")
    cache = os.environ.get("EDGE_TEST_CACHE") or str(CACHE)
    say(f"tiny bundle: from the cache {cache} (trained and exported first when missing: about "
        "two minutes)")
    started = time.monotonic()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = userland.run([sys.executable, "-m", "tests.tiny_bundle", "--cache", cache], cwd=REPO,
                        check=False, env=env)
    if done.returncode != 0:
        raise Failed(f"python -m tests.tiny_bundle failed (exit {done.returncode})")
    if str(REPO) not in sys.path:  # the checkout's tests/, which no install holds
        sys.path.append(str(REPO))
    from tests.tiny_bundle import cache_folder  # standard library only at import

    folder = cache_folder(Path(cache))
    say(f"tiny bundle: {folder}, ready in {time.monotonic() - started:.0f} s")
    return folder


def test_split(tiny: Path) -> list[tuple[str, str]]:
    """(path relative to the data set, class) of each image of the tiny run's test split."""
    splits = json.loads((tiny / "run" / "splits.json").read_text())
    return [(path, Path(path).parent.name) for path in sorted(splits["test"])]


def camera_pictures(tiny: Path, out: Path) -> list[Path]:
    """Each test image at the camera's size as PNG (``NAME.png``) and with red and blue
    swapped (``NAME-swapped.png``): what the stand-in camera will show."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    pictures = []
    for path, _ in test_split(tiny):
        with Image.open(tiny / "data" / path) as image:
            picture = image.convert("RGB").resize(CAMERA_SIZE)
        name = out / (Path(path).parent.name + "-" + Path(path).stem + ".png")
        picture.save(name)
        r, g, b = picture.split()
        Image.merge("RGB", (b, g, r)).save(name.with_name(name.stem + "-swapped.png"))
        pictures.append(name)
    return pictures


# ----------------------------------------------------------------------------- the install

class Installed(NamedTuple):
    """What the README's install lines did: their output, and what the venv they made weighs
    (bytes as du counts them: the whole venv, and each distribution in it, largest first)."""

    printed: str
    venv_bytes: int
    weights: list[tuple[str, int]]


def venv_weights(venv: Path) -> tuple[int, list[tuple[str, int]]]:
    """``du`` of ``venv`` in bytes, and each distribution's share: the disk blocks of the files
    its ``RECORD`` lists (pip records the bytecode it compiled too), largest first."""
    total = int(userland.run(["du", "-s", "--block-size=1", venv],
                             capture_output=True).stdout.split()[0])
    weights = []
    for record in venv.glob("lib/python3*/site-packages/*.dist-info/RECORD"):
        site = record.parent.parent
        used = 0
        with open(record, newline="", encoding="utf-8") as rows:
            for row in csv.reader(rows):
                try:
                    used += (site / row[0]).lstat().st_blocks * 512
                except (OSError, IndexError):
                    continue
        weights.append((record.parent.name.split("-")[0], used))
    return total, sorted(weights, key=lambda item: -item[1])


def install() -> Installed:
    """The README's Pi install lines, as written, in the clone (as a Pi owner runs them), then
    pytest into the same venv for the edge tests (after the venv was weighed)."""
    started = time.monotonic()
    userland.offer_picamera2(ROOT)
    # a Pi's first install finds no venv; a cached userland keeps the last run's, where pip
    # would leave an older install of the same version in place
    shutil.rmtree(ROOT / VENV.relative_to("/"), ignore_errors=True)
    lines = readme_install_lines()
    say("the README's Pi install, as written:\n" + "".join(f"    {x}\n" for x in lines.splitlines()))
    # apt and pip under emulation take minutes: their output is shown as it comes
    done = in_guest(ROOT, ["bash", "-e", "-o", "pipefail", "-c", lines], cwd=PI_HOME, stream=True)
    if done.returncode != 0:
        raise Failed(f"the README's Pi install lines failed in the userland (exit {done.returncode})")
    total, weights = venv_weights(ROOT / VENV.relative_to("/"))
    extra = guest(["python", "-m", "pip", "install", "--quiet", "pytest"])
    if extra.returncode != 0:
        raise Failed("pip install pytest failed in the userland")
    heavy = guest(["python", "-c", "import importlib.util as u; "
                                   "print([m for m in ('tensorflow', 'keras') if u.find_spec(m)])"],
                  capture=True)
    if heavy.stdout.strip() != "[]":
        raise Failed(f"the edge install pulled in {heavy.stdout.strip()}")
    say(f"installed in {time.monotonic() - started:.0f} s (no TensorFlow, no Keras)")
    return Installed(done.stdout, total, weights)


# ----------------------------------------------------------------------------- the checks

APT_MODULES = f"""
import json, numpy, {userland.ABI_MODULE}, picamera2
print(json.dumps({{"numpy": numpy.__version__, "from": numpy.__file__,
                  "picamera2": picamera2.__file__}}))
"""


def apt_numpy() -> str:
    """The version of apt's numpy in the userland (Debian's, with its epoch: ``1:1.24.2-1``)."""
    return in_guest(ROOT, ["dpkg-query", "-W", "-f", "${Version}", "python3-numpy"],
                    capture=True).stdout


def check_apt_modules(_: Path, __: Installed) -> str:
    """Picamera2 (apt) and the module it imports still import from the venv: the venv's numpy
    is one apt's modules were built for."""
    apt = apt_numpy()
    done = guest(["python", "-c", APT_MODULES], capture=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        raise Failed(f"import picamera2 fails in the README's venv (apt's numpy {apt}): {last}")
    found = json.loads(done.stdout)
    where = "apt's" if found["from"].startswith("/usr/lib/python3/") else "the venv's"
    return (f"picamera2 from {found['picamera2']} imports; numpy {found['numpy']} is {where} "
            f"(apt has {apt})")


def check_list_cameras(_: Path, installed: Installed) -> str:
    """The README's ``--list-cameras`` line listed the camera module."""
    listed = [line.strip() for line in installed.printed.splitlines()
              if "--camera picam:" in line]
    if not listed:
        raise Failed("edge-classify --list-cameras (the README's line) listed no camera module:\n"
                     + installed.printed[-800:])
    return f"lists {listed[0]!r}"


def classify_json(argv: list, root: Path | None, env: dict | None = None) -> list[dict]:
    """``edge-classify ARGV --json`` here (``root`` None) or in the userland; its result lines."""
    if root is None:
        done = userland.run([sys.executable, "-m", "edge_runtime.commands.classify", *argv,
                             "--json"], capture_output=True, check=False, cwd=REPO)
    else:
        done = guest(["edge-classify", *argv, "--json"], capture=True, env=env)
    where = "the userland" if root else "this machine"
    if done.returncode != 0 or done.stderr.strip():
        raise Failed(f"edge-classify {' '.join(map(str, argv))} in {where}: exit "
                     f"{done.returncode}: {done.stderr.strip()[-800:]}")
    return [json.loads(line) for line in done.stdout.splitlines()]


def scores(result: dict) -> dict[str, float]:
    return {p["label"]: p["score"] for p in result["top_k"]}


def check_picam(tiny: Path, _: Installed) -> str:
    """``--camera picam`` on the stand-in camera showing a test picture: its frames score as the
    same picture read from a file, and not as the picture with red and blue swapped (of the test
    pictures, the one whose swap changes the scores most, chosen on this machine)."""
    pictures = sorted(p for p in ROOT.joinpath(str(WORK).lstrip("/"), "camera").glob("*.png")
                      if not p.stem.endswith("-swapped"))
    model = tiny / "run" / "export" / "model_int8.tflite"
    here = classify_json(["--model", model, "--top-k", "5", *pictures,
                          *[p.with_name(p.stem + "-swapped.png") for p in pictures]], None)
    half = len(pictures)
    gaps = [max(abs(scores(a)[k] - scores(b).get(k, 0.0)) for k in scores(a))
            for a, b in zip(here[:half], here[half:])]
    best = max(range(half), key=gaps.__getitem__)
    if gaps[best] == 0:
        raise Failed("no test picture scores differently with red and blue swapped: the tiny "
                     "model cannot tell the colour order, so the check would prove nothing")
    picture = f"{WORK}/camera/{pictures[best].name}"
    swapped = picture.replace(".png", "-swapped.png")
    model = f"{WORK}/bundle/model_int8.tflite"
    files = classify_json(["--model", model, "--top-k", "5", picture, swapped], ROOT)
    frames = classify_json(["--model", model, "--top-k", "5", "--camera", "picam", "--headless",
                            "--max-frames", "3"], ROOT, env={"FAKE_PICAMERA2_IMAGE": picture})
    frames = [r for r in frames if "top_k" in r]
    if len(frames) != 3:
        raise Failed(f"--camera picam --max-frames 3 gave {len(frames)} results")
    direct, flipped = scores(files[0]), scores(files[1])
    for frame in frames:
        seen = scores(frame)
        if set(seen) != set(direct) or any(abs(seen[k] - direct[k]) > 1e-6 for k in seen):
            which = "the red/blue-swapped picture" if seen == flipped else "the picture"
            raise Failed(f"--camera picam scored {seen}, the file {direct}: the frames are not "
                         f"{which} read from a file")
    return (f"3 frames of {pictures[best].name} score as the file does "
            f"(top-1 {frames[0]['top_k'][0]['label']}); swapped, the scores move by "
            f"{gaps[best]:.3f}")


NUMPY_2 = Path("/root/edge-numpy2")
"""A second venv: the README's venv with numpy upgraded by hand."""


def check_numpy_by_hand(_: Path, __: Installed) -> str:
    """numpy upgraded by hand past apt's major version: the camera commands say what is wrong
    and how to fix it in one line (exit 2), with no traceback and no other camera instead."""
    apt = apt_numpy()
    if not apt.split(":")[-1].startswith("1."):
        raise userland.Skipped(f"apt's numpy is {apt}: a numpy 2 from pip is of the same major "
                               "version, nothing to break")
    site = guest(["python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                 capture=True).stdout.strip()
    for step in (["python3", "-m", "venv", "--system-site-packages", NUMPY_2],
                 [f"{NUMPY_2}/bin/pip", "install", "--quiet", "--no-deps", "numpy>=2"]):
        if guest(step, capture=True).returncode != 0:
            raise Failed(f"{' '.join(map(str, step))} failed in the userland")
    # the README's venv's packages after numpy 2: numpy 2 first, then edge_runtime and the rest
    pth = ROOT.joinpath(str(NUMPY_2).lstrip("/"), "lib")
    for lib in pth.glob("python3*/site-packages"):
        (lib / "zz-edge.pth").write_text(site + "\n")
    outcomes = []
    for argv in (["--list-cameras"],
                 ["--model", f"{WORK}/bundle/model_int8.tflite", "--camera", "picam",
                  "--headless", "--max-frames", "1"],
                 ["--model", f"{WORK}/bundle/model_int8.tflite", "--camera", "auto",
                  "--headless", "--max-frames", "1"]):
        done = guest([f"{NUMPY_2}/bin/python", "-m", "edge_runtime.commands.classify", *argv],
                     capture=True)
        lines = done.stderr.strip().splitlines()
        if done.returncode != 2 or len(lines) != 1 or "numpy" not in lines[0]:
            raise Failed(f"edge-classify {' '.join(argv)} with numpy 2 over apt's numpy 1: exit "
                         f"{done.returncode}, stderr {done.stderr.strip()[-600:]!r}, stdout "
                         f"{done.stdout.strip()[-300:]!r}: expected exit 2 and one line about "
                         "numpy")
        outcomes.append(argv[-1] if argv[0] == "--list-cameras" else argv[-4])
    return f"exit 2 and one line for {', '.join(outcomes)}: {lines[0][:160]}"


def check_tests(_: Path, __: Installed) -> str:
    """The edge test subset with pytest, on the bundle and data copied in."""
    done = guest(["python", "-m", "pytest", "-m", "edge", "-q", "-p", "no:cacheprovider",
                  "-o", "addopts=-ra", "--durations=5"], cwd=SRC,
                 env={"EDGE_TEST_DATA": f"{WORK}/data", "EDGE_TEST_BUNDLE": f"{WORK}/bundle"},
                 capture=True)
    print(done.stdout, end="")
    print(done.stderr, end="", file=sys.stderr)
    summary = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    if done.returncode != 0:
        raise Failed(f"pytest -m edge: exit {done.returncode}: {summary}")
    return summary


def check_classify(tiny: Path, _: Installed) -> str:
    """edge-classify with the fp32 and int8 models on every image of the tiny data set: a result
    for each image, labels from the bundle, accuracy well above chance (so equal answers mean
    something), and the top-1 this machine gives: the same for fp32 on every image, for int8 on
    at least ``edge_runtime.eval_set.INT8_AGREEMENT`` of them (:func:`required_agreement`: the
    threshold ``edge-model activate`` holds a device to)."""
    labels = read_labels(tiny / "run" / "export" / "labels.txt")
    images = sorted(str(p.relative_to(tiny / "data")) for p in (tiny / "data").rglob("*")
                    if p.suffix in (".jpg", ".png"))
    truth = [Path(path).parent.name for path in images]
    guest_paths = [f"{WORK}/data/{path}" for path in images]
    shown = []
    for variant in ("fp32", "int8"):
        arm = classify_json(["--model", f"{WORK}/bundle/model_{variant}.tflite", *guest_paths],
                            ROOT)
        x86 = classify_json(["--model", tiny / "run" / "export" / f"model_{variant}.tflite",
                             *[tiny / "data" / path for path in images]], None)
        if [r["source"] for r in arm] != guest_paths:
            raise Failed(f"edge-classify: {len(arm)} results for {len(images)} images")
        for result in arm:
            for prediction in result["top_k"]:
                if labels[prediction["index"]] != prediction["label"]:
                    raise Failed(f"edge-classify: {prediction} does not match labels.txt")
        top = [r["top_k"][0]["label"] for r in arm]
        accuracy = sum(t == c for t, c in zip(top, truth)) / len(images)
        chance = 1 / len(labels)
        if accuracy < 2 * chance:
            raise Failed(f"the tiny {variant} model's accuracy is {accuracy:.2f} (chance "
                         f"{chance:.2f}): it does not discriminate, so equal answers prove little")
        differ = [f"{p}: arm64 {a} {r['top_k'][0]['score']:.2f}, here "
                  f"{b['top_k'][0]['label']} {b['top_k'][0]['score']:.2f}"
                  for p, a, r, b in zip(images, top, arm, x86) if a != b["top_k"][0]["label"]]
        same = 1 - len(differ) / len(images)
        if differ and same < required_agreement(variant):
            raise Failed(f"edge-classify: the {variant} model's top-1 differs between arm64 and "
                         f"this machine on {len(differ)} of {len(images)} images: "
                         f"{'; '.join(differ[:8])}")
        shown.append(f"{variant}: accuracy {accuracy:.2f} (chance {chance:.2f}), top-1 as here on "
                     f"{len(images) - len(differ)}/{len(images)}"
                     + (f" (differs: {'; '.join(differ[:3])})" if differ else ""))
    return f"{len(images)} images (the tiny data set, train split included): " + "; ".join(shown)


def check_bench(_: Path, __: Installed) -> str:
    """``edge-bench BUNDLE_DIR`` on a fresh copy of the bundle: exit 0 and a report."""
    copy = ROOT / str(WORK).lstrip("/") / "bench-bundle"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(ROOT / str(WORK).lstrip("/") / "bundle", copy)
    # few timed runs: emulated timings mean nothing, the point is that it works
    done = guest(["edge-bench", f"{WORK}/bench-bundle", "--runs", "20", "--repeats", "2",
                  "--warmup", "2", "--no-progress"])
    if done.returncode != 0:
        raise Failed(f"edge-bench {WORK}/bench-bundle: exit {done.returncode}")
    report = copy / "bench" / "report.json"
    if not report.is_file():
        raise Failed(f"edge-bench wrote no {WORK}/bench-bundle/bench/report.json")
    rows = {row["model"]: row for row in json.loads(report.read_text())["rows"]}
    variants = json.loads((copy / "manifest.json").read_text())["variants"]
    if set(rows) != set(variants):
        raise Failed(f"edge-bench reported {sorted(rows)}, the bundle holds {sorted(variants)}")
    shown = ", ".join(f"{name} accuracy {row['accuracy']:.3f} (export: "
                      f"{variants[name]['accuracy']:.3f})" for name, row in rows.items())
    return f"every variant measured: {shown}"


def check_venv_size(_: Path, installed: Installed) -> str:
    """The README's venv weighs at most :data:`VENV_LIMIT_MB` on the card (``du``), and what
    weighs what is printed (docs/raspberry-pi.md's table comes from it)."""
    mb = lambda size: size / 1e6  # noqa: E731
    listed = sum(size for _, size in installed.weights)
    print(f"    {'what':24} {'MB':>6}")
    for name, size in installed.weights:
        if size >= 1e6:
            print(f"    {name:24} {mb(size):6.1f}")
    print(f"    {'(smaller packages)':24} {mb(sum(s for _, s in installed.weights if s < 1e6)):6.1f}")
    print(f"    {'(Python links, folders)':24} {mb(installed.venv_bytes - listed):6.1f}")
    print(f"    {'the venv (du)':24} {mb(installed.venv_bytes):6.1f}")
    top = ", ".join(f"{name} {mb(size):.0f}" for name, size in installed.weights[:4])
    if mb(installed.venv_bytes) > VENV_LIMIT_MB:
        raise Failed(f"the venv {VENV} weighs {mb(installed.venv_bytes):.0f} MB, over "
                     f"{VENV_LIMIT_MB} MB: {top}")
    return f"{VENV}: {mb(installed.venv_bytes):.0f} MB (limit {VENV_LIMIT_MB}): {top}"


def check_video(tiny: Path, _: Installed) -> str:
    """A recording through ``--camera VIDEO --headless``: every frame classified with the
    bundle's labels, then the summary. And the same without ``--headless`` where a display is
    named but neither OpenCV (headless, as the edge extra installs it) nor Tk (Lite has no
    python3-tk) can draw a window: one line saying what to do instead, exit 2."""
    labels = set((tiny / "run" / "export" / "labels.txt").read_text().split())
    model = f"{WORK}/bundle/model_int8.tflite"
    results = classify_json(["--model", model, "--camera", VIDEO, "--headless"], ROOT)
    frames = [r for r in results if "top_k" in r]
    summary = results[-1].get("summary") if results else None
    if [r["source"] for r in frames] != [f"{VIDEO}#{n}" for n in range(1, VIDEO_FRAMES + 1)]:
        raise Failed(f"--camera {VIDEO} --headless: {len(frames)} results for {VIDEO_FRAMES} "
                     "frames")
    if not summary or summary["frames"] != VIDEO_FRAMES:
        raise Failed(f"--camera {VIDEO} --headless ended without its summary: {results[-1:]}")
    if any(p["label"] not in labels for r in frames for p in r["top_k"]):
        raise Failed(f"--camera {VIDEO}: labels that are not the bundle's: {frames[0]}")
    done = guest(["edge-classify", "--model", model, "--camera", VIDEO, "--max-frames", "1"],
                 capture=True, env={"DISPLAY": ":0"})
    lines = done.stderr.strip().splitlines()
    if done.returncode != 2 or len(lines) != 1 or "--headless" not in lines[0]:
        raise Failed(f"--camera {VIDEO} without --headless, a display and no window library: "
                     f"exit {done.returncode}, stderr {done.stderr.strip()[-600:]!r}: expected "
                     "exit 2 and one line naming --headless")
    return (f"{VIDEO_FRAMES} frames and the summary ({summary['fps']} fps emulated); without "
            f"--headless: exit 2, {lines[0][:90]}…")


def free_port() -> int:
    """A TCP port nothing listens on now (the userland shares this machine's network)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def check_live_view(tiny: Path, _: Installed) -> str:
    """``--serve`` on the recording (looped): the page, ``/predictions`` with the bundle's
    labels and a JPEG from ``/stream.mjpg``, fetched from this machine; SIGTERM ends it with
    exit 0."""
    labels = set((tiny / "run" / "export" / "labels.txt").read_text().split())
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = userland.guest_command(ROOT, ["edge-classify", "--model",
                                            f"{WORK}/bundle/model_int8.tflite", "--camera",
                                            VIDEO, "--loop", "--headless", "--serve", port],
                                     path=VENV_PATH)
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True) as process:
        try:
            deadline = time.monotonic() + 300  # emulated start-up takes tens of seconds
            latest = {}
            while "top_k" not in latest:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise Failed(f"edge-classify --serve {port}: no prediction at {url}/"
                                 f"predictions (exit {process.poll()})")
                try:
                    with urllib.request.urlopen(f"{url}/predictions", timeout=10) as answer:
                        latest = json.loads(answer.read())
                except (OSError, ValueError):
                    time.sleep(1)
            with urllib.request.urlopen(f"{url}/", timeout=30) as answer:
                page = answer.read()
            with urllib.request.urlopen(f"{url}/stream.mjpg", timeout=30) as answer:
                stream = b""
                while b"\xff\xd9" not in stream[stream.find(b"\xff\xd8") + 2:]:
                    chunk = answer.read1(65536)
                    if not chunk or len(stream) > 4_000_000:
                        raise Failed(f"{url}/stream.mjpg gave no whole JPEG")
                    stream += chunk
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
    if b"<html" not in page.lower():
        raise Failed(f"{url}/ is not the live view's page: {page[:200]!r}")
    if not {p["label"] for p in latest["top_k"]} <= labels:
        raise Failed(f"{url}/predictions: labels that are not the bundle's: {latest}")
    if code != 0:
        raise Failed(f"edge-classify --serve: SIGTERM gave exit {code}: "
                     f"{process.stderr.read()[-600:] if process.stderr else ''}")
    return (f"page, /predictions (frame {latest.get('frame')}, top-1 "
            f"{latest['top_k'][0]['label']}) and a JPEG from /stream.mjpg; SIGTERM: exit 0")


CHECKS = (("venv size", check_venv_size), ("apt modules", check_apt_modules),
          ("list-cameras", check_list_cameras), ("camera picam", check_picam),
          ("camera video", check_video), ("live view", check_live_view),
          ("numpy by hand", check_numpy_by_hand), ("edge tests", check_tests),
          ("edge-classify", check_classify), ("edge-bench", check_bench))


def rehearse() -> int:
    """Every step; the exit code."""
    if SUITE not in userland.SUITES:
        raise Usage(f"PI_CHECK_SUITE={SUITE}: expected one of {', '.join(userland.SUITES)}")
    userland.preflight()
    tiny = tiny_bundle()
    ROOT.parent.mkdir(parents=True, exist_ok=True)
    with open(ROOT.with_name(ROOT.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one rehearsal at a time per userland
        userland.build_userland(ROOT, SUITE)
        desktop = userland.desktop_libraries(ROOT)
        if desktop:  # Lite has none: an install that needs one must fail here
            raise Failed(f"the userland is not Lite: it has {', '.join(desktop)}")
        userland.copy_host_config(ROOT)
        copy_checkout(ROOT)
        copy_wheel(ROOT)
        work = ROOT / str(WORK).lstrip("/")
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(tiny / "data", work / "data")
        shutil.copytree(tiny / "run" / "export", work / "bundle")
        camera_pictures(tiny, work / "camera")
        from tests.helpers import write_video  # the checkout's (tiny_bundle() put it on the path)

        write_video(ROOT / VIDEO.relative_to("/"),
                    [tiny / "data" / path for path, _ in test_split(tiny)], VIDEO_FRAMES,
                    size=(160, 120))
        results = []
        with userland.mounts(ROOT):
            installed = install()
            for name, check in CHECKS:
                say(f"== {name}")
                started = time.monotonic()
                try:
                    outcome = ("passed", check(tiny, installed))
                except userland.Skipped as skip:
                    outcome = ("SKIPPED", str(skip))
                except Failed as failure:
                    outcome = ("FAILED", str(failure))
                except subprocess.TimeoutExpired as timeout:
                    outcome = ("FAILED", f"timed out after {timeout.timeout:.0f} s")
                results.append((name, *outcome, time.monotonic() - started))
    say(f"summary: Raspberry Pi OS rehearsal on arm64 Debian {SUITE} under emulation "
        "(correctness only, timings mean nothing)")
    for name, status, detail, seconds in results:
        print(f"  {name:14} {status:8} {seconds:5.0f} s  {detail}")
    return 1 if any(status == "FAILED" for _, status, _, _ in results) else 0


def build_parser() -> Parser:
    """The command-line parser: ``--help`` and ``-v``; the settings are environment variables."""
    parser = Parser(prog=PROG, description=__doc__)
    add_verbosity(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The rehearsal; the exit code (see the module docstring)."""
    def work(_args) -> int:
        started = time.monotonic()
        try:
            code = rehearse()
        except CannotRehearse as why:
            if os.environ.get("PI_CHECK_OPTIONAL") == "1":
                say(f"SKIPPED: this machine cannot rehearse arm64: {why}")
                return EXIT_OK
            raise UsageError(f"this machine cannot rehearse arm64: {why}") from why
        except Usage as why:
            raise UsageError(str(why)) from why
        except Failed as why:
            print_error(PROG, f"FAILED: {why}")
            return EXIT_CHECK_FAILED
        say(f"{'passed' if code == 0 else 'FAILED'} in {time.monotonic() - started:.0f} s")
        return code

    return run_main(build_parser(), argv, work,
                    "the mounts are undone; the next run reuses what was built")


if __name__ == "__main__":
    sys.exit(main())
