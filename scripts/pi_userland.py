"""The emulated Raspberry Pi OS userland ``make pi-check`` rehearses in (scripts/pi_check.py).

An arm64 Debian (``bookworm`` or ``trixie``) built once with ``debootstrap --variant=minbase``
and run through ``qemu-user-static`` and binfmt_misc, made to look like Raspberry Pi OS Lite
where it matters to an install: no desktop library (no libGL, GLib, GTK, Qt or Tk), Python and
numpy from apt, a module apt compiled against apt's numpy, and
``python3-picamera2`` as an apt package (a stand-in: Debian has no Picamera2) that imports that
module the way the real Picamera2 imports ``simplejpeg``, so a numpy of another major version in
the venv breaks ``import picamera2`` exactly as it does on a Pi.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUITES = ("bookworm", "trixie")
"""Raspberry Pi OS 12 (Python 3.11, numpy 1.24) and 13 (Python 3.13, numpy 2.2)."""

VARIANT = "minbase"
"""debootstrap's smallest userland (essential packages and apt): no desktop library, as on
Raspberry Pi OS Lite."""
PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates", "python3-numpy",
            "python3-bottleneck", "sudo")
"""What the userland gets from apt, and nothing else. Python and numpy from apt;
python3-bottleneck, compiled against apt's numpy, stands for simplejpeg (which Picamera2
imports); sudo, because the README's lines use it. No libgl1, libglib2.0-0 or python3-tk: the
edge extra must install and run without them. Nor python3-pil, whose text layout (libraqm,
harfbuzz) brings GLib: the venv then holds pip's Pillow on both suites, so what it weighs is an
upper bound."""
DESKTOP_LIBRARIES = ("libGL.so.1", "libglib-2.0.so.0", "libgtk-3.so.0", "libQt5Core.so.5")
"""Libraries a desktop image has and Lite has not (OpenCV's GUI build links the first two):
pi-check refuses a userland that has any of them, so it rehearses Lite."""


def recipe(suite: str) -> str:
    """What the userland is built from, as written into it when built: another recipe (a
    package added or removed, another variant) builds it anew rather than reusing the cache."""
    return json.dumps({"suite": suite, "variant": VARIANT, "packages": PACKAGES})

ABI_MODULE = "bottleneck"
"""The apt module the Picamera2 stand-in imports in place of simplejpeg."""

HOST_TOOLS = {"qemu-aarch64-static": "qemu-user-static", "debootstrap": "debootstrap",
              "update-binfmts": "binfmt-support", "dpkg-deb": "dpkg"}
READY = ".pi-check-ready"  # in the userland: written last, holds what it was built with

STAND_IN = REPO / "tests" / "fake_picamera2"
"""The Picamera2 stand-in the x86 tests put on sys.path (the package and the stand-ins for the
modules its AI Camera helper imports); packaged here as python3-picamera2."""
APT_REPO = Path("/opt/pi-check/apt")
"""In the userland: a local apt repository holding the stand-in package."""
APT_SOURCE = Path("/etc/apt/sources.list.d/pi-check.list")

PIP_CONFIG_FILES = ("/etc/pip.conf", "/etc/xdg/pip", os.path.expanduser("~/.config/pip"),
                    os.path.expanduser("~/.pip"))
"""Where a host's pip configuration may live; copied to the same place in the userland."""
PASSED_ENV = re.compile(r"^(PIP_\w+|SSL_CERT_\w+|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE|"
                        r"(?i:https?_proxy|no_proxy))$")


class CannotRehearse(Exception):
    """This machine lacks what emulation needs (root, binfmt_misc, the Debian packages)."""


class Usage(Exception):
    """Run the wrong way: exit 2."""


class Failed(Exception):
    """A step in the userland failed: exit 1."""


class Skipped(Exception):
    """A check that does not apply to this userland, with the reason."""


def say(message: str) -> None:
    print(f"pi-check: {message}", flush=True)


def run(args: list, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run`` with text I/O; ``check`` unless told otherwise."""
    kwargs.setdefault("check", True)
    return subprocess.run([str(a) for a in args], text=True, **kwargs)


def streamed(args: list, show=lambda line: True, timeout: float | None = None,
             **kwargs) -> subprocess.CompletedProcess:
    """``args`` with its output (stdout and stderr together) printed as it comes, each line
    indented, where ``show(line)``: minutes of apt, pip or debootstrap are never silent. The
    result holds the whole output as ``stdout``; past ``timeout`` seconds the command is killed
    and ``subprocess.TimeoutExpired`` raised."""
    command = [str(a) for a in args]
    lines: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", **kwargs) as process:
        fired: list[bool] = []
        timer = (threading.Timer(timeout, lambda: fired.append(True) or process.kill())
                 if timeout else None)
        if timer:
            timer.start()
        try:
            for line in process.stdout:
                lines.append(line)
                if show(line):
                    print("    " + line.rstrip(), flush=True)
            code = process.wait()
        finally:
            if timer:
                timer.cancel()
    if fired:
        raise subprocess.TimeoutExpired(command, timeout, "".join(lines))
    return subprocess.CompletedProcess(command, code, "".join(lines), "")


def new_phase():
    """A ``show`` for :func:`streamed` that summarises a long log live: a line whose first two
    words (``I: Retrieving``) start a phase not seen yet, and every warning or error."""
    seen: set[str] = set()

    def show(line: str) -> bool:
        words = line.split()
        if not words:
            return False
        phase = " ".join(words[:2])
        if words[0] in ("W:", "E:") or phase not in seen:
            seen.add(phase)
            return True
        return False

    return show


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
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        done = streamed(["apt-get", "install", "-y", "-q", *missing], env=env)
        if done.returncode != 0:  # a fresh machine may have no package lists yet
            streamed(["apt-get", "update", "-q"], env=env)
            done = streamed(["apt-get", "install", "-y", "-q", *missing], env=env)
        if done.returncode != 0:
            tail = done.stdout.strip().splitlines()[-1:]
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


def local_package_sources(pip_config: str | None = None) -> list[Path]:
    """Folders on this machine that pip's configuration reads packages from: each
    ``find-links`` folder, and for each ``file://`` index the folder *above* it, since an
    index's pages may link to files beside it (``/opt/pypi/simple/numpy/`` → ``../../files/``).
    Shown read-only in the userland at the same place, so pip there reads the configuration
    exactly as pip here does.

    Args:
        pip_config: what ``pip config list`` prints (read from this machine's pip when None).
    """
    if pip_config is None:
        pip_config = run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                         check=False).stdout
    folders: list[Path] = []
    for line in pip_config.splitlines():
        key, _, value = line.partition("=")
        if not key.endswith(("find-links", "index-url")):
            continue
        for item in value.strip().strip("'\"").split():
            path = Path(urllib.parse.urlparse(item).path if item.startswith("file:") else item)
            if key.endswith("index-url"):
                path = path.parent
            if path.is_absolute() and path.is_dir() and path != Path("/"):
                folders.append(path)
    # a folder inside another that is mounted anyway needs no mount of its own
    folders = sorted(set(folders))
    return [f for f in folders if not any(o != f and o in f.parents for o in folders)]


# ----------------------------------------------------------------------------- the userland

def default_root(suite: str, cache: Path) -> Path:
    return cache / f"pi-{suite}-arm64"


def mounted_below(path: Path) -> list[str]:
    """Mount points at or below ``path`` (never delete a folder that still has any)."""
    points = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    prefix = str(path).rstrip("/")
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def remove_tree(path: Path) -> None:
    if mounted_below(path):
        raise Usage(f"{path} still has mounts ({', '.join(mounted_below(path))}); unmount them")
    shutil.rmtree(path, ignore_errors=True)


def build_userland(root: Path, suite: str) -> None:
    """An arm64 Debian ``suite`` at ``root``, built once: debootstrap into a temporary folder,
    renamed when complete, so an interrupted build is started again rather than used."""
    wanted = recipe(suite)
    ready = root / READY
    if (ready.exists() and ready.read_text() == wanted
            and os.environ.get("PI_CHECK_REBUILD") != "1"):
        say(f"userland: {root} (cached; PI_CHECK_REBUILD=1 builds it again)")
        return
    mirror = debian_mirror()
    say(f"userland: building arm64 Debian {suite} at {root} from {mirror} (once; minutes; "
        "each new debootstrap phase shown as it starts)")
    started = time.monotonic()
    tmp = root.with_name(root.name + ".building")
    remove_tree(tmp)
    root.parent.mkdir(parents=True, exist_ok=True)
    done = streamed(["debootstrap", "--arch=arm64", f"--variant={VARIANT}",
                     f"--include={','.join(PACKAGES)}", suite, tmp, mirror],
                    show=new_phase())
    if done.returncode != 0:
        log = tmp / "debootstrap" / "debootstrap.log"
        detail = (log.read_text()[-1000:] if log.exists() else "") + done.stdout[-800:]
        raise CannotRehearse(f"debootstrap failed (exit {done.returncode}):\n{detail}")
    (tmp / READY).write_text(wanted)
    remove_tree(root)
    os.replace(tmp, root)
    say(f"userland: built in {time.monotonic() - started:.0f} s")


def desktop_libraries(root: Path) -> list[str]:
    """Which of :data:`DESKTOP_LIBRARIES` the userland has (the paths); none on Lite."""
    found = []
    for folder in ("usr/lib", "lib"):
        base = root / folder
        if base.is_dir() and not base.is_symlink():  # merged /usr: lib is a link to usr/lib
            found += [str(p.relative_to(root)) for p in base.rglob("*.so.*")
                      if p.name in DESKTOP_LIBRARIES]
    return sorted(found)


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


def guest_env(path: str) -> dict[str, str]:
    """The environment inside the userland: a clean one with ``path`` as PATH, plus this
    machine's pip and proxy settings."""
    env = {"PATH": path, "HOME": "/root", "LANG": "C.UTF-8", "TMPDIR": "/tmp",
           "PIP_ROOT_USER_ACTION": "ignore", "DEBIAN_FRONTEND": "noninteractive"}
    env.update({k: v for k, v in os.environ.items() if PASSED_ENV.match(k)})
    return env


GUEST_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"


def guest_command(root: Path, args: list, cwd: Path = Path("/tmp"), env: dict | None = None,
                  path: str = GUEST_PATH) -> list[str]:
    """The command line that runs ``args`` in the userland from ``cwd``, as root."""
    return [str(a) for a in ["chroot", root, "/usr/bin/env", "-C", cwd, "-i",
                             *[f"{k}={v}" for k, v in {**guest_env(path), **(env or {})}.items()],
                             *args]]


def in_guest(root: Path, args: list, cwd: Path = Path("/tmp"), env: dict | None = None,
             timeout: float = 1800, capture: bool = False, path: str = GUEST_PATH,
             stream: bool = False) -> subprocess.CompletedProcess:
    """Run ``args`` in the userland (arm64, emulated) from ``cwd``, as root. With ``stream``,
    its output is printed as it comes and kept (stdout and stderr together, in ``stdout``)."""
    command = guest_command(root, args, cwd, env, path)
    if stream:
        return streamed(command, timeout=timeout)
    return run(command, check=False, timeout=timeout, capture_output=capture)


# ----------------------------------------------------------------------------- Picamera2

def stand_in_deb(out: Path) -> Path:
    """``python3-picamera2`` as a Debian package: the tests' Picamera2 stand-in in apt's
    ``dist-packages`` (with the stand-ins for what its AI Camera helper imports, as Raspberry Pi
    OS has them from apt), importing :data:`ABI_MODULE` first as the real one imports
    simplejpeg, and depending on apt's numpy and that module as the real one does."""
    future = "from __future__ import annotations\n"
    init = STAND_IN / "picamera2" / "__init__.py"
    files = {path.relative_to(STAND_IN): path.read_text()
             for path in sorted(STAND_IN.rglob("*.py")) if "__pycache__" not in path.parts}
    if future not in files[init.relative_to(STAND_IN)]:
        raise Usage(f"{init} no longer has {future.strip()!r}, after which pi-check adds its "
                    "import")
    files[init.relative_to(STAND_IN)] = files[init.relative_to(STAND_IN)].replace(
        future, f"{future}\nimport {ABI_MODULE}  # noqa: F401  (pi-check: stands for "
                "simplejpeg, built by apt against apt's numpy)\n", 1)
    digest = hashlib.sha256()
    for name, source in files.items():
        digest.update(f"{name}\0{source}\0".encode())
    version = "0.3.99+pichk" + digest.hexdigest()[:8]
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "pkg"
        packages = tree / "usr/lib/python3/dist-packages"
        for name, source in files.items():
            (packages / name).parent.mkdir(parents=True, exist_ok=True)
            (packages / name).write_text(source)
        (tree / "DEBIAN").mkdir()
        (tree / "DEBIAN" / "control").write_text(
            "Package: python3-picamera2\n"
            f"Version: {version}\n"
            "Architecture: all\n"
            f"Depends: python3, python3-numpy, python3-{ABI_MODULE}\n"
            "Maintainer: make pi-check <root@localhost>\n"
            "Description: stand-in for Raspberry Pi's Picamera2 (make pi-check)\n"
            f" Imports python3-{ABI_MODULE}, built against apt's numpy, as Picamera2 imports\n"
            " simplejpeg; serves a known picture in Picamera2's byte orders.\n")
        out.mkdir(parents=True, exist_ok=True)
        deb = out / f"python3-picamera2_{version}_all.deb"
        run(["dpkg-deb", "--root-owner-group", "--build", tree, deb], capture_output=True)
    return deb


def packages_index(deb: Path) -> str:
    """The ``Packages`` stanza of a flat apt repository holding ``deb``."""
    done = run(["dpkg-deb", "--field", deb], capture_output=True)
    data = deb.read_bytes()
    return (done.stdout.strip() + f"\nFilename: ./{deb.name}\nSize: {len(data)}\n"
            f"SHA256: {hashlib.sha256(data).hexdigest()}\n\n")


def offer_picamera2(root: Path) -> None:
    """Make ``apt install python3-picamera2`` in the userland install the stand-in (from a
    local repository), and take away any copy an earlier rehearsal installed, so the README's
    apt line really installs it."""
    in_guest(root, ["dpkg", "--purge", "python3-picamera2"], capture=True)
    repo = root / str(APT_REPO).lstrip("/")
    shutil.rmtree(repo, ignore_errors=True)
    deb = stand_in_deb(repo)
    (repo / "Packages").write_text(packages_index(deb))
    source = root / str(APT_SOURCE).lstrip("/")
    source.write_text(f"deb [trusted=yes] file:{APT_REPO} ./\n")
    done = in_guest(root, ["apt-get", "update", "-q", "-o", f"Dir::Etc::sourcelist={APT_SOURCE}",
                           "-o", "Dir::Etc::sourceparts=-", "-o", "APT::Get::List-Cleanup=0"],
                    capture=True)
    if done.returncode != 0:
        raise Failed(f"apt-get update of the Picamera2 stand-in's repository failed: "
                     f"{(done.stderr or done.stdout).strip()[-500:]}")

