"""The command-line pieces ``edge-classify`` and ``edge-capture`` share: ``--camera-size`` and
``--serve`` as argparse types, and where the live view's token comes from (``--serve-token``,
``--serve-token-file``, ``$EDGE_SERVE_TOKEN``)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from common.errors import UsageError
from edge_runtime.live import parse_address
from edge_runtime.sources.camera_spec import parse_size

TOKEN_VARIABLE = "EDGE_SERVE_TOKEN"
"""The environment variable the live view's token may come from (see :func:`serve_token`)."""

log = logging.getLogger(__name__)


def serve_address(text: str) -> tuple[str, int]:
    """``--serve``'s ``[HOST:]PORT`` → ``(host, port)``, as an argparse ``type=``."""
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def camera_size(text: str) -> tuple[int, int]:
    """``--camera-size``'s ``WxH`` → ``(width, height)``, as an argparse ``type=``."""
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def serve_token(args: argparse.Namespace) -> tuple[str | None, str]:
    """The live view's token and where it came from, to name instead of it in the log.

    ``--serve-token`` (where: ``""``, the user typed it), else ``--serve-token-file``'s first
    line (where: the file), else :data:`TOKEN_VARIABLE` (where: the variable), else none.

    Raises:
        UsageError: the file cannot be read, or the file or the variable holds no token.
    """
    if args.serve_token is not None:
        return args.serve_token, ""
    if args.serve_token_file is not None:
        path = Path(args.serve_token_file)
        try:
            lines = path.read_text(encoding="utf-8").strip().splitlines()
            token = lines[0].strip() if lines else ""
            mode = path.stat().st_mode
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise UsageError(f"--serve-token-file {path}: cannot read it ({reason})") from None
        if not token:
            raise UsageError(f"--serve-token-file {path} is empty")
        if mode & 0o077:
            log.warning(f"{path} can be read by other users: chmod 600 {path}")
        return token, str(path)
    token = os.environ.get(TOKEN_VARIABLE)
    if token is None:
        return None, ""
    if not token.strip():
        raise UsageError(f"{TOKEN_VARIABLE} is set but empty")
    return token.strip(), f"${TOKEN_VARIABLE}"
