"""The docs against the code: flag tables and the command-line contract against each command's
parser, exit-code tables against ``common/errors.py``. No TensorFlow: parsers only.

What the docs must follow (a doc that breaks the format fails here, saying where):

- **The command-line contract** (docs/ARCHITECTURE.md): the fenced block after the line
  ``<!-- command-line contract -->``. One entry per command: a line that starts at column 0 with
  the command — a console script of pyproject.toml's ``[project.scripts]``, followed by its
  subcommand if it has subcommands (``edge-tune     probe``), or the path of a script in this
  repository that has a ``build_parser()`` (``deploy/install-service``) — and indented
  continuation lines. Every long flag the parser takes is written out as ``--name`` (an on/off
  flag both ways: ``--mixed-precision``, ``--no-mixed-precision``), and no other; a command's
  entries are pooled (``edge-classify --list-cameras`` may be an entry of its own). ``--help``,
  ``--version``, ``--verbose`` and ``--quiet`` are said once, under the block. Every console
  script must have an entry: a new one fails this test until it is documented.
- **A flag table** (any ``.md`` file here): the line ``<!-- flags: COMMAND all -->`` (every flag
  of COMMAND is in the table) or ``<!-- flags: COMMAND some -->`` (a selection) right before a
  Markdown table; COMMAND is written as in the contract (``edge-tune search``). Every ``--name``
  anywhere in the table must be a flag of COMMAND. A table whose first header cell is "flag"
  without such a line fails.
- **An exit-code table**: the line ``<!-- exit-codes -->`` right before a Markdown table whose
  first column is the code; its codes must be exactly the ``EXIT_*`` values of
  ``common/errors.py`` (whose docstring table is checked too).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import importlib.util
import re
from pathlib import Path

import pytest

from common import errors

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
COMMON_FLAGS = {"--help", "--version", "--verbose", "--quiet"}
"""Said once, under the contract block, for every command."""
CONTRACT_MARKER = "<!-- command-line contract -->"
FLAGS_MARKER = re.compile(r"<!--\s*flags:\s*(\S+(?: [a-z][a-z0-9-]*)?)\s+(all|some)\s*-->")
EXIT_MARKER = "<!-- exit-codes -->"
FLAG = re.compile(r"(?<![\w-])--[a-z0-9][a-z0-9-]*")


def console_scripts() -> dict[str, str]:
    """``[project.scripts]``: command name → ``module:function``."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["scripts"]


def _load_parser(command: str) -> argparse.ArgumentParser:
    """The parser of a console script or a repository script, from its ``build_parser()``."""
    scripts = console_scripts()
    if command in scripts:
        module = importlib.import_module(scripts[command].split(":")[0])
    else:
        path = ROOT / command
        assert path.is_file(), f"{command!r} is neither a console script nor a file here"
        loader = importlib.machinery.SourceFileLoader("_doc_checked_" + path.name.replace("-", "_"),
                                                      str(path))
        spec = importlib.util.spec_from_loader(loader.name, loader)
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
    assert hasattr(module, "build_parser"), f"{command}: its module has no build_parser()"
    return module.build_parser()


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings
            if option.startswith("--")}


def parser_flags(command: str) -> set[str]:
    """Every long flag of ``command`` ("edge-train", "edge-tune search"), common ones left out."""
    name, _, sub = command.partition(" ")
    parser = _load_parser(name)
    if sub:
        subs = _subcommands(parser)
        assert sub in subs, f"{name} has no subcommand {sub!r} (it has {sorted(subs)})"
        parser = subs[sub]
    return _flags(parser) - COMMON_FLAGS


def documented_commands() -> list[str]:
    """Every command whose flags are checked: the console scripts, each subcommand apart."""
    commands = []
    for name in console_scripts():
        subs = _subcommands(_load_parser(name))
        commands += [f"{name} {sub}" for sub in subs] if subs else [name]
    return commands


