"""The systemd unit edge-classify runs under, filled in for the user who installs it.

``edge-classify.service`` beside this module (package data) is the one definition of what the
service runs; :func:`render` fills in its ``@NAME@`` placeholders, escaped for systemd.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
from importlib import resources
from pathlib import Path

from common.errors import UsageError
from common.fileio import atomic_write

TEMPLATE_NAME = "edge-classify.service"
UNIT_PATH = Path("/etc/systemd/system/edge-classify.service")
DEFAULT_VENV = "~/edge"
"""The README's virtual environment, in the service user's home."""
DEFAULT_ENV_FILE = "~/.config/edge-classify/serve.env"
TOKEN_VARIABLE = "EDGE_SERVE_TOKEN"
"""What edge-classify reads its --serve token from
(``edge_runtime.commands.camera_flags.TOKEN_VARIABLE``)."""
PLACEHOLDERS = ("USER", "WORKDIR", "ENV_FILE", "EDGE_CLASSIFY", "EDGE_MODEL", "MODEL", "CAMERA",
                "SERVE")


def template() -> str:
    """The unit template's text (package data, so a wheel install has it too)."""
    return resources.files("deploy").joinpath(TEMPLATE_NAME).read_text(encoding="utf-8")


def service_user(name: str | None) -> pwd.struct_passwd:
    """The account the service runs as: ``name``, else SUDO_USER under sudo, else ours.

    Raises:
        UsageError: no such account, or root with nobody named (a camera service has no
            business running as root).
    """
    if name is None:
        if os.geteuid() == 0:
            name = os.environ.get("SUDO_USER")
            if not name or name == "root":
                raise UsageError("run it with sudo from the account that will run the service "
                                 "(or name that account with --user NAME)")
        else:
            return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise UsageError(f"--user {name}: no such account on this machine") from None


def resolve(path: str, home: str) -> Path:
    """``path`` made absolute: ``~`` is the service user's home (not root's under sudo)."""
    if path == "~" or path.startswith("~/"):
        path = home + path[1:]
    return Path(os.path.abspath(os.path.expanduser(path)))


def _setting(value: str) -> str:
    """A value for a unit setting: systemd expands ``%`` specifiers, so ``%`` is written ``%%``."""
    if "\n" in value or value != value.strip():
        raise UsageError(f"{value!r}: a path with a line break or outer spaces cannot go "
                         "in a unit")
    return value.replace("%", "%%")


def _word(value: str) -> str:
    """One word of ExecStart=: ``%``/``$`` escaped, quoted when it holds spaces or quotes."""
    value = _setting(value).replace("$", "$$")
    if value and not re.search(r"[\s\"'\\;]", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(user: str, workdir: Path, edge_classify: Path, model: Path, camera: str,
           serve: str, env_file: Path, text: str | None = None) -> str:
    """The unit for these values: the template's placeholders filled in, escaped for systemd.
    ``edge-model`` (the start's check) is the one beside ``edge_classify``, in the same venv.

    Raises:
        UsageError: a value systemd cannot hold (a line break).
    """
    text = template() if text is None else text
    # the template's opening comment is about the template; the unit says where it came from
    body = text[re.search(r"^\[", text, flags=re.MULTILINE).start():]
    values = {"USER": _setting(user), "WORKDIR": _setting(str(workdir)),
              "ENV_FILE": _setting(str(env_file)), "EDGE_CLASSIFY": _word(str(edge_classify)),
              "EDGE_MODEL": _word(str(Path(edge_classify).with_name("edge-model"))),
              "MODEL": _word(str(model)), "CAMERA": _word(camera), "SERVE": _word(serve)}
    filled = re.sub(r"@([A-Z_]+)@", lambda m: values[m.group(1)], body)
    header = (f"# Written by edge-service install from deploy/{TEMPLATE_NAME} for {user};\n"
              "# run it again to change the model or the options.\n\n")
    return header + filled


def write_private(path: Path, text: str, owner: pwd.struct_passwd | None) -> None:
    """Write ``text`` atomically into a file that is 0600 from its creation (never readable by
    others, not for a moment, whatever the umask), owned by ``owner`` (None: whoever runs this).
    A link at ``path`` is replaced, never followed."""
    def write(tmp: str) -> None:
        os.chmod(tmp, 0o600)  # a umask that took the owner's bits away gives them back
        if owner is not None:
            os.chown(tmp, owner.pw_uid, owner.pw_gid)
        Path(tmp).write_text(text, encoding="utf-8")

    atomic_write(path, write, mode=0o600)


def make_env_file(path: Path, owner: pwd.struct_passwd) -> tuple[bool, str | None]:
    """Create ``path`` holding a random token, chmod 600, owned by ``owner``; an existing file
    (and the token in it) is kept. Returns whether it was created, and a warning if any."""
    if path.exists():
        if path.stat().st_mode & 0o077:
            return False, f"{path} can be read by other users: chmod 600 {path}"
        return False, None
    chown = os.geteuid() == 0  # under sudo: the user's file, not root's
    missing = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=0o700)
        if chown:
            os.chown(folder, owner.pw_uid, owner.pw_gid)
    write_private(path, f"{TOKEN_VARIABLE}={secrets.token_urlsafe(24)}\n",
                  owner if chown else None)
    return True, None


def write_unit(path: Path, text: str) -> None:
    """Write the unit atomically, mode 644 whatever the umask (systemd reads it as root, people
    read it too)."""
    def write(tmp: str) -> None:
        Path(tmp).write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o644)

    atomic_write(path, write)


__all__ = ["DEFAULT_ENV_FILE", "DEFAULT_VENV", "PLACEHOLDERS", "TOKEN_VARIABLE", "UNIT_PATH",
           "make_env_file", "render", "resolve", "service_user", "template",
           "write_unit"]
