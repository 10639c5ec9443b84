"""make pi-check: rehearse the Raspberry Pi install on an emulated arm64 Debian bookworm.

What a Pi owner does, under qemu-user emulation on this machine: ``pip install ".[edge]"`` from
this checkout into a venv of an arm64 Debian bookworm userland (Raspberry Pi OS is Debian;
bookworm's Python is 3.11), then, with that venv:

1. the edge test subset (``pytest -m edge``) on a prebuilt tiny data set and bundle,
2. ``edge-classify`` on the tiny bundle: exit 0, one result per image, labels from the bundle,
   top-1 compared with the same command on this machine,
3. ``edge-bench BUNDLE_DIR`` (the TensorFlow-free device bench) on a copy of the bundle.

Correctness only: emulated timings mean nothing.

Built once and cached outside the repository: the userland (``debootstrap``, about 2-5 min) and
the tiny bundle (trained here with TensorFlow, about 1 min; rebuilt when train/, export/ or
edge_runtime/ change). Needs root, binfmt_misc and the Debian packages qemu-user-static,
debootstrap and binfmt-support (installed with apt-get when missing).

Environment:
    PI_CHECK_ROOT      the arm64 userland (default /var/cache/edge-toolchain/pi-bookworm-arm64)
    PI_CHECK_CACHE     the tiny bundle's cache (default /var/cache/edge-toolchain)
    PI_CHECK_MIRROR    Debian mirror for debootstrap (default: this machine's apt sources)
    PI_CHECK_REBUILD=1 build the userland again
    PI_CHECK_OPTIONAL=1  where this machine cannot emulate arm64, say why and exit 0 (CI)

Exit codes: 0 every check passed; 1 a check failed; 2 bad usage (run from the checkout with the
dev venv's python); 3 this machine cannot rehearse (no root, binfmt_misc or apt), unless
PI_CHECK_OPTIONAL=1.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("PI_CHECK_CACHE", "/var/cache/edge-toolchain"))
ROOT = Path(os.environ.get("PI_CHECK_ROOT", CACHE / "pi-bookworm-arm64"))
SUITE = "bookworm"
# python3 for the venv; libgl1 and libglib2.0-0 because opencv-python's wheel links them
# (Raspberry Pi OS has them; a minimal Debian does not)
PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates", "libgl1", "libglib2.0-0")
HOST_TOOLS = {"qemu-aarch64-static": "qemu-user-static", "debootstrap": "debootstrap",
              "update-binfmts": "binfmt-support"}
READY = ".pi-check-ready"  # in ROOT: written last, holds what the userland was built with

# inside the userland
GUEST = Path("/opt/pi-check")
SRC, VENV, WORK = GUEST / "src", GUEST / "venv", GUEST / "work"
# what the tiny bundle is made with: a change to any of it builds the bundle again
BUNDLE_SOURCES = ("train/", "export/", "edge_runtime/", "tests/tiny_bundle.py", "pyproject.toml")
# what a host's pip configuration may live in; copied to the same place in the userland
PIP_CONFIG_FILES = ("/etc/pip.conf", "/etc/xdg/pip", os.path.expanduser("~/.config/pip"),
                    os.path.expanduser("~/.pip"))
PASSED_ENV = re.compile(r"^(PIP_\w+|SSL_CERT_\w+|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE|"
                        r"(?i:https?_proxy|no_proxy))$")


class CannotRehearse(Exception):
    """This machine lacks what emulation needs (root, binfmt_misc, the Debian packages)."""


class Usage(Exception):
    """Run the wrong way: exit 2."""


def say(message: str) -> None:
    print(f"pi-check: {message}", flush=True)


def run(args: list, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run`` with text I/O; ``check`` unless told otherwise."""
    kwargs.setdefault("check", True)
    return subprocess.run([str(a) for a in args], text=True, **kwargs)


# ----------------------------------------------------------------------------- this machine

