"""edge-deploy and the Ansible role against real sshd on this machine: two "hosts" (two sshd on
two high ports, each with its own versions folder), a key made here.

Each sshd runs as a child of the test (``sshd -D``) with its own configuration and host key, and
is killed at the end. Host keys are checked as on a real fleet: the test writes a known_hosts
from the sshd's keys and ssh runs with ``StrictHostKeyChecking yes``. Where sshd, rsync or ansible-playbook cannot be had, the tests skip
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
from tests.bundle_variants import answers_differ, renamed, slim

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
        self.known_hosts = folder / "known_hosts"

    def start(self) -> Fleet:
        user = pwd.getpwuid(os.geteuid()).pw_name
        for name in ("host_key", "client_key", "impostor_key", "signer", "stranger"):
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
        # what a fleet's known_hosts says: each sshd's host key under [address]:port; and a
        # name whose recorded key is another one (a host that is not who it claims to be)
        host_key = (self.folder / "host_key.pub").read_text().split()[:2]
        impostor = (self.folder / "impostor_key.pub").read_text().split()[:2]
        self.known_hosts.write_text("".join(
            f"[127.0.0.1]:{self.ports[h]} {' '.join(host_key)}\n" for h in HOSTS)
            + f"impostor {' '.join(impostor)}\n")
        self.ports["host-impostor"] = self.ports["host-a"]
        self.ssh_config.write_text("".join(
            f"Host {h}\n  HostName 127.0.0.1\n  Port {p}\n  User {user}\n"
            f"  IdentityFile {self.key}\n  IdentitiesOnly yes\n  StrictHostKeyChecking yes\n"
            f"  UserKnownHostsFile {self.known_hosts}\n  GlobalKnownHostsFile /dev/null\n"
            + ("  HostKeyAlias impostor\n" if h == "host-impostor" else "")
            + "  LogLevel ERROR\n"
            for h, p in self.ports.items()))
        return self

    def trust(self, host: str, key: str | None) -> None:
        """``key``'s public half as the host's allowed_signers (None: no file, no checks)."""
        path = self.roots[host] / "allowed_signers"
        path.unlink(missing_ok=True)
        if key is not None:
            self.roots[host].mkdir(parents=True, exist_ok=True)
            public = (self.folder / f"{key}.pub").read_text().split()[:2]
            path.write_text(f"{key}@fleet {' '.join(public)}\n")

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
    """edge-deploy to ``hosts`` (flags among them too); the rows by host, and stderr."""
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
                              "checks": "manifest ok, copy ok, sha256 ok, labels ok, answers ok, "
                                        "commit ok",
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


def test_stage_then_promote_if_where_the_shadow_agreed(fleet, bundle, tmp_path):
    live = renamed(slim(bundle, tmp_path / "slim"), tmp_path / "live", "live-")
    code, _, err = edge_deploy(fleet, live, *HOSTS)
    assert code == 0, err
    candidate = renamed(slim(bundle, tmp_path / "slim2"), tmp_path / "candidate", "cand-")
    code, rows, err = edge_deploy(fleet, candidate, *HOSTS, "--stage")
    assert code == 0 and {r["state"] for r in rows.values()} == {"staged"}, err
    for host in HOSTS:
        assert os.readlink(fleet.roots[host] / "staged").endswith(version_of(candidate))
        assert fleet.current(host) == version_of(live)

    # what each host's service reported of its shadow (a process that has ended: promote does
    # not wait for it to commit)
    ended = subprocess.Popen(["true"])
    ended.wait()
    for host, agreement in (("host-a", 0.97), ("host-b", 0.6)):
        (fleet.roots[host] / "status.json").write_text(json.dumps(
            {"version": version_of(live), "pid": ended.pid, "frames": 900, "time": time.time(),
             "model": str(fleet.roots[host] / "current" / "model_int8.tflite"),
             "shadow": {"version": version_of(candidate), "live": version_of(live),
                        "frames": 800, "agreement": agreement}}))
    code, rows, err = edge_deploy(fleet, candidate, *HOSTS, "--promote-if", "0.95")
    assert code == 1, err
    assert rows["host-a"]["ok"] and rows["host-a"]["result"] == "activated", rows
    assert (rows["host-b"]["ok"], rows["host-b"]["agreement"]) == (False, 0.6)
    assert "below --min-agreement 0.95" in rows["host-b"]["result"]
    assert fleet.current("host-a") == version_of(candidate)
    assert fleet.current("host-b") == version_of(live)


def signed(fleet: Fleet, bundle: Path, out: Path, prefix: str, key: str = "signer") -> Path:
    """A copy of the bundle (another version), signed with one of the fleet's keys."""
    copy = renamed(bundle, out, prefix)
    subprocess.run([str(BIN / "edge-model"), "sign", str(copy), "--key",
                    str(fleet.folder / key)], check=True, capture_output=True, timeout=60)
    return copy


