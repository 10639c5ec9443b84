"""The examples in docstrings run: a docstring that shows a result must show the real one."""

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "edge_runtime", "train", "export", "benchmarks", "tune")


def modules_with_examples() -> list[str]:
    return sorted(".".join(path.relative_to(ROOT).with_suffix("").parts)
                  for package in PACKAGES for path in (ROOT / package).rglob("*.py")
                  if ">>> " in path.read_text(encoding="utf-8"))


def test_modules_with_examples_are_found():
    assert "tune.select" in modules_with_examples()


@pytest.mark.parametrize("name", modules_with_examples())
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result