def preflight() -> None:
    """Root, the emulator and its binfmt_misc registration; installs the Debian packages."""
    if not sys.platform.startswith("linux"):
        raise CannotRehearse("needs Linux (qemu-user through binfmt_misc)")
    if os.geteuid() != 0:
        raise CannotRehearse("needs root (debootstrap, mount and chroot); run it with sudo")
    missing = sorted({pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None})
    if missing:
        if shutil.which("apt-get") is None:
            raise CannotRehearse(f"needs the Debian packages {' '.join(missing)}; no apt-get here")
        say(f"installing {' '.join(missing)} with apt-get")
        done = run(["apt-get", "install", "-y", "-q", *missing], check=False,
                   capture_output=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
            raise CannotRehearse(f"apt-get could not install {' '.join(missing)}: "
                                 f"{tail[0] if tail else 'exit ' + str(done.returncode)}")
    # mounts binfmt_misc when it is not, and registers qemu with the fix-binary flag, so
    # the emulator needs no copy inside the userland
    done = run(["update-binfmts", "--enable", "qemu-aarch64"], check=False, capture_output=True)
    entry = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    try:
        enabled = entry.read_text().splitlines()[0] == "enabled"
    except OSError:
        enabled = False
    if not enabled:
        why = (done.stderr or "").strip().splitlines()[-1:] or [f"{entry} is missing"]
        raise CannotRehearse(f"binfmt_misc cannot run arm64 binaries here ({why[0]}); "
                             "a container needs binfmt_misc from its host")


def debian_mirror() -> str:
    """``PI_CHECK_MIRROR``, else the first Debian archive (not security) in the apt sources."""
    if os.environ.get("PI_CHECK_MIRROR"):
        return os.environ["PI_CHECK_MIRROR"]
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*")) + [Path("/etc/apt/sources.list")]
    for source in sources:
        with contextlib.suppress(OSError):
            text = source.read_text()
            # deb822 (.sources) stanzas and one-line (.list) entries
            uris = re.findall(r"^URIs:\s*(\S+)", text, re.M)
            uris += re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+", text, re.M)
            for uri in uris:
                if uri.rstrip("/").endswith("/debian"):
                    return uri
    return "http://deb.debian.org/debian"


# ----------------------------------------------------------------------------- the userland

def mounted_below(path: Path) -> list[str]:
    """Mount points at or below ``path`` (never delete a folder that still has any)."""
    points = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    prefix = str(path).rstrip("/")
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def remove_tree(path: Path) -> None:
    if mounted_below(path):
        raise Usage(f"{path} still has mounts ({', '.join(mounted_below(path))}); unmount them")
    shutil.rmtree(path, ignore_errors=True)


def build_userland(root: Path) -> None:
    """An arm64 Debian bookworm at ``root``, built once: debootstrap into a temporary folder,
    renamed when complete, so an interrupted build is started again rather than used."""
    recipe = json.dumps({"suite": SUITE, "packages": PACKAGES})
    ready = root / READY
    if (ready.exists() and ready.read_text() == recipe
            and os.environ.get("PI_CHECK_REBUILD") != "1"):
        say(f"userland: {root} (cached; PI_CHECK_REBUILD=1 builds it again)")
        return
    mirror = debian_mirror()
    say(f"userland: building arm64 Debian {SUITE} at {root} from {mirror} (once; minutes)")
    started = time.monotonic()
    tmp = root.with_name(root.name + ".building")
    remove_tree(tmp)
    root.parent.mkdir(parents=True, exist_ok=True)
    done = run(["debootstrap", "--arch=arm64", "--variant=minbase",
                f"--include={','.join(PACKAGES)}", SUITE, tmp, mirror],
               check=False, capture_output=True)
    if done.returncode != 0:
        log = tmp / "debootstrap" / "debootstrap.log"
        detail = log.read_text()[-1500:] if log.exists() else (done.stderr or done.stdout)[-1500:]
        raise CannotRehearse(f"debootstrap failed (exit {done.returncode}):\n{detail}")
    (tmp / READY).write_text(recipe)
    remove_tree(root)
    os.replace(tmp, root)
    say(f"userland: built in {time.monotonic() - started:.0f} s")


def copy_host_config(root: Path) -> None:
    """Name resolution, the CA bundle and pip's configuration, as on this machine: pip in the
    userland then reaches the same package indexes the same way."""
    files = ["/etc/resolv.conf", "/etc/ssl/certs/ca-certificates.crt"]
    for item in PIP_CONFIG_FILES:
        path = Path(item)
        if path.is_dir():
            files += [str(p) for p in path.rglob("*") if p.is_file()]
        elif path.is_file():
            files.append(item)
    for name in files:
        source = Path(name)
        if source.is_file():
            target = root / name.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)  # resolv.conf may be a dangling link there
            shutil.copyfile(source, target)


