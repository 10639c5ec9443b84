"""Running at boot: the unit template deploy/edge-classify.service stays a command line
edge-classify accepts, and ``edge-service install`` writes it for the user who installs it, in
a form systemd accepts (``systemd-analyze verify``, watchdog included), with the live view's
token kept out of it."""

from __future__ import annotations

import configparser
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import service_cli
from deploy import unit as unit_module
from edge_runtime.commands.classify import build_parser, camera_options, check_inputs

# the edge extra alone runs these (no TensorFlow): make pi-check runs them on arm64
pytestmark = pytest.mark.edge

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "deploy/edge-classify.service"


def parse_unit(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keys keep their case
    # systemd continues a line with a trailing backslash
    parser.read_string(text.replace("\\\n", " "))
    return parser


def exec_start(unit: configparser.ConfigParser) -> list[str]:
    """ExecStart= as the words systemd passes on: quotes removed, ``%%`` and ``$$`` undone."""
    words = shlex.split(unit["Service"]["ExecStart"])
    return [w.replace("%%", "%").replace("$$", "$") for w in words]


def example_unit(**changes) -> str:
    values = {"user": "alice", "workdir": Path("/home/alice"),
              "edge_classify": Path("/home/alice/edge/bin/edge-classify"),
              "model": Path("/home/alice/pets/model_int8.tflite"), "camera": "auto",
              "serve": "127.0.0.1:8080",
              "env_file": Path("/home/alice/.config/edge-classify/serve.env")}
    return unit_module.render(**{**values, **changes})


# ----------------------------------------------------------------------------- the unit

def test_the_unit_runs_a_valid_headless_serving_command(monkeypatch):
    unit = parse_unit(example_unit())
    command = exec_start(unit)
    assert command[0] == "/home/alice/edge/bin/edge-classify"
    args = build_parser().parse_intermixed_args(command[1:])
    assert args.model == "/home/alice/pets/model_int8.tflite"
    # the token never goes on the command line (ps shows it): systemd hands it over
    assert args.serve_token is None and args.serve_token_file is None
    monkeypatch.setenv("EDGE_SERVE_TOKEN", "from-the-environment-file")
    check_inputs(args)  # what edge-classify checks before it loads anything
    options = camera_options(args)
    assert options.spec.kind == "auto" and options.headless
    assert (options.serve.host, options.serve.port) == ("127.0.0.1", 8080)
    assert options.serve.token_source == "$EDGE_SERVE_TOKEN"
    # a service: a camera still starting is waited for; the journal gets a line a minute
    assert options.wait_s >= 30 and options.summary_every_s >= 30 and not options.json
    assert options.monitor  # a record a minute in the data root, for the drift report
    assert unit["Service"]["EnvironmentFile"] == "-/home/alice/.config/edge-classify/serve.env"
    assert unit["Service"]["User"] == "alice"
    assert unit["Service"]["WorkingDirectory"] == "/home/alice"
    assert "@" not in example_unit()  # every placeholder filled in


def test_the_unit_does_not_restart_on_a_usage_error():
    service = parse_unit(example_unit())["Service"]
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"].split() == ["2"]
    # systemctl stop ends a camera run with 0 (tests/test_edge_cli.py pins it): nothing to add
    assert "SuccessExitStatus" not in service


def test_the_template_is_the_one_definition():
    assert unit_module.template() == UNIT.read_text()
    assert sorted(p.name for p in UNIT.parent.glob("*.service")) == [UNIT.name]
    placeholders = set(re.findall(r"@([A-Z_]+)@", UNIT.read_text()))
    assert placeholders == set(unit_module.PLACEHOLDERS)


def test_the_unit_checks_the_model_s_store_before_each_start():
    """ExecStartPre= is edge-model check --fallback on the very model ExecStart= runs."""
    from deploy.model_cli import build_parser as edge_model_parser

    unit = parse_unit(example_unit())
    words = shlex.split(unit["Service"]["ExecStartPre"])
    assert words[0] == "/home/alice/edge/bin/edge-model"
    args = edge_model_parser().parse_args(words[1:])
    assert (args.command, args.fallback) == ("check", True)
    assert args.model == exec_start(unit)[exec_start(unit).index("--model") + 1]


def test_the_unit_is_watched_and_reloads():
    service = parse_unit(example_unit())["Service"]
    # systemd restarts a service whose frames stopped (edge_runtime/stream/sdnotify.py notifies)
    assert service["Type"] == "notify" and int(service["WatchdogSec"]) > 0
    # the camera wait (60 s) fits before READY=1 is due
    assert int(service["TimeoutStartSec"]) > 60 + 30
    # the AI Camera's upload is watched by a child process (edge_runtime/stream/upload_watch.py),
    # whose WATCHDOG=1 and EXTEND_TIMEOUT_USEC= systemd takes only with this
    assert service["NotifyAccess"] == "all"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"


# ----------------------------------------------------------------------------- edge-service

def this_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


@pytest.fixture()
def home(tmp_path) -> Path:
    """A home with a venv that has edge-classify and a model, its paths with a space and a %."""
    home = tmp_path / "home of 100% alice"
    (home / "edge/bin").mkdir(parents=True)
    for name in ("edge-classify", "edge-model"):
        script = home / "edge/bin" / name
        script.write_text("#!/bin/sh\n")
        script.chmod(0o755)
    (home / "pets").mkdir()
    (home / "pets/model_int8.tflite").write_bytes(b"TFL3")
    return home


def install(home: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``edge-service install`` in a process of its own."""
    argv = [sys.executable, "-m", "deploy.service_cli", "install", "--user", this_user(),
            "--workdir", str(home), "--venv", str(home / "edge"),
            "--model", str(home / "pets/model_int8.tflite"),
            "--env-file", str(home / ".config/edge-classify/serve.env"), *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("network", [False, True])
def test_the_written_unit_passes_systemd_analyze_verify(home, tmp_path, network):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here (apt install systemd): it is "
                    "the check that systemd accepts the unit")
    target = tmp_path / "units" / "edge-classify.service"
    target.parent.mkdir()
    done = install(home, "--output", str(target), *(["--network"] if network else []))
    assert done.returncode == 0, done.stderr
    verify = subprocess.run([analyze, "verify", str(target)], capture_output=True, text=True,
                            timeout=120)
    complaints = [line for line in (verify.stdout + verify.stderr).splitlines()
                  if target.name in line]
    assert verify.returncode == 0 and complaints == [], verify.stdout + verify.stderr
    # the paths came through systemd's quoting and % escaping whole
    command = exec_start(parse_unit(target.read_text()))
    assert command[:3] == [str(home / "edge/bin/edge-classify"), "--model",
                           str(home / "pets/model_int8.tflite")]
    args = build_parser().parse_intermixed_args(command[1:])
    assert args.serve == ("0.0.0.0" if network else "127.0.0.1", 8080)


def test_network_mode_keeps_the_token_in_a_private_file_and_out_of_the_unit(home, tmp_path):
    target = tmp_path / "edge-classify.service"
    env_file = home / ".config/edge-classify/serve.env"
    done = install(home, "--network", "--output", str(target))
    assert done.returncode == 0, done.stderr
    token = re.fullmatch(r"EDGE_SERVE_TOKEN=([\w-]{24,})\n", env_file.read_text()).group(1)
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert env_file.parent.stat().st_mode & 0o077 == 0
    assert token not in target.read_text() + done.stdout + done.stderr
    # again: the token and the unit are kept as they are
    again = install(home, "--network", "--output", str(target))
    assert again.returncode == 0 and "already this unit" in again.stderr
    assert env_file.read_text() == f"EDGE_SERVE_TOKEN={token}\n"
    # another model: the new unit, the previous one kept beside it
    previous = target.read_text()
    (home / "pets/other.tflite").write_bytes(b"TFL3")
    third = install(home, "--network", "--output", str(target), "--model",
                    str(home / "pets/other.tflite"))
    assert third.returncode == 0, third.stderr
    assert (tmp_path / "edge-classify.service.bak").read_text() == previous
    assert "other.tflite" in target.read_text()


def test_the_token_file_is_private_from_its_creation_and_follows_no_link(tmp_path, monkeypatch):
    # every file created on the way, its mode read the moment it exists (before a byte of the
    # token is written), under the loosest umask there is
    created: dict[str, int] = {}
    real_open = os.open

    def watched_open(path, flags, mode=0o777, *, dir_fd=None):
        fd = real_open(path, flags, mode, dir_fd=dir_fd)
        if flags & os.O_CREAT:
            created[os.fspath(path)] = os.fstat(fd).st_mode & 0o777
        return fd

    owner = pwd.getpwuid(os.geteuid())
    env_file = tmp_path / "config" / "serve.env"
    elsewhere = tmp_path / "elsewhere.env"
    env_file.parent.mkdir()
    env_file.symlink_to(elsewhere)  # a link left there, pointing where nothing is yet
    monkeypatch.setattr(os, "open", watched_open)
    umask = os.umask(0)
    try:
        made, warning = unit_module.make_env_file(env_file, owner)
    finally:
        os.umask(umask)
        monkeypatch.undo()
    assert made and warning is None
    assert created and all(mode == 0o600 for mode in created.values()), created
    assert not env_file.is_symlink() and env_file.stat().st_mode & 0o777 == 0o600
    assert env_file.read_text().startswith(f"{unit_module.TOKEN_VARIABLE}=")
    assert not elsewhere.exists()  # the link was replaced, not followed


def test_under_sudo_the_unit_is_for_the_user_who_ran_sudo(home, monkeypatch, capsys):
    module = service_cli
    alice = pwd.struct_passwd(("alice", "x", 4242, 4242, "", str(home), "/bin/bash"))
    monkeypatch.setattr(unit_module.os, "geteuid", lambda: 0)
    monkeypatch.setattr(unit_module.pwd, "getpwnam",
                        lambda name: alice if name == "alice" else pwd.getpwnam(name))
    monkeypatch.setenv("SUDO_USER", "alice")
    # "~" is alice's home, not root's; the venv is the README's ~/edge, hers
    assert module.main(["install", "--model", "~/pets/model_int8.tflite", "--print"]) == 0
    unit = parse_unit(capsys.readouterr().out)
    assert unit["Service"]["User"] == "alice"
    assert unit["Service"]["WorkingDirectory"].replace("%%", "%") == str(home)
    assert exec_start(unit)[:3] == [str(home / "edge/bin/edge-classify"), "--model",
                                    str(home / "pets/model_int8.tflite")]
    # root without sudo, naming nobody: refused, not a unit that runs the camera as root
    monkeypatch.delenv("SUDO_USER")
    assert module.main(["install", "--model", "~/pets/model_int8.tflite", "--print"]) == 2
    assert "--user NAME" in capsys.readouterr().err


@pytest.mark.parametrize("change, message", [
    (["--model", "/nowhere/model.tflite"], "no such file"),
    (["--venv", "/nowhere/venv"], "/nowhere/venv/bin/edge-classify is not there"),
    (["--workdir", "/nowhere"], "no such folder"),
    (["--user", "no-such-user-here"], "no such account"),
    (["--port", "0"], "1-65535"),
])
def test_install_usage_errors_are_one_line_and_exit_2(home, change, message):
    done = install(home, "--print", *change)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and done.stdout == ""
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr


def test_installing_without_root_says_to_use_sudo(home, monkeypatch, tmp_path, capsys):
    module = service_cli
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    monkeypatch.setattr(module, "UNIT_PATH", locked / "edge-classify.service")
    access = os.access  # root may write anywhere: pretend it may not write there
    monkeypatch.setattr(module.os, "access",
                        lambda path, mode: Path(path) != locked and access(path, mode))
    code = module.main(["install", "--user", this_user(), "--workdir", str(home), "--venv",
                        str(home / "edge"), "--model", str(home / "pets/model_int8.tflite")])
    assert code == 2 and not (locked / "edge-classify.service").exists()
    assert "run it with sudo" in capsys.readouterr().err


def test_without_model_the_service_runs_the_int8_file_of_the_current_version(tmp_path):
    """The one rule (deploy/checks.py SERVICE_VARIANT): the store never makes current a bundle
    without int8, and the unit runs current's int8 file, through the link."""
    from common.errors import UsageError
    from edge_runtime.manifest import InputSpec, Manifest, Variant

    home = tmp_path / "home"
    with pytest.raises(UsageError, match="edge-model activate BUNDLE_DIR first"):
        service_cli._store_model(str(home))
    version = home / "edge-models" / "versions" / "3f9c0a51e2b4"
    version.mkdir(parents=True)
    int8 = Variant(file="model_int8.tflite", bytes=4, input_dtype="uint8", output_dtype="uint8",
                   accuracy=0.9, agreement=0.9, max_abs_diff=0.1)
    Manifest(InputSpec(8, 8), ("a", "b"), {"int8": int8}).save(version)
    (home / "edge-models" / "current").symlink_to("versions/3f9c0a51e2b4")
    assert service_cli._store_model(str(home)) == \
        home / "edge-models" / "current" / "model_int8.tflite"