def test_a_signed_bundle_rolls_out_in_waves_and_stops_where_a_host_refuses(fleet, bundle,
                                                                           tmp_path):
    before = {h: fleet.current(h) for h in HOSTS}
    # host-a trusts only another key: it refuses; host-b, in the next wave, is never reached
    fleet.trust("host-a", "stranger")
    fleet.trust("host-b", "signer")
    try:
        v6 = signed(fleet, bundle, tmp_path / "v6", "six-")
        code, rows, err = edge_deploy(fleet, v6, *HOSTS, "--wave", "1")
        assert code == 1, err
        assert "in 2 waves of 1, 1" in err
        assert rows["host-a"]["state"] == "refused"
        assert rows["host-a"]["checks"] == "signature FAILED"
        assert "signed by a key this device does not trust" in rows["host-a"]["result"]
        assert rows["host-b"]["state"] == "not reached" and rows["host-b"]["checks"] == "-"
        assert rows["host-b"]["result"] == ("not reached: the rollout stopped after wave 1 of 2 "
                                            "(host-a failed)")
        assert {h: fleet.current(h) for h in HOSTS} == before
        assert not (fleet.roots["host-b"] / "incoming" / version_of(v6)).exists()  # untouched
        # host-a trusts the signer now: wave 1 activates, so wave 2 goes, and each device
        # checked the signature that came with the copy
        fleet.trust("host-a", "signer")
        code, rows, err = edge_deploy(fleet, v6, *HOSTS, "--wave", "1")
        assert code == 0, err
        for host in HOSTS:
            assert rows[host]["state"] == "activated", rows[host]
            assert rows[host]["checks"].startswith("signature ok, manifest ok")
            assert fleet.current(host) == version_of(v6)
            installed = fleet.roots[host] / "versions" / version_of(v6) / "manifest.json.sig"
            assert installed.read_bytes() == (v6 / "manifest.json.sig").read_bytes()
    finally:
        for host in HOSTS:
            fleet.trust(host, None)


def test_ssh_checks_host_keys(fleet, bundle):
    # host-impostor is host-a's sshd under a name known_hosts records with another key
    code, rows, err = edge_deploy(fleet, bundle, "host-impostor")
    assert code == 1 and rows["host-impostor"]["state"] == "failed"
    assert rows["host-impostor"]["result"].startswith("unreachable:")
    assert "Host key verification failed" in rows["host-impostor"]["result"]


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

    def signers(*keys: str) -> Path:
        path = tmp_path / f"allowed_signers-{'-'.join(keys)}"
        path.write_text("".join(f"{key}@fleet " + " ".join(
            (fleet.folder / f"{key}.pub").read_text().split()[:2]) + "\n" for key in keys))
        return path

    # host-c is host-b's sshd with a versions folder of its own; host-a trusts the signer only,
    # host-b and host-c a stranger too (each host's allowed_signers, installed by the role)
    trusted = {"host-a": signers("signer"), "host-b": signers("signer", "stranger"),
               "host-c": signers("signer", "stranger")}
    fleet.roots["host-c"] = fleet.folder / "host-c" / "models"
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("".join(
        f"{h} ansible_host=127.0.0.1 ansible_port={fleet.ports[h if h in HOSTS else 'host-b']} "
        f"ansible_ssh_private_key_file={fleet.key} ansible_python_interpreter={sys.executable} "
        f"ansible_ssh_common_args='-o StrictHostKeyChecking=yes "
        f"-o UserKnownHostsFile={fleet.known_hosts} -o GlobalKnownHostsFile=/dev/null'"
        f" edge_model_command={BIN / 'edge-model'} edge_model_root={fleet.roots[h]}"
        f" edge_allowed_signers={trusted[h]}\n" for h in trusted))

    def play(bundle_dir: Path, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [playbook, "-i", str(inventory), str(REPO / "deploy/ansible/edge-model.yml"),
             "-e", f"bundle={bundle_dir}", *extra], capture_output=True, text=True, timeout=600,
            env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "False"})

    try:
        # the role installs the keys each device trusts, then the signed bundle activates
        good = signed(fleet, bundle, tmp_path / "v4", "four-")
        done = play(good, "--limit", ",".join(HOSTS))
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        assert {fleet.current(h) for h in HOSTS} == {version_of(good)}
        assert "activated" in done.stdout
        for host in HOSTS:
            assert (fleet.roots[host] / "allowed_signers").read_text() == \
                trusted[host].read_text()
        again = play(good, "--limit", ",".join(HOSTS))  # idempotent: nothing changes again
        assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout[-3000:]
        # in waves of two (serial: 2, max_fail_percentage: 0), a bundle the stranger signed:
        # host-a refuses it, host-b of the same wave takes it, host-c is never reached
        bad = signed(fleet, bundle, tmp_path / "v5", "five-", key="stranger")
        refused = play(bad, "-e", "edge_wave=2")
        assert refused.returncode != 0
        assert "the signature check failed" in refused.stdout
        assert fleet.current("host-a") == version_of(good)
        assert fleet.current("host-b") == version_of(bad)
        assert fleet.current("host-c") is None
        assert not (fleet.roots["host-c"] / "incoming").exists()
        assert "host-c" not in refused.stdout.split("PLAY RECAP")[0], refused.stdout[-3000:]
    finally:
        for host in HOSTS:
            fleet.trust(host, None)
