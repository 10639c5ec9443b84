"""edge-collect and the Ansible role's pull against real sshd on this machine: the two "Pis" of
tests/test_fleet.py (two sshd on localhost), each with its own data root written through
edge_runtime/capture/data_root.py, some pictures on both. Skips, saying why, without sshd, ssh
or rsync (``make deploy-check``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.collect.collection import read_index
from deploy.collect.pull import prune
from deploy.fleet import DeployConfig
from edge_runtime.capture import data_root
from tests.test_collect import jpeg, monitor_day, tree, write_device
from tests.test_fleet import BIN, HOSTS, REPO, Fleet, fleet  # noqa: F401 (fleet: the fixture)

pytestmark = [pytest.mark.sshd, pytest.mark.edge]


@pytest.fixture
def devices(fleet, tmp_path):  # noqa: F811 (the fixture imported above)
    """Each host's data root (a space and an accent in its path) and what is on it: one
    picture captured on host-a and found uncertain on host-b, one of each host's own, a shadow
    frame, a day of monitoring records each."""
    roots = {host: tmp_path / host / "edge data é" for host in HOSTS}
    shared = jpeg(11)
    day = monitor_day(True)
    write_device(roots["host-a"], captures=[("cup", "capture-1.jpg", shared),
                                            ("cup", "capture-2.jpg", jpeg(12))],
                 monitor=day[:80])
    write_device(roots["host-b"], uncertain=[("mug", "uncertain-1.jpg", shared, 0.4),
                                             ("cup", "uncertain-2.jpg", jpeg(13), 0.3)],
                 shadow=[("shadow-1.jpg", jpeg(14))], monitor=day[40:])
    return roots


def edge_collect(fleet: Fleet, out: Path, *args: str) -> tuple[int, dict, str]:  # noqa: F811
    done = subprocess.run(
        [str(BIN / "edge-collect"), *args, "--out", str(out), "--ssh-config",
         str(fleet.ssh_config), "--json"], capture_output=True, text=True, timeout=300)
    rows = {}
    for line in done.stdout.splitlines():
        row = json.loads(line)
        rows[row.get("host", "report")] = row
    return done.returncode, rows, done.stderr


def pictures_on(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for folder in data_root.PICTURE_FOLDERS
                  for p in (root / folder).rglob("*") if p.is_file() and p.suffix == ".jpg")


def test_edge_collect_brings_each_picture_once_and_prunes_only_what_arrived(
        fleet, devices, tmp_path):  # noqa: F811
    out = tmp_path / "collected"
    targets = [f"{h}:{devices[h]}" for h in HOSTS]
    code, rows, err = edge_collect(fleet, out, *targets, "host-down", "--report")
    assert code == 1, err  # host-down has its row; the others went on
    assert rows["host-down"]["ok"] is False
    assert rows["host-down"]["result"].startswith("unreachable:")
    assert {h: (rows[h]["pictures"], rows[h]["new"], rows[h]["ok"]) for h in HOSTS} == {
        "host-a": (2, 2, True), "host-b": (3, 2, True)}
    index = read_index(out / "index.jsonl")
    assert len(index) == 4 and len((out / "index.jsonl").read_text().splitlines()) == 4
    both = [e for e in index.values() if e["hosts"] == ["host-a", "host-b"]]
    assert len(both) == 1 and both[0]["file"].startswith("cup/")
    assert both[0]["prediction"] == "mug"  # host-b's model was unsure of it
    assert sorted(p.name for p in (out / "unlabelled").iterdir()) == sorted(
        e["file"].split("/")[1] for e in index.values() if e["file"].startswith("unlabelled/"))
    # the monitoring records, gathered per host, drawn per host
    assert len(list(data_root.read_records(out / "monitor" / "host-b.jsonl"))) == 104
    assert rows["report"]["report"]["hosts"] == 2 and (out / "report" / "drift.png").is_file()

    # a second run copies nothing and changes nothing
    before = tree(out)
    code, rows, err = edge_collect(fleet, out, *targets)
    assert code == 0, err
    assert {h: (rows[h]["pulled"], rows[h]["new"]) for h in HOSTS} == {h: (0, 0) for h in HOSTS}
    assert tree(out) == before

    # a picture whose bytes on the device are not the ones hashed here is never deleted
    settings = DeployConfig(fleet.ssh_config, timeout_s=60)
    done = prune("host-a", str(devices["host-a"]),
                 [("captures/cup/capture-2.jpg", "0" * 64), ("../outside.jpg", "0" * 64)],
                 settings)
    assert json.loads(done.stdout) == {"pruned": 0, "changed": 1, "missing": 1}, done.stderr
    assert (devices["host-a"] / "captures/cup/capture-2.jpg").is_file()

    # a new capture on host-a, then --prune-remote: it arrives, and the devices are left with
    # nothing that arrived (their indexes and monitoring records stay)
    write_device(devices["host-a"], captures=[("cup", "capture-3.jpg", jpeg(15))])
    code, rows, err = edge_collect(fleet, out, *targets, "--prune-remote")
    assert code == 0, err
    assert (rows["host-a"]["new"], rows["host-a"]["pruned"]) == (1, 3)
    assert rows["host-b"]["pruned"] == 3
    for host in HOSTS:
        assert pictures_on(devices[host]) == [], host
        assert (devices[host] / data_root.MONITOR_FILE).is_file()
    assert len(read_index(out / "index.jsonl")) == 5
    # the staged copies follow the devices; the collection keeps every picture
    code, rows, err = edge_collect(fleet, out, *targets)
    assert code == 0 and rows["host-a"]["pictures"] == 0, err
    assert len([p for p in out.rglob("*.jpg") if ".edge-collect" not in p.parts]) == 5


def test_the_ansible_role_pulls_and_takes_the_same_collection(fleet, devices, tmp_path):  # noqa: F811
    playbook = shutil.which("ansible-playbook", path=str(BIN)) or shutil.which(
        "ansible-playbook")
    if playbook is None:
        pytest.skip("ansible-playbook is not installed (pip install '.[fleet]'; the dev extra "
                    "has it)")
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("".join(
        f"{h} ansible_host=127.0.0.1 ansible_port={fleet.ports[h]} "
        f"ansible_ssh_private_key_file={fleet.key} ansible_python_interpreter={sys.executable} "
        "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'"
        f" edge_data_root='{devices[h]}' edge_collect_command={BIN / 'edge-collect'}\n"
        for h in HOSTS))
    out = tmp_path / "collected"

    def play() -> subprocess.CompletedProcess:
        return subprocess.run(
            [playbook, "-i", str(inventory), str(REPO / "deploy/ansible/edge-collect.yml"),
             "-e", f"out={out}"], capture_output=True, text=True, timeout=600,
            env={**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_NOCOLOR": "1",
                 "ANSIBLE_RETRY_FILES_ENABLED": "False"})

    done = play()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    index = read_index(out / "index.jsonl")
    assert len(index) == 4  # the same collection as edge-collect's
    assert [e["hosts"] for e in index.values() if len(e["hosts"]) == 2] == [list(HOSTS)]
    assert "host-a: 2 picture(s), 2 new; host-b: 3 picture(s), 2 new" in done.stdout
    assert len(list(data_root.read_records(out / "monitor" / "host-b.jsonl"))) == 104
    again = play()  # idempotent: nothing to copy or take the second time
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout[-3000:]