def checkout_files() -> list[str]:
    """The checkout's files as git sees them (tracked, and untracked ones not ignored)."""
    done = run(["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
               capture_output=True, check=False)
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


def local_package_sources() -> list[Path]:
    """Folders on this machine that pip's configuration names as package sources
    (``find-links``, ``file://`` indexes): shown read-only in the userland at the same place,
    so pip there reads the configuration exactly as pip here does."""
    done = run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, check=False)
    folders = []
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        if not key.endswith(("find-links", "index-url")):
            continue
        for item in value.strip("'\"").split():
            path = Path(urllib.parse.urlparse(item).path if item.startswith("file:") else item)
            if path.is_absolute() and path.is_dir() and path not in folders:
                folders.append(path)
    return folders


@contextlib.contextmanager
def mounts(root: Path):
    """/proc, /dev, /dev/pts and pip's local package folders of this machine inside the
    userland (the last read-only), unmounted on every exit."""
    wanted = [(["-t", "proc"], "proc", "/proc"), (["--bind"], "/dev", "/dev"),
              (["--bind"], "/dev/pts", "/dev/pts")]
    wanted += [(["--bind", "-o", "ro"], str(p), str(p)) for p in local_package_sources()]
    done: list[Path] = []
    try:
        for option, source, point in wanted:
            target = root / point.lstrip("/")
            target.mkdir(parents=True, exist_ok=True)
            if str(target) in mounted_below(target):
                continue  # left by an interrupted run: reuse it, unmount it at the end
            run(["mount", *option, source, target])
            done.append(target)
        yield
    finally:
        for target in reversed(done):
            if run(["umount", target], check=False).returncode != 0:
                run(["umount", "-l", target], check=False)


def guest_env() -> dict[str, str]:
    """The environment inside the userland: a clean one, plus this machine's pip and proxy
    settings."""
    env = {"PATH": f"{VENV}/bin:/usr/local/bin:/usr/bin:/bin", "HOME": "/root",
           "LANG": "C.UTF-8", "TMPDIR": "/tmp"}
    env.update({k: v for k, v in os.environ.items() if PASSED_ENV.match(k)})
    return env


def in_guest(root: Path, args: list, cwd: Path = Path("/tmp"), env: dict | None = None,
             timeout: float = 1800, capture: bool = False) -> subprocess.CompletedProcess:
    """Run ``args`` in the userland (arm64, emulated) from ``cwd``."""
    command = ["chroot", root, "/usr/bin/env", "-C", cwd, "-i",
               *[f"{k}={v}" for k, v in {**guest_env(), **(env or {})}.items()], *args]
    return run(command, check=False, timeout=timeout, capture_output=capture)


def install(root: Path) -> None:
    """``pip install "src[edge]"`` and pytest into the userland's venv (created once)."""
    started = time.monotonic()
    if not (root / str(VENV).lstrip("/") / "bin" / "python").exists():
        done = in_guest(root, ["python3", "-m", "venv", VENV])
        if done.returncode != 0:
            raise Failed("python3 -m venv failed in the userland")
    arch = in_guest(root, ["python", "-c", "import platform, sys; print(platform.machine(), "
                                           "sys.version.split()[0])"], capture=True)
    if arch.returncode != 0:
        raise Failed(f"python does not run in the userland: {arch.stderr.strip()}")
    say(f"venv: {VENV} ({arch.stdout.strip()})")
    # a local folder is always rebuilt and reinstalled; its dependencies only when missing
    done = in_guest(root, ["python", "-m", "pip", "install", "--quiet", f"{SRC}[edge]", "pytest"])
    if done.returncode != 0:
        raise Failed(f'pip install "{SRC}[edge]" failed in the userland (exit {done.returncode})')
    heavy = in_guest(root, ["python", "-c", "import importlib.util as u; "
                                            "print([m for m in ('tensorflow', 'keras') "
                                            "if u.find_spec(m)])"], capture=True)
    if heavy.stdout.strip() != "[]":
        raise Failed(f"the edge install pulled in {heavy.stdout.strip()}")
    say(f'installed ".[edge]" and pytest in {time.monotonic() - started:.0f} s '
        "(no TensorFlow, no Keras)")


