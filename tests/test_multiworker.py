"""``--strategy multiworker``: TF_CONFIG checks, and two real workers on loopback ports."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.errors import UserError
from train.accelerator import read_tf_config

REPO = Path(__file__).resolve().parents[1]


def _tf_config(cluster: dict, task_type: str = "worker", index: int = 0) -> dict:
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type,
                                                                  "index": index}})}


def test_tf_config_names_the_chief():
    two = {"worker": ["localhost:1111", "localhost:2222"]}
    assert read_tf_config(_tf_config(two, index=0)).is_chief
    assert not read_tf_config(_tf_config(two, index=1)).is_chief
    with_chief = {"chief": ["a:1"], "worker": ["b:1", "c:1"]}
    assert read_tf_config(_tf_config(with_chief, "chief")).is_chief
    task = read_tf_config(_tf_config(with_chief, "worker", 0))
    assert not task.is_chief and task.num_workers == 3 and task.name == "worker0"


@pytest.mark.parametrize("environ, says", [
    ({}, "needs the TF_CONFIG environment variable"),
    ({"TF_CONFIG": "{cluster"}, "not valid JSON"),
    ({"TF_CONFIG": "[1]"}, "must be a JSON object"),
    ({"TF_CONFIG": '{"task": {"type": "worker", "index": 0}}'}, "has no cluster"),
    (_tf_config({"ps": ["a:1"], "worker": ["b:1"]}), "job 'ps'"),
    (_tf_config({"worker": ["a"]}), "'host:port'"),
    (_tf_config({"worker": []}), "non-empty list"),
    (_tf_config({"chief": ["a:1", "b:1"], "worker": ["c:1"]}), "exactly one"),
    ({"TF_CONFIG": '{"cluster": {"worker": ["a:1"]}}'}, "has no task"),
    (_tf_config({"worker": ["a:1"]}, "chief"), "task type 'chief'"),
    (_tf_config({"worker": ["a:1", "b:1"]}, index=2), "task index 2: expected 0 to 1"),
])
def test_bad_tf_config_is_one_clear_line(environ, says):
    with pytest.raises(UserError) as info:
        read_tf_config(environ)
    assert says in str(info.value) and "\n" not in str(info.value)


def test_bad_tf_config_exits_2_before_training(tmp_path, demo_dir, capsys, monkeypatch):
    from train.cli import main

    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["localhost:1"]},
                                                "task": {"type": "worker", "index": 3}}))
    assert main(["--data", str(demo_dir), "--out", str(tmp_path / "run"),
                 "--strategy", "multiworker"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edge-train: error: TF_CONFIG task index 3") and "\n" not in err
    assert not (tmp_path / "run").exists()


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.mark.long
@pytest.mark.slow
def test_two_workers_on_loopback_make_one_run_directory(tmp_path, demo_dir):
    """The same edge-train command on two "machines" (own working and temp folders, own
    TF_CONFIG): both finish, the chief's run directory is complete, the other worker wrote
    nothing there nor left anything in its temp folder."""
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    command = [sys.executable, "-m", "train.cli", "--data", str(demo_dir), "--out", "run",
               "--img-size", "32", "--alpha", "0.35", "--weights", "none", "--epochs", "1",
               "--fine-tune-epochs", "0", "--batch-size", "16", "--seed", "5",
               "--strategy", "multiworker"]
    procs, logs = [], []
    for index in range(2):
        machine = tmp_path / f"machine{index}"
        (machine / "tmp").mkdir(parents=True)
        env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(machine / "tmp"),
               "TF_CPP_MIN_LOG_LEVEL": "2",
               **_tf_config({"worker": workers}, index=index)}
        env.pop("CUDA_VISIBLE_DEVICES", None)
        log = open(machine / "log.txt", "w")  # a file, not a pipe: no worker blocks on output
        logs.append(log)
        procs.append(subprocess.Popen(command, cwd=machine, env=env, stdout=log,
                                      stderr=subprocess.STDOUT))
    deadline = time.time() + 600
    try:
        for proc in procs:
            proc.wait(timeout=max(1, deadline - time.time()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
    output = [(tmp_path / f"machine{i}" / "log.txt").read_text() for i in range(2)]
    for proc, text in zip(procs, output):
        assert proc.returncode == 0, text[-3000:]

    run = tmp_path / "machine0" / "run"
    expected = {"splits.json", "labels.txt", "config.json", "history.csv", "logs",
                "model.keras", "metrics.json", "learning_curves.png"}
    assert {p.name for p in run.iterdir()} == expected  # checkpoints/ removed when done
    device = json.loads((run / "config.json").read_text())["device"]
    assert device == {**device, "strategy": "multiworker", "replicas": 2, "workers": 2}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 1 and metrics["num_train"] > 0
    assert not (tmp_path / "machine1" / "run").exists()
    for index in range(2):
        assert list((tmp_path / f"machine{index}" / "tmp").iterdir()) == []
    assert "worker0 of 2 workers (chief" in output[0] and "worker1 of 2 workers" in output[1]
