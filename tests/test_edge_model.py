"""edge-model: versions on a device, each checked before it becomes current (deploy/store.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.model_cli import main
from tests.bundle_variants import answers_differ, corrupted, renamed

pytestmark = pytest.mark.edge

REPO = Path(__file__).resolve().parents[1]


def edge_model(root: Path, *args: str, capsys) -> tuple[int, str, str]:
    code = main([*args, "--root", str(root)])
    out, err = capsys.readouterr()
    return code, out, err


def current(root: Path) -> str:
    return os.readlink(root / "current")


def test_activate_list_and_roll_back(bundle, tmp_path, capsys):
    root = tmp_path / "models"
    v1, v2 = renamed(bundle, tmp_path / "v1", "one-"), renamed(bundle, tmp_path / "v2", "two-")
    code, out, err = edge_model(root, "activate", str(v1), "--json", capsys=capsys)
    assert code == 0, err
    first = json.loads(out)
    assert first["result"] == "activated"
    assert [c["name"] for c in first["checks"]] == ["manifest", "copy", "sha256", "labels",
                                                    "answers", "commit"]
    assert all(c["ok"] for c in first["checks"])
    assert current(root) == f"versions/{first['version']}"
    assert (root / "current" / "labels.txt").read_text().startswith("one-")
    # the same bundle again changes nothing (its installed copy is hashed, not its answers run)
    code, out, _ = edge_model(root, "activate", str(v1), "--json", capsys=capsys)
    assert code == 0 and json.loads(out)["result"] == "already current"
    assert "intact" in json.loads(out)["checks"][1]["detail"]
    code, out, err = edge_model(root, "activate", str(v2), "--json", capsys=capsys)
    second = json.loads(out)["version"]
    assert code == 0 and current(root) == f"versions/{second}"
    assert os.readlink(root / "previous") == f"versions/{first['version']}"
    code, out, _ = edge_model(root, "list", capsys=capsys)
    marks = {line.split()[1]: line[0] for line in out.splitlines()[1:]}
    assert marks == {first["version"]: "-", second: "*"}
    # and which edge-toolchain exported each (the manifest's record)
    exporter = json.loads((v1 / "manifest.json").read_text())["versions"]["edge-toolchain"]
    assert all(line.endswith(f", {exporter}") for line in out.splitlines()[1:]), out
    code, out, _ = edge_model(root, "list", "--json", capsys=capsys)
    assert {json.loads(line)["toolchain"] for line in out.splitlines()} == {exporter}
    code, _, err = edge_model(root, "rollback", capsys=capsys)
    assert code == 0 and current(root) == f"versions/{first['version']}"
    assert os.readlink(root / "previous") == f"versions/{second}"
    assert (root / "current" / "labels.txt").read_text().startswith("one-")
    # nothing half-made is left beside the versions
    assert sorted(p.name for p in (root / "versions").iterdir()) == sorted(
        [first["version"], second])


@pytest.mark.parametrize("make, check", [(corrupted, "sha256"), (answers_differ, "answers")])
def test_a_bundle_that_fails_a_check_never_becomes_current(bundle, tmp_path, capsys, make,
                                                           check):
    root = tmp_path / "models"
    good = renamed(bundle, tmp_path / "good", "good-")
    assert edge_model(root, "activate", str(good), capsys=capsys)[0] == 0
    before = current(root)
    bad = make(bundle, tmp_path / "bad")
    code, out, err = edge_model(root, "activate", str(bad), "--json", capsys=capsys)
    assert code == 1
    report = json.loads(out)
    assert report["result"] == "refused"
    assert [c["name"] for c in report["checks"] if not c["ok"]] == [check]
    assert f"the {check} check failed" in err and "Traceback" not in err
    assert current(root) == before
    assert sorted(p.name for p in (root / "versions").iterdir()) == [before.split("/")[1]]
    assert not (root / "previous").exists()


def test_only_the_newest_versions_stay_on_the_card(bundle, tmp_path, capsys):
    root = tmp_path / "models"
    versions = []
    for n in range(4):
        folder = renamed(bundle, tmp_path / f"v{n}", f"v{n}-")
        code, out, err = edge_model(root, "activate", str(folder), "--json", capsys=capsys)
        assert code == 0, err
        report = json.loads(out)
        versions.append(report["version"])
        # where edge-deploy would have copied it
        assert edge_model(root, "incoming", report["version"], capsys=capsys)[0] == 0
        if n < 3:
            assert report["removed"] == []
    # the fourth activation removed the first version, and its incoming copy, by default
    assert report["removed"] == [versions[0]] and "removed 1 older version" in err
    assert sorted(p.name for p in (root / "versions").iterdir()) == sorted(versions[1:])
    assert not (root / "incoming" / versions[0]).exists()
    assert current(root) == f"versions/{versions[3]}"
    # an interrupted activation's half copy goes too; current and previous always stay
    (root / "versions" / f".{versions[0]}.half").mkdir()
    code, _, err = edge_model(root, "prune", "--keep", "2", capsys=capsys)
    assert code == 0 and f"removed 1 older version(s): {versions[1]}" in err
    assert sorted(p.name for p in (root / "versions").iterdir()) == sorted(versions[2:])
    assert edge_model(root, "rollback", capsys=capsys)[0] == 0
    assert current(root) == f"versions/{versions[2]}"
    code, _, err = edge_model(root, "prune", "--keep", "1", capsys=capsys)
    assert code == 2 and "--keep 1: at least 2 versions stay" in err
    assert len(err.strip().splitlines()) == 1


def test_usage_errors_are_one_line_and_exit_2(tmp_path, capsys):
    root = tmp_path / "models"
    code, _, err = edge_model(root, "rollback", capsys=capsys)
    assert code == 2 and "no previous version" in err and len(err.strip().splitlines()) == 1
    code, _, err = edge_model(root, "activate", str(tmp_path), capsys=capsys)
    assert code == 2 and "not a bundle" in err and len(err.strip().splitlines()) == 1
    assert main(["activate"]) == 2
    assert "edge-model: error:" in capsys.readouterr().err


def test_edge_model_imports_no_tensorflow(bundle, tmp_path):
    script = (
        "import json, sys\n"
        "from deploy.model_cli import main\n"
        f"code = main(['activate', {str(bundle)!r}, '--root', {str(tmp_path / 'm')!r}])\n"
        "from deploy import deploy_cli, service_cli\n"
        "heavy = sorted(n for n in sys.modules if n.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print(json.dumps({'code': code, 'heavy': heavy}))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"code": 0, "heavy": []}, \
        done.stderr[-2000:]