class Failed(Exception):
    """A check in the userland failed: exit 1."""


# ----------------------------------------------------------------------------- the tiny bundle

def tiny_bundle() -> Path:
    """The tiny data set and bundle (``tests.tiny_bundle``), built here once per version of the
    code that makes them; older ones are removed."""
    digest = hashlib.sha256()
    for name in sorted(checkout_files()):
        if name.startswith(BUNDLE_SOURCES):
            digest.update(name.encode() + b"\0" + (REPO / name).read_bytes())
    out = CACHE / f"tiny-bundle-{digest.hexdigest()[:16]}"
    if (out / "run" / "export" / "manifest.json").exists():
        say(f"tiny bundle: {out} (cached)")
        return out
    if subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True,
                      cwd=REPO).returncode != 0:
        raise Usage(f"{sys.executable} has no TensorFlow to train the tiny bundle: "
                    "run make pi-check (it uses .venv with the dev extra)")
    say(f"tiny bundle: training and exporting into {out} (about a minute)")
    started = time.monotonic()
    done = run([sys.executable, "-m", "tests.tiny_bundle", out], cwd=REPO, check=False,
               env={**os.environ, "PYTHONPATH": str(REPO)})
    if done.returncode != 0:
        raise Failed(f"python -m tests.tiny_bundle failed (exit {done.returncode})")
    for old in CACHE.glob("tiny-bundle-*"):
        if old != out and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    say(f"tiny bundle: built in {time.monotonic() - started:.0f} s")
    return out


def test_images(data: Path) -> list[Path]:
    """Two images of every class of the data set, sorted."""
    images = []
    for folder in sorted(p for p in data.iterdir() if p.is_dir()):
        images += sorted(p for p in folder.iterdir() if p.suffix in (".jpg", ".png"))[:2]
    return images


# ----------------------------------------------------------------------------- the checks

def check_tests(root: Path) -> str:
    """The edge test subset with pytest, on the bundle and data copied in."""
    done = in_guest(root, ["python", "-m", "pytest", "-m", "edge", "-q", "-p", "no:cacheprovider",
                           "-o", "addopts=-ra", "--durations=5"],
                    cwd=SRC, env={"EDGE_TEST_DATA": f"{WORK}/data",
                                  "EDGE_TEST_BUNDLE": f"{WORK}/bundle"}, capture=True)
    print(done.stdout, end="")
    print(done.stderr, end="", file=sys.stderr)
    summary = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    if done.returncode != 0:
        raise Failed(f"pytest -m edge: exit {done.returncode}: {summary}")
    return summary


def classify(argv: list, python_bin: Path | None, root: Path | None) -> list[dict]:
    """``edge-classify ARGV --json`` here (``root`` None) or in the userland; its result lines."""
    if root is None:
        done = run([python_bin, "-m", "edge_runtime.cli", *argv, "--json"], capture_output=True,
                   check=False, cwd=REPO)
    else:
        done = in_guest(root, ["edge-classify", *argv, "--json"], capture=True)
    where = "the userland" if root else "this machine"
    if done.returncode != 0 or done.stderr.strip():
        raise Failed(f"edge-classify in {where}: exit {done.returncode}: {done.stderr.strip()}")
    return [json.loads(line) for line in done.stdout.splitlines()]


