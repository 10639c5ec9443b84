"""``edge-model activate`` killed outright (SIGKILL) at every step of its write protocol, and the
order of those writes as the kernel saw them (docs/ARCHITECTURE.md, "Updates a device can trust").

strace both records the system calls of a real run and delivers a real SIGKILL at the N-th
``fsync``/``rename``/``symlink`` of a run (``-e inject=...:signal=KILL:when=N``): no hook in the
code. Without strace (``apt install strace``; .ci/run installs it) those tests skip, and a
strace-free test kills the command at moments spread over its run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.store import Store, activate, verify, version_of
from tests.bundle_variants import renamed, slim, with_sensor_network

pytestmark = pytest.mark.edge

REPO = Path(__file__).resolve().parents[1]
STRACE = shutil.which("strace")
NO_STRACE = "strace is not installed (apt install strace; .ci/run installs it when root)"
EDGE_MODEL = [sys.executable, "-m", "deploy.model_cli"]
ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}  # no .pyc renames in the trace
PROTOCOL_CALLS = ("fsync", "rename", "renameat", "renameat2", "symlink", "symlinkat")


@pytest.fixture(scope="module")
def versions(bundle, tmp_path_factory):
    """A store with v1 current (the base every kill starts from), and v2 to activate: the
    tiny bundle's int8 only, v2 with the AI Camera's network in a folder of its own."""
    work = tmp_path_factory.mktemp("crash")
    small = slim(bundle, work / "slim")
    v1 = renamed(small, work / "v1", "one-")
    v2 = with_sensor_network(renamed(small, work / "v2-cpu", "two-"), work / "v2")
    base = work / "base"
    assert activate(Store(base), v1).result == "activated"
    return base, v1, v2


def fresh(base: Path, root: Path) -> Path:
    shutil.copytree(base, root, symlinks=True)
    return root


def edge_model_activate(root: Path, bundle: Path, *strace: str) -> subprocess.Popen:
    command = [*EDGE_MODEL, "activate", str(bundle), "--root", str(root)]
    if strace:
        command = [STRACE, "-f", "--seccomp-bpf", "-qq", *strace, *command]
    return subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def assert_whole(root: Path, allowed: set[str]) -> str:
    """``current`` leads to a complete, intact version of ``allowed``; returns it."""
    store = Store(root)
    current = store.current
    assert current in allowed, (current, os.listdir(root))
    assert (root / "current" / "manifest.json").is_file()
    assert verify(store, current) == []
    return current


def assert_next_activation_succeeds(root: Path, v2: Path) -> None:
    done = activate(Store(root), v2)
    assert done.ok, done.to_json()
    assert assert_whole(root, {version_of(v2)}) == version_of(v2)
    leftovers = [p.name for p in (*(root / "versions").iterdir(), *root.iterdir())
                 if p.name.startswith(".") and p.name != ".lock"]
    assert leftovers == []


# ----------------------------------------------------------------------------- the order

EVENT = re.compile(r"^(\d+)\s+(\w+)\((.*)\)\s+=\s+(-?\d+)")
QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
FD_PATH = re.compile(r"^\d+<(.*)>")


def protocol_events(log: Path) -> list[tuple[str, ...]]:
    """The successful fsync, rename and symlink calls of the traced command, in order:
    ("fsync", path), ("rename", from, to), ("symlink", target, link)."""
    events = []
    for line in log.read_text().splitlines():
        found = EVENT.match(line)
        if not found or found.group(4) != "0" or found.group(2) not in PROTOCOL_CALLS:
            continue
        call, args = found.group(2), found.group(3)
        if call == "fsync":
            events.append(("fsync", FD_PATH.match(args).group(1)))
        else:
            quoted = QUOTED.findall(args)
            events.append(("rename" if call.startswith("rename") else "symlink", *quoted[:2]))
    return events


@pytest.mark.skipif(STRACE is None, reason=NO_STRACE)
def test_each_file_then_its_folder_then_the_rename_then_the_links_reach_the_disk(
        versions, tmp_path):
    base, _, v2 = versions
    root = fresh(base, tmp_path / "models")
    log = tmp_path / "strace.log"
    process = edge_model_activate(root, v2, "-y", "-o", str(log), "-e",
                                  "trace=" + ",".join(PROTOCOL_CALLS))
    assert process.wait(timeout=300) == 0, process.stderr.read()
    events = protocol_events(log)
    version = version_of(v2)
    into = next(e for e in events if e[0] == "rename" and e[2] == f"{root}/versions/{version}")
    aside = into[1]
    at = events.index
    files = [e for e in events if e[0] == "fsync" and e[1].startswith(aside + "/")
             and (Path(e[1]).is_file() or not Path(e[1]).exists())]
    copied = {Path(f[1]).relative_to(aside).as_posix() for f in files
              if f[1] != f"{aside}/imx500"}
    assert copied == {"manifest.json", "labels.txt", "eval_set.npz", "model_int8.tflite",
                      "imx500/packerOut.zip", "imx500/memory_report.json"}
    sub, folder = ("fsync", f"{aside}/imx500"), ("fsync", aside)
    # every file before the folder it is in; the sub-folder before the copy's folder
    for file in files:
        owner = sub if file[1].startswith(f"{aside}/imx500/") else folder
        assert at(file) < at(owner), (file, owner)
    assert at(sub) < at(folder)
    links = [e for e in events if e[0] == "symlink"]
    switched = [e for e in events if e[0] == "rename" and e[2] in (f"{root}/previous",
                                                                   f"{root}/current")]
    order = [at(folder), at(into), at(("fsync", f"{root}/versions")),
             at(links[0]), at(switched[0]), at(links[1]), at(switched[1]),
             at(("fsync", str(root)))]
    assert order == sorted(order), events
    assert [e[2] for e in switched] == [f"{root}/previous", f"{root}/current"]
    assert links[1][1] == f"versions/{version}"


# ----------------------------------------------------------------------------- SIGKILL

def protocol_moments(versions, tmp_path) -> list[tuple[str, int]]:
    """Every fsync, rename and symlink call of a run of ``edge-model activate`` of the main
    thread, as (system call, its ordinal among that call's): where to kill it."""
    base, _, v2 = versions
    log = tmp_path / "moments.log"
    process = edge_model_activate(fresh(base, tmp_path / "measured"), v2, "-o", str(log),
                                  "-e", "trace=" + ",".join(PROTOCOL_CALLS))
    assert process.wait(timeout=300) == 0, process.stderr.read()
    lines = [EVENT.match(line) for line in log.read_text().splitlines()]
    main_pid = next(m.group(1) for m in lines if m)
    counts: dict[str, int] = {}
    moments = []
    for found in lines:
        if found and found.group(1) == main_pid:
            call = found.group(2)
            counts[call] = counts.get(call, 0) + 1
            moments.append((call, counts[call]))
    return moments


@pytest.mark.skipif(STRACE is None, reason=NO_STRACE)
def test_a_kill_at_any_write_of_an_activation_leaves_a_whole_version_current(versions,
                                                                             tmp_path):
    base, v1, v2 = versions
    moments = protocol_moments(versions, tmp_path)
    assert len(moments) >= 12  # 6 files, 2 folders, versions/, root; 3 renames, 2 links
    seen = set()
    for n, (call, nth) in enumerate(moments):
        root = fresh(base, tmp_path / f"kill-{n}")
        process = edge_model_activate(root, v2, "-o", os.devnull,
                                      "-e", f"inject={call}:signal=KILL:when={nth}")
        code = process.wait(timeout=300)
        assert code != 0, f"{call} #{nth}: the command was not killed"
        seen.add(assert_whole(root, {version_of(v1), version_of(v2)}))
        assert_next_activation_succeeds(root, v2)
    assert seen == {version_of(v1), version_of(v2)}  # killed before the switch, and after it


def test_a_kill_at_moments_spread_over_an_activation_leaves_a_whole_version_current(
        versions, tmp_path):
    """Without strace: SIGKILL after increasing delays, up to the length of a whole run."""
    base, v1, v2 = versions
    started = time.monotonic()
    process = edge_model_activate(fresh(base, tmp_path / "timed"), v2)
    assert process.wait(timeout=300) == 0, process.stderr.read()
    whole = time.monotonic() - started
    for n, share in enumerate((0.3, 0.6, 0.8, 0.9, 0.95, 1.0)):
        root = fresh(base, tmp_path / f"kill-{n}")
        process = edge_model_activate(root, v2)
        time.sleep(whole * share)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        assert_whole(root, {version_of(v1), version_of(v2)})
        assert_next_activation_succeeds(root, v2)