def contract() -> dict[str, set[str]]:
    """The contract block: command → the flags its entries name."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    assert CONTRACT_MARKER in text, f"docs/ARCHITECTURE.md lost the line {CONTRACT_MARKER}"
    after = text.split(CONTRACT_MARKER, 1)[1]
    block = re.search(r"^```[^\n]*\n(.*?)^```", after, re.S | re.M)
    assert block, f"no fenced block after {CONTRACT_MARKER}"
    entries: dict[str, set[str]] = {}
    current = None
    for line in block.group(1).splitlines():
        if line and not line[0].isspace():
            words = line.split()
            current = words[0]
            if len(words) > 1 and re.fullmatch(r"[a-z][a-z0-9-]*", words[1]):
                current += " " + words[1]  # a subcommand (checked against the parser below)
            entries.setdefault(current, set())
        assert current is not None, f"the contract block starts with an indented line: {line!r}"
        entries[current] |= set(FLAG.findall(line))
    return entries


def _contract_key(entries: dict[str, set[str]], key: str) -> str:
    # "edge-classify --list-cameras" is edge-classify; "edge-tune probe" stays itself
    name, _, sub = key.partition(" ")
    return key if sub and sub in _subcommands(_load_parser(name)) else name


def _pooled_contract() -> dict[str, set[str]]:
    pooled: dict[str, set[str]] = {}
    entries = contract()
    for key, flags in entries.items():
        pooled.setdefault(_contract_key(entries, key), set()).update(flags)
    return pooled


def _check_contract_entry(command: str, documented: set[str]) -> None:
    documented = documented - COMMON_FLAGS
    actual = parser_flags(command)
    assert not actual - documented, (f"{command}: flags missing from docs/ARCHITECTURE.md's "
                                     f"command-line contract: {sorted(actual - documented)}")
    assert not documented - actual, (f"{command}: the command-line contract names flags it "
                                     f"does not take: {sorted(documented - actual)}")


@pytest.mark.parametrize("command", documented_commands())
def test_the_contract_names_exactly_each_console_scripts_flags(command):
    pooled = _pooled_contract()
    assert command in pooled, (f"{command} is a console script (pyproject.toml) missing from "
                               "docs/ARCHITECTURE.md's command-line contract")
    _check_contract_entry(command, pooled[command])


def test_the_contracts_other_entries_are_scripts_with_those_flags():
    scripts = set(documented_commands())
    others = {command: flags for command, flags in _pooled_contract().items()
              if command not in scripts}
    for command, flags in others.items():
        _check_contract_entry(command, flags)  # a file of this repository with build_parser()


def _table_after(lines: list[str], index: int) -> list[str]:
    """The Markdown table's lines after ``lines[index]`` (blank lines before it skipped)."""
    start = index + 1
    while start < len(lines) and not lines[start].strip():
        start += 1
    end = start
    while end < len(lines) and lines[end].lstrip().startswith("|"):
        end += 1
    return lines[start:end]


def flag_tables() -> list[tuple[str, str, bool, list[str]]]:
    """(where, command, complete, table lines) for every marked flag table."""
    found = []
    for doc in DOCS:
        lines = doc.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if match := FLAGS_MARKER.search(line):
                found.append((f"{doc.relative_to(ROOT)}:{i + 1}", match.group(1),
                              match.group(2) == "all", _table_after(lines, i)))
    return found


def test_the_docs_have_flag_tables():
    # the README's and training.md's at least: a marker lost in an edit must not empty the test
    where = {w.split(":")[0] for w, *_ in flag_tables()}
    assert {"README.md", "docs/training.md"} <= where


@pytest.mark.parametrize("where,command,complete,table", flag_tables(),
                         ids=[f"{w} {c}" for w, c, *_ in flag_tables()])
def test_flag_table_matches_the_parser(where, command, complete, table):
    assert len(table) > 2, f"{where}: no Markdown table right after the flags marker"
    documented = set(FLAG.findall("\n".join(table))) - COMMON_FLAGS
    actual = parser_flags(command)
    assert not documented - actual, (f"{where}: the table names flags {command} does not take: "
                                     f"{sorted(documented - actual)}")
    if complete:
        assert not actual - documented, (f"{where}: flags of {command} missing from the table "
                                         f"(marked all): {sorted(actual - documented)}")


def test_every_flag_table_is_marked():
    for doc in DOCS:
        lines = doc.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            first_cell = line.strip().strip("|").split("|")[0].strip().lower() if line.strip() else ""
            starts_table = line.lstrip().startswith("|") and (i == 0 or not lines[i - 1].lstrip()
                                                                .startswith("|"))
            if starts_table and first_cell == "flag":
                before = [previous for previous in lines[:i] if previous.strip()][-1:]
                assert before and FLAGS_MARKER.search(before[0]), (
                    f"{doc.relative_to(ROOT)}:{i + 1}: a flag table without a "
                    "<!-- flags: COMMAND all|some --> line right before it")


def exit_codes() -> set[int]:
    return {value for name, value in vars(errors).items() if name.startswith("EXIT_")}


def exit_tables() -> list[tuple[str, set[int]]]:
    found = []
    for doc in DOCS:
        lines = doc.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if line.strip() == EXIT_MARKER:
                table = _table_after(lines, i)
                codes = {int(m.group(1)) for row in table
                         if (m := re.match(r"\s*\|\s*`?(\d+)`?\s*\|", row))}
                found.append((f"{doc.relative_to(ROOT)}:{i + 1}", codes))
    return found


def test_exit_code_tables_match_common_errors():
    tables = exit_tables()
    assert {w.split(":")[0] for w, _ in tables} >= {"README.md", "docs/ARCHITECTURE.md"}
    for where, codes in tables:
        assert codes == exit_codes(), (f"{where}: the exit-code table lists {sorted(codes)}, "
                                       f"common/errors.py has {sorted(exit_codes())}")


def test_exit_code_docstring_matches_the_constants():
    rows = re.findall(r"^(\d+)\s{2,}\S", errors.__doc__, re.M)
    assert {int(code) for code in rows} == exit_codes()


def test_relative_links_in_the_docs_reach_a_file():
    broken = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            path = target.split("#", 1)[0]
            if not path or re.match(r"[a-z]+:", path):  # an anchor on the page, or a URL
                continue
            if not (doc.parent / path).exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not broken, f"links to no file: {broken}"