def check_classify(root: Path, tiny: Path) -> str:
    """edge-classify with the int8 model on two images per class: exit 0, a result for each,
    labels from the bundle, and the same top-1 as this machine gives."""
    bundle = tiny / "run" / "export"
    labels = (bundle / "labels.txt").read_text().split()
    images = test_images(tiny / "data")
    names = [str(p.relative_to(tiny)) for p in images]
    guest = classify(["--model", f"{WORK}/bundle/model_int8.tflite",
                      *[f"{WORK}/{n}" for n in names]], None, root)
    host = classify(["--model", bundle / "model_int8.tflite", *images], Path(sys.executable),
                    None)
    if [r["source"] for r in guest] != [f"{WORK}/{n}" for n in names]:
        raise Failed(f"edge-classify: {len(guest)} results for {len(names)} images")
    for result in guest:
        for prediction in result["top_k"]:
            if labels[prediction["index"]] != prediction["label"]:
                raise Failed(f"edge-classify: {prediction} does not match labels.txt")
    arm = [r["top_k"][0]["label"] for r in guest]
    x86 = [r["top_k"][0]["label"] for r in host]
    differ = [f"{n}: arm64 {a}, here {b}" for n, a, b in zip(names, arm, x86) if a != b]
    if differ:
        raise Failed("edge-classify: the int8 model's top-1 differs between arm64 and this "
                     f"machine on {len(differ)} of {len(names)} images: {'; '.join(differ)}")
    return f"{len(names)} images, labels {sorted(set(arm))}, top-1 equal to this machine's"


def check_bench(root: Path) -> str:
    """``edge-bench BUNDLE_DIR`` on a fresh copy of the bundle: exit 0 and a report."""
    copy = root / str(WORK).lstrip("/") / "bench-bundle"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(root / str(WORK).lstrip("/") / "bundle", copy)
    # few timed runs: emulated timings mean nothing, the point is that it works
    done = in_guest(root, ["edge-bench", f"{WORK}/bench-bundle", "--runs", "20", "--repeats",
                           "2", "--warmup", "2", "--no-progress"])
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


class Skipped(Exception):
    """A check that cannot run yet, with the reason."""


CHECKS = (("edge tests", check_tests), ("edge-classify", check_classify),
          ("edge-bench", check_bench))


def rehearse() -> int:
    """Every step; the exit code."""
    preflight()
    tiny = tiny_bundle()
    ROOT.parent.mkdir(parents=True, exist_ok=True)
    with open(ROOT.with_name(ROOT.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one rehearsal at a time per userland
        build_userland(ROOT)
        copy_host_config(ROOT)
        copy_checkout(ROOT)
        work = ROOT / str(WORK).lstrip("/")
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(tiny / "data", work / "data")
        shutil.copytree(tiny / "run" / "export", work / "bundle")
        results = []
        with mounts(ROOT):
            install(ROOT)
            for name, check in CHECKS:
                say(f"== {name}")
                started = time.monotonic()
                args = (ROOT, tiny) if check is check_classify else (ROOT,)
                try:
                    outcome = ("passed", check(*args))
                except Skipped as skip:
                    outcome = ("SKIPPED", str(skip))
                except Failed as failure:
                    outcome = ("FAILED", str(failure))
                except subprocess.TimeoutExpired as timeout:
                    outcome = ("FAILED", f"timed out after {timeout.timeout:.0f} s")
                results.append((name, *outcome, time.monotonic() - started))
    say("summary (arm64 under emulation: correctness only, timings mean nothing)")
    for name, status, detail, seconds in results:
        print(f"  {name:14} {status:8} {seconds:5.0f} s  {detail}")
    return 1 if any(status == "FAILED" for _, status, _, _ in results) else 0


def main() -> int:
    started = time.monotonic()
    try:
        code = rehearse()
    except CannotRehearse as why:
        if os.environ.get("PI_CHECK_OPTIONAL") == "1":
            say(f"SKIPPED: this machine cannot rehearse arm64: {why}")
            return 0
        print(f"pi-check: this machine cannot rehearse arm64: {why}", file=sys.stderr)
        return 3
    except Usage as why:
        print(f"pi-check: {why}", file=sys.stderr)
        return 2
    except Failed as why:
        print(f"pi-check: FAILED: {why}", file=sys.stderr)
        return 1
    say(f"{'passed' if code == 0 else 'FAILED'} in {time.monotonic() - started:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
