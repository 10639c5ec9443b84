"""edge-deploy's rollout (deploy/fleet.py) without a network: waves that wait for the last one
and stop at a failure, each host's row, the device's JSON read, ssh and rsync given no host they
could take for an option. A stand-in deploys to one host; make deploy-check does it for real."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from deploy import deploy_cli
from deploy.fleet import DeployConfig, HostResult, deploy, deploy_host, waves

pytestmark = pytest.mark.edge

SETTINGS = DeployConfig(jobs=8)


def test_waves_group_the_hosts_in_order():
    hosts = ["a", "b", "c", "d", "e"]
    assert waves(hosts) == [hosts]
    assert waves(hosts, 2) == [["a", "b"], ["c", "d"], ["e"]]
    assert waves(hosts, canary=True) == [["a"], ["b", "c", "d", "e"]]
    assert waves(hosts, 3, canary=True) == [["a"], ["b", "c", "d"], ["e"]]
    assert waves(["a"], 5, canary=True) == [["a"]]
    assert waves([], 2) == []


class StandIn:
    """Deploys to nobody: each host takes a little time and fails if named in ``failing``;
    records when each started and ended."""

    def __init__(self, failing: set[str], refusing: set[str] = frozenset()) -> None:
        self.failing, self.refusing = failing, refusing
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.lock = threading.Lock()

    def __call__(self, host: str, bundle: Path, version: str, settings: DeployConfig) -> HostResult:
        with self.lock:
            self.started[host] = time.monotonic()
        time.sleep(0.02)
        with self.lock:
            self.ended[host] = time.monotonic()
        if host in self.refusing:
            return HostResult(host, version, "signature FAILED", "refused: …", False, "refused")
        if host in self.failing:
            return HostResult(host, version, "-", "unreachable: …", False, "failed")
        return HostResult(host, version, "manifest ok", "activated", True, "activated")


def test_the_next_wave_starts_only_after_the_last_one_and_a_failure_stops_the_rollout():
    hosts = ["a", "b", "c", "d", "e", "f"]
    stand_in = StandIn(failing={"c"})
    seen = []
    rows = deploy(Path("bundle"), hosts, "v1", SETTINGS, on_done=seen.append, wave=2,
                  deploy_one=stand_in)
    assert [r.host for r in rows] == hosts
    assert [r.state for r in rows] == ["activated", "activated", "failed", "activated",
                                       "not reached", "not reached"]
    # wave 2 (c, d) ran whole, in parallel: c's failure does not stop d of its own wave
    assert set(stand_in.started) == {"a", "b", "c", "d"}
    assert min(stand_in.started[h] for h in "cd") >= max(stand_in.ended[h] for h in "ab")
    assert rows[4].result == rows[5].result == \
        "not reached: the rollout stopped after wave 2 of 3 (c failed)"
    assert not rows[4].ok and rows[4].checks == "-"
    assert sorted(r.host for r in seen) == hosts  # every row reported as it is settled


def test_a_canary_that_fails_stops_every_other_host():
    stand_in = StandIn(failing=set(), refusing={"a"})
    rows = deploy(Path("bundle"), ["a", "b", "c"], "v1", SETTINGS, canary=True,
                  deploy_one=stand_in)
    assert list(stand_in.started) == ["a"]
    assert [r.state for r in rows] == ["refused", "not reached", "not reached"]


def test_without_waves_a_failure_stops_no_one():
    stand_in = StandIn(failing={"a", "c"})
    rows = deploy(Path("bundle"), ["a", "b", "c", "d"], "v1", DeployConfig(jobs=1),
                  deploy_one=stand_in)
    assert set(stand_in.started) == {"a", "b", "c", "d"}
    assert [r.state for r in rows] == ["failed", "activated", "failed", "activated"]


@pytest.mark.parametrize("host", ["-oProxyCommand=touch /tmp/owned", "-p2222", ""])
def test_a_host_that_ssh_would_take_for_an_option_is_refused(host, bundle, capsys):
    from common.errors import UsageError

    stand_in = StandIn(set())
    with pytest.raises(UsageError, match="cannot start with '-'"):
        deploy(Path("bundle"), ["pi", host], "v1", SETTINGS, deploy_one=stand_in)
    assert not stand_in.started
    code = deploy_cli.main([str(bundle), "pi", "--", host])
    err = capsys.readouterr().err
    assert code == 2 and "cannot start with '-'" in err and len(err.strip().splitlines()) == 1


class FakeRun:
    """``subprocess.run`` for :func:`deploy_host`: what the device says to each step."""

    def __init__(self, activate_code: int, report: dict, stderr: str = "") -> None:
        self.activate_code, self.report, self.stderr = activate_code, report, stderr
        self.commands: list[list[str]] = []

    def __call__(self, command, **kwargs):
        self.commands.append(command)
        if command[0] == "rsync":
            return subprocess.CompletedProcess(command, 0, "", "")
        if " incoming " in command[-1]:
            return subprocess.CompletedProcess(command, 0, "/home/pi/edge-models/incoming/v1\n",
                                               "")
        return subprocess.CompletedProcess(command, self.activate_code,
                                           json.dumps(self.report) + "\n", self.stderr)


@pytest.mark.parametrize("code, report, state, ok", [
    (0, {"version": "v1", "result": "activated", "checks": [{"name": "manifest", "ok": True}]},
     "activated", True),
    (0, {"version": "v1", "result": "already current", "checks": []}, "already current", True),
    # the device's commit step, where there is one: switched, but never taken up
    (0, {"version": "v1", "result": "activated", "committed": False,
         "checks": [{"name": "manifest", "ok": True}]}, "failed", False),
    (0, {"version": "v1", "result": "activated", "committed": True, "checks": []},
     "activated", True),
    (1, {"version": "v1", "result": "refused",
         "checks": [{"name": "signature", "ok": False}]}, "refused", False),
])
def test_each_host_row_says_where_it_stands(monkeypatch, code, report, state, ok):
    fake = FakeRun(code, report, "edge-model: the device's last line\n")
    monkeypatch.setattr(subprocess, "run", fake)
    row = deploy_host("pi-kitchen", Path("/b"), "v1", SETTINGS)
    assert (row.state, row.ok) == (state, ok)
    if state == "refused":
        assert row.checks == "signature FAILED"
        assert row.result == "refused: edge-model: the device's last line"
    # the host comes after "--": ssh reads no option from it
    ssh = [c for c in fake.commands if c[0] == "ssh"]
    assert len(ssh) == 2 and all(c[c.index("--") + 1] == "pi-kitchen" for c in ssh)
    assert all(c.count("--") == 1 for c in ssh)
