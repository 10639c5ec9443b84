"""edge-deploy and the Ansible role against real sshd on this machine: two "hosts" (two sshd on
two high ports, each with its own versions folder), a key made here.

Each sshd runs as a child of the test (``sshd -D``) with its own configuration and host key, and
is killed at the end. Where sshd, rsync or ansible-playbook cannot be had, the tests skip
saying why; ``.ci/run`` installs openssh-server and rsync when it is root (``make deploy-check``).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.store import version_of
from tests.bundle_variants import answers_differ, renamed

pytestmark = [pytest.mark.sshd, pytest.mark.edge]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
HOSTS = ("host-a", "host-b")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


class Fleet:
    """Two sshd on localhost and the ssh configuration that names them host-a and host-b
    (and host-down, a port nobody listens on)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.roots = {host: folder / host / "models" for host in HOSTS}
        self.processes: list[subprocess.Popen] = []
        self.ports: dict[str, int] = {}
        self.ssh_config = folder / "ssh_config"
        self.key = folder / "client_key"

    def start(self) -> Fleet:
        user = pwd.getpwuid(os.geteuid()).pw_name
        for name in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                            str(self.folder / name)], check=True)
        shutil.copy(self.folder / "client_key.pub", self.folder / "authorized_keys")
        if os.geteuid() == 0:  # sshd as root wants its privilege separation folder
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        for host in HOSTS:
            port = self.ports[host] = free_port()
            conf = self.folder / f"sshd_{host}"
            conf.write_text(
                f"Port {port}\nListenAddress 127.0.0.1\nHostKey {self.folder / 'host_key'}\n"
                f"AuthorizedKeysFile {self.folder / 'authorized_keys'}\nStrictModes no\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
                "PermitRootLogin prohibit-password\nPidFile none\nLogLevel ERROR\n"
                f"SetEnv EDGE_MODEL_ROOT={self.roots[host]}\n")
            process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(conf)],
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True)
            self.processes.append(process)
            if not wait_for_port(port, process):
                self.stop()
                pytest.skip(f"sshd would not start here: {process.stdout.read()[-300:]}")
        self.ports["host-down"] = free_port()
        self.ssh_config.write_text("".join(
            f"Host {h}\n  HostName 127.0.0.1\n  Port {p}\n  User {user}\n"
            f"  IdentityFile {self.key}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n"
            "  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
            for h, p in self.ports.items()))
        return self

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)

    def current(self, host: str) -> str | None:
        link = self.roots[host] / "current"
        return os.readlink(link).split("/")[-1] if os.path.islink(link) else None


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    for tool, package in (("ssh", "openssh-client"), ("rsync", "rsync")):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt install {package}; .ci/run installs it "
                        "when root)")
    if not os.path.exists(SSHD):
        pytest.skip("sshd is not installed (apt install openssh-server; .ci/run installs it "
                    "when root)")
    fleet = Fleet(tmp_path_factory.mktemp("fleet")).start()
    yield fleet
    fleet.stop()


def edge_deploy(fleet: Fleet, bundle: Path, *hosts: str) -> tuple[int, dict, str]:
    done = subprocess.run(
        [str(BIN / "edge-deploy"), str(bundle), *hosts, "--ssh-config", str(fleet.ssh_config),
         "--edge-model", str(BIN / "edge-model"), "--json"],
        capture_output=True, text=True, timeout=600)
    rows = {row["host"]: row for row in map(json.loads, done.stdout.splitlines())}
    return done.returncode, rows, done.stderr


def test_edge_deploy_updates_the_hosts_that_pass_and_leaves_the_others(fleet, bundle,
                                                                        tmp_path):
    v1 = renamed(bundle, tmp_path / "v1", "one-")
    code, rows, err = edge_deploy(fleet, v1, *HOSTS)
    assert code == 0, err
    assert {h: r["result"] for h, r in rows.items()} == {h: "activated" for h in HOSTS}
    assert {fleet.current(h) for h in HOSTS} == {version_of(v1)}

    # host-a's SD card flipped a byte of the copy begun earlier, keeping its size and time:
    # rsync's quick check does not see it, edge-model's sha256 does
    v2 = renamed(bundle, tmp_path / "v2", "two-")
    planted = fleet.roots["host-a"] / "incoming" / version_of(v2)
    planted.mkdir(parents=True)
    source = v2 / "model_int8.tflite"
    damaged = bytearray(source.read_bytes())
    damaged[100] ^= 0xFF
    (planted / source.name).write_bytes(bytes(damaged))
    shutil.copystat(source, planted / source.name)
    code, rows, err = edge_deploy(fleet, v2, *HOSTS)
    assert code == 1
    assert rows["host-a"]["ok"] is False and "sha256 FAILED" in rows["host-a"]["checks"]
    assert "the sha256 check failed" in rows["host-a"]["result"]
    assert rows["host-b"] == {"host": "host-b", "version": version_of(v2),
                              "checks": "manifest ok, sha256 ok, labels ok, answers ok",
                              "result": "activated", "ok": True, "state": "activated"}
    assert fleet.current("host-a") == version_of(v1)
    assert fleet.current("host-b") == version_of(v2)
    assert "1 of 2 host(s) not updated: host-a" in err
    # the damaged copy was dropped: deploying again copies it whole, and it goes through
    code, rows, err = edge_deploy(fleet, v2, "host-a")
    assert code == 0 and rows["host-a"]["result"] == "activated", err
    assert fleet.current("host-a") == version_of(v2)

    # a model whose answers on the device are not the workstation's, and a host that is down
    v3 = answers_differ(bundle, tmp_path / "v3")
    code, rows, err = edge_deploy(fleet, v3, *HOSTS, "host-down")
    assert code == 1
    for host in HOSTS:
        assert "answers FAILED" in rows[host]["checks"], rows[host]
        assert fleet.current(host) == version_of(v2)
    assert rows["host-down"]["result"].startswith("unreachable:")
    assert "3 of 3 host(s) not updated" in err


def test_edge_deploy_refuses_what_is_not_a_bundle_in_one_line(tmp_path):
    done = subprocess.run([str(BIN / "edge-deploy"), str(tmp_path), "host-a"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "not a bundle" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_the_ansible_role_does_the_same_through_edge_model(fleet, bundle, tmp_path):
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
        f" edge_model_command={BIN / 'edge-model'}\n" for h in HOSTS))

    def play(bundle_dir: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [playbook, "-i", str(inventory), str(REPO / "deploy/ansible/edge-model.yml"),
             "-e", f"bundle={bundle_dir}"], capture_output=True, text=True, timeout=600,
            env={**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False",
                 "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "False"})

    good = renamed(bundle, tmp_path / "v4", "four-")
    done = play(good)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert {fleet.current(h) for h in HOSTS} == {version_of(good)}
    assert "activated" in done.stdout
    again = play(good)  # idempotent: nothing to change the second time
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout[-3000:]
    bad = answers_differ(bundle, tmp_path / "v5", "five-")
    refused = play(bad)
    assert refused.returncode != 0
    assert "the answers check failed" in refused.stdout
    assert {fleet.current(h) for h in HOSTS} == {version_of(good)}
