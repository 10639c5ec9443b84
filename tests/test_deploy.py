"""The systemd unit in deploy/ stays a command line edge-classify accepts."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import pytest

from edge_runtime.cli import build_parser

# the edge extra alone runs these (no TensorFlow): make pi-check runs them on arm64
pytestmark = pytest.mark.edge

UNIT = Path(__file__).resolve().parents[1] / "deploy" / "edge-classify.service"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    # systemd continues a line with a trailing backslash
    parser.read_string(UNIT.read_text().replace("\\\n", " "))
    return parser


def test_the_unit_runs_a_valid_headless_serving_command():
    unit = _unit()
    command = shlex.split(unit["Service"]["ExecStart"])
    assert command[0].endswith("/edge-classify")
    args = build_parser().parse_intermixed_args(command[1:])
    assert args.camera is not None and args.headless and args.serve == ("127.0.0.1", 8080)


def test_the_unit_does_not_restart_on_a_usage_error():
    service = _unit()["Service"]
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"].split() == ["2"]
