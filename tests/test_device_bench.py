"""edge-bench BUNDLE: the TensorFlow-free device bench on an exported bundle copied elsewhere."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from benchmarks.cli import main
from benchmarks.machine import board, cpu_model, describe, machine_info
from common.fileio import sha256
from common.versions import toolchain_version
from edge_runtime.classifier import Classifier
from edge_runtime.eval_set import EVAL_SET_FILE, EvalSet
from edge_runtime.image import load_model_pixels
from edge_runtime.interpreter import available_cores
from edge_runtime.manifest import EvalSet as EvalSetEntry
from edge_runtime.manifest import Manifest
from tests.bundle_variants import rehash

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--runs", "4", "--repeats", "2", "--warmup", "1", "--no-progress"]


@pytest.fixture(scope="module")
def device_bundle(exported_run, tmp_path_factory) -> Path:
    """The run's export/ copied away from its run, with the whole test split as its eval set
    (as edge-export writes it: uint8 pixels, labels, Keras top-1, each variant's top-1) and
    each variant's sha256."""
    from export.eval_collector import with_variant_answers
    from train.saved_run import load_run

    bundle = tmp_path_factory.mktemp("pi") / "pets"
    shutil.copytree(exported_run / "export", bundle)
    manifest = Manifest.load(bundle)
    model, splits, _ = load_run(exported_run)
    split = splits.eval_split()
    pixels = np.stack([load_model_pixels(p, manifest.input.size) for p in splits.paths(split)])
    # the same call export makes on the same images: the same Keras answers
    keras_top1 = model.predict(pixels.astype(np.float32), batch_size=32, verbose=0).argmax(1)
    with_variant_answers(EvalSet(pixels, np.asarray(splits.labels[split]), keras_top1),
                         {name: bundle / v.file for name, v in manifest.variants.items()},
                         bundle / "labels.txt").save(bundle / EVAL_SET_FILE)
    variants = {name: replace(v, sha256=sha256(bundle / v.file))
                for name, v in manifest.variants.items()}
    replace(manifest, variants=variants,
            eval_set=EvalSetEntry(EVAL_SET_FILE, len(pixels), split)).save(bundle)
    return bundle


@pytest.fixture(scope="module")
def device_benched(device_bundle):
    """One short in-process device bench (no memory probes) and what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(device_bundle), *QUICK, "--no-memory"])
    report = json.loads((device_bundle / "bench" / "report.json").read_text(encoding="utf-8"))
    return code, report, out.getvalue()


def _copy(bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy, ignore=shutil.ignore_patterns("bench"))
    return copy


def test_accuracy_and_agreement_equal_export_and_a_direct_computation(device_benched,
                                                                       device_bundle):
    code, report, _ = device_benched
    assert code == 0
    manifest = Manifest.load(device_bundle)
    eval_set = EvalSet.load(device_bundle / EVAL_SET_FILE)
    rows = {row["model"]: row for row in report["rows"]}
    assert list(rows) == list(manifest.variants) == ["fp32", "fp16", "int8"]
    for name, variant in manifest.variants.items():
        # the eval set is the whole split export verified on: the very same numbers
        assert rows[name]["accuracy"] == pytest.approx(variant.accuracy, abs=1e-12), name
        assert rows[name]["agreement"] == pytest.approx(variant.agreement, abs=1e-12), name
        classifier = Classifier(device_bundle / variant.file)
        top1 = classifier.probabilities(eval_set.pixels).argmax(1)
        assert rows[name]["accuracy"] == pytest.approx(np.mean(top1 == eval_set.labels))
        assert rows[name]["agreement"] == pytest.approx(np.mean(top1 == eval_set.keras_top1))
        assert rows[name]["size_bytes"] == (device_bundle / variant.file).stat().st_size


def test_report_files_rows_and_verdicts(device_benched, device_bundle):
    _, report, printed = device_benched
    out = device_bundle / "bench"
    for name in ("report.md", "report.json", "latency.png", "accuracy_size.png"):
        assert (out / name).is_file(), name
    assert report["bundle"] == str(device_bundle)
    assert report["eval"] == {"source": "bundle", "file": EVAL_SET_FILE, "split": "test",
                              "images": report["eval"]["images"],
                              "export_images": report["eval"]["export_images"]}
    assert report["machine"]["threads"] == available_cores()
    assert report["machine"]["backend"] == "ai_edge_litert"
    assert "board" in report["machine"] and report["machine"]["cpu"]
    rows = {row["model"]: row for row in report["rows"]}
    assert all(row["kind"] == "tflite" for row in rows.values())
    for row in rows.values():
        lat = row["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] and row["throughput_ips"] > 0
        assert row["runs"] == 4 and len(row["repeat_medians_ms"]) == 2
        assert row["peak_rss_mb"] is None  # --no-memory
    assert rows["fp32"]["compared_with"] is None and rows["int8"]["compared_with"] == "fp32"
    assert set(report["verdicts"]) == {"fp16", "int8"}
    text = (out / "report.md").read_text(encoding="utf-8")
    assert text.startswith(f"# Device benchmark of {device_bundle}")
    assert "evaluation set" in text and "| int8 |" in text and "model.predict" not in text
    assert "Memory was not measured" in text
    # which build exported the bundle, and which measured it
    exporter = json.loads((device_bundle / "manifest.json").read_text())["versions"]
    assert report["exported_by"] == exporter["edge-toolchain"] != "unknown"
    assert f"Exported by edge-toolchain {report['exported_by']}." in text
    assert report["machine"]["edge_toolchain"] == toolchain_version()
    assert f"edge-toolchain {toolchain_version()}" in text
    assert "| int8 |" in printed and "int8: " in printed and "report: " in printed


def test_each_variant_gives_the_answers_it_gave_on_the_workstation(device_benched,
                                                                  device_bundle):
    _, report, printed = device_benched
    images = len(EvalSet.load(device_bundle / EVAL_SET_FILE))
    for row in report["rows"]:
        assert row["workstation_agreement"] == {"same": images, "images": images}, row["model"]
    text = (device_bundle / "bench" / "report.md").read_text(encoding="utf-8")
    header = next(line for line in text.splitlines() if line.startswith("| model |"))
    assert "| agreement | same as workstation | size MB |" in header
    int8 = next(line for line in text.splitlines() if line.startswith("| int8 |"))
    assert int8.split(" | ")[3] == f"{images}/{images}"
    assert "⚠ int8: same answers" not in text and "not available for" not in text
    assert "same as workstation" in printed


def test_a_variant_that_answers_differently_is_shown_not_an_error(device_bundle, tmp_path,
                                                                 capsys):
    bundle = _copy(device_bundle, tmp_path)
    eval_set = EvalSet.load(bundle / EVAL_SET_FILE)
    answers = dict(eval_set.variant_top1)
    # as if the workstation had answered otherwise on two images
    answers["int8"] = answers["int8"].copy()
    answers["int8"][:2] = (answers["int8"][:2] + 1) % len(Manifest.load(bundle).labels)
    replace(eval_set, variant_top1=answers).save(bundle / EVAL_SET_FILE)
    rehash(bundle)  # the manifest binds eval_set.npz: as that export would have written it
    assert main([str(bundle), *QUICK, "--no-memory"]) == 0
    report = json.loads((bundle / "bench" / "report.json").read_text(encoding="utf-8"))
    rows = {row["model"]: row for row in report["rows"]}
    n = len(eval_set)
    assert rows["int8"]["workstation_agreement"] == {"same": n - 2, "images": n}
    assert rows["fp32"]["workstation_agreement"] == {"same": n, "images": n}
    text = (bundle / "bench" / "report.md").read_text(encoding="utf-8")
    assert f" | {n - 2}/{n} ⚠ | " in text
    assert f"⚠ int8: same answers as the workstation on {n - 2} of {n} images. Not an error" \
        in text
    assert f"{n - 2}/{n} ⚠" in capsys.readouterr().out


def test_an_older_bundle_without_workstation_answers_still_benches(device_bundle, tmp_path):
    bundle = _copy(device_bundle, tmp_path)
    eval_set = EvalSet.load(bundle / EVAL_SET_FILE)
    # an eval_set.npz as edge-export wrote it before it kept each variant's answers, in a
    # manifest that, as then, binds no file but the variants
    with (bundle / EVAL_SET_FILE).open("wb") as f:
        np.savez_compressed(f, pixels=eval_set.pixels, labels=eval_set.labels,
                            keras_top1=eval_set.keras_top1)
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    del manifest["files"]
    (bundle / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert main([str(bundle), *QUICK, "--no-memory"]) == 0
    report = json.loads((bundle / "bench" / "report.json").read_text(encoding="utf-8"))
    assert [row["workstation_agreement"] for row in report["rows"]] == [None] * 3
    text = (bundle / "bench" / "report.md").read_text(encoding="utf-8")
    assert " | n/a | " in text
    assert ("Same answers as the workstation: not available for fp32, fp16, int8: the bundle's "
            "evaluation set holds no workstation answers for them") in text


def test_export_keeps_each_variant_answers_on_the_eval_set(exported_run):
    bundle = exported_run / "export"
    manifest = Manifest.load(bundle)
    eval_set = EvalSet.load(bundle / EVAL_SET_FILE)
    assert set(eval_set.variant_top1) == set(manifest.variants) == {"fp32", "fp16", "int8"}
    for name, variant in manifest.variants.items():
        # what the device bench computes: the uint8 pixels through the edge runtime
        top1 = Classifier(bundle / variant.file).probabilities(eval_set.pixels).argmax(1)
        np.testing.assert_array_equal(eval_set.variant_top1[name], top1, err_msg=name)


def test_a_hot_throttled_pi_is_flagged_in_the_report_and_the_output(device_bundle, tmp_path,
                                                                    monkeypatch, capsys):
    from benchmarks import thermal
    from tests.test_thermal import fake_sysfs, fake_vcgencmd

    monkeypatch.setattr(thermal, "THERMAL_ROOT",
                        fake_sysfs(tmp_path / "sys", [("cpu-thermal", "82345")]))
    fake_vcgencmd(tmp_path / "bin", monkeypatch, "0x0", "0x50005")
    bundle = _copy(device_bundle, tmp_path)
    assert main([str(bundle), *QUICK, "--no-memory"]) == 0
    report = json.loads((bundle / "bench" / "report.json").read_text(encoding="utf-8"))
    heat = report["machine"]["thermal"]
    assert heat["before"]["throttled"]["value"] == "0x0"
    assert heat["after"]["throttled"]["value"] == "0x50005"
    assert heat["after"]["temperature"] == {"celsius": 82.3, "zone": "thermal_zone0",
                                            "type": "cpu-thermal"}
    assert heat["throttled"] is True
    assert heat["reason"] == "under-voltage, throttled at the start or end of the run"
    text = (bundle / "bench" / "report.md").read_text(encoding="utf-8")
    assert "82.3 °C after; `vcgencmd get_throttled`: 0x0 before, 0x50005 after: throttled." \
        in text
    warning = ("⚠ throttled: under-voltage, throttled at the start or end of the run. The "
               "timings are pessimistic")
    assert warning in text and warning in capsys.readouterr().out


def test_the_report_says_what_it_read_of_the_heat(device_benched, device_bundle):
    _, report, _ = device_benched
    heat = report["machine"]["thermal"]
    assert set(heat) == {"before", "after", "throttled", "reason"}
    text = (device_bundle / "bench" / "report.md").read_text(encoding="utf-8")
    line = next(ln for ln in text.splitlines() if ln.startswith("Thermal: "))
    # whatever this machine has, the line states what was read, or that nothing could be
    before, after = heat["before"], heat["after"]
    if before["temperature"] and after["temperature"]:
        assert (f"{before['temperature']['celsius']:.1f} °C before, "
                f"{after['temperature']['celsius']:.1f} °C after") in line
    else:  # this machine has no thermal zone: said so
        assert "SoC temperature: not available" in line
    if before["throttled"] and after["throttled"]:
        assert (f"{before['throttled']['value']} before, {after['throttled']['value']} after"
                in line)
    else:
        assert "throttling flags: not available" in line
    verdict = {True: "throttled", False: "not throttled", None: "throttling unknown"}
    assert line.endswith(f": {verdict[heat['throttled']]}.")


BLOCKER = textwrap.dedent('''
    """Installed by the test through PYTHONPATH, so the memory-probe children get it too."""
    import importlib.abc
    import os
    import sys

    BLOCKED = os.environ["BLOCK_IMPORTS"].split(",")


    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                with open(os.environ["BLOCK_LOG"], "a", encoding="utf-8") as log:
                    log.write(f"{os.getpid()} {name}\\n")
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
            return None


    sys.meta_path.insert(0, Block())
''')


def _without(modules: list[str], args: list[str], tmp_path: Path) -> tuple[subprocess.
                                                                           CompletedProcess, str]:
    """Run edge-bench in a fresh interpreter (and its children) where ``modules`` cannot be
    imported; every attempt to import one is logged. Returns the process and that log."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER, encoding="utf-8")
    log = tmp_path / "attempts.log"
    env = dict(os.environ, BLOCK_IMPORTS=",".join(modules), BLOCK_LOG=str(log),
               PYTHONPATH=os.pathsep.join([str(blocker), str(ROOT)]))
    done = subprocess.run([sys.executable, "-m", "benchmarks.cli", *args], env=env,
                          capture_output=True, text=True, timeout=600)
    return done, log.read_text(encoding="utf-8") if log.exists() else ""


def test_device_bench_runs_without_tensorflow_or_matplotlib(device_bundle, tmp_path):
    bundle = _copy(device_bundle, tmp_path)
    done, attempts = _without(["tensorflow", "keras", "matplotlib", "tqdm"],
                              [str(bundle), *QUICK], tmp_path)
    assert done.returncode == 0, done.stderr
    # neither edge-bench nor its memory probes tried to import TensorFlow or Keras (the report
    # asks for matplotlib, and is told it is missing)
    tried = {line.split()[1].split(".")[0] for line in attempts.splitlines()}
    assert tried == {"matplotlib"}, attempts
    report = json.loads((bundle / "bench" / "report.json").read_text(encoding="utf-8"))
    assert report["machine"]["tensorflow"] is None and report["machine"]["gpus"] == []
    rows = report["rows"]
    assert [r["model"] for r in rows] == ["fp32", "fp16", "int8"]
    for row in rows:  # probes ran, in their own processes, on the edge runtime alone
        assert row["peak_rss_mb"] > 0 and row["load_seconds"] >= 0, row["model"]
    # no matplotlib: said once, in the output and the report, and no plot files
    output = done.stdout + done.stderr
    assert output.count("matplotlib is not installed") == 1, output
    assert "No plots: matplotlib is not installed" in (bundle / "bench" / "report.md").read_text(
        encoding="utf-8")
    assert not list((bundle / "bench").glob("*.png"))


def test_sentinel_blocker_catches_a_tensorflow_import(tmp_path):
    # the check above can fail: the same blocker sees a run directory's TensorFlow path
    done, attempts = _without(["tensorflow"], [str(tmp_path), "--demo", "--no-progress"],
                              tmp_path)
    assert done.returncode == 2
    assert "tensorflow" in attempts


def test_run_directory_without_tensorflow_points_to_the_bundle(exported_run, tmp_path):
    done, _ = _without(["tensorflow", "keras"], [str(exported_run), *QUICK], tmp_path)
    assert done.returncode == 2
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"edge-bench {exported_run / 'export'}" in err


def test_altered_variant_is_refused_by_its_sha256(device_bundle, tmp_path, capsys):
    bundle = _copy(device_bundle, tmp_path)
    with (bundle / "model_int8.tflite").open("ab") as f:
        f.write(b"\0")  # still loads; only the digest tells
    assert main([str(bundle), *QUICK, "--no-memory"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "variant int8" in err and "sha256" in err and "copy the bundle again" in err
    assert not (bundle / "bench").exists()


def test_bundle_without_eval_set_says_to_re_export(device_bundle, tmp_path, capsys):
    bundle = _copy(device_bundle, tmp_path)
    replace(Manifest.load(bundle), eval_set=None).save(bundle)
    assert main([str(bundle), *QUICK, "--no-memory"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "no evaluation set" in err and "--eval-samples" in err


def test_missing_eval_set_file_is_one_line(device_bundle, tmp_path, capsys):
    bundle = _copy(device_bundle, tmp_path)
    (bundle / EVAL_SET_FILE).unlink()  # the manifest binds it: a copy that lost a file
    assert main([str(bundle), *QUICK, "--no-memory"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{EVAL_SET_FILE} is missing" in err
    assert "copy the bundle again" in err


def test_export_and_demo_flags_need_a_run(device_bundle, capsys):
    for flag in ("--export", "--demo"):
        with pytest.raises(SystemExit) as stop:
            main([str(device_bundle), flag])
        assert stop.value.code == 2
        assert f"{flag} needs a run directory" in capsys.readouterr().err


def test_board_comes_from_the_device_tree(tmp_path):
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    assert board(model) == "Raspberry Pi 5 Model B Rev 1.0"
    assert board(tmp_path / "absent") is None
    info = {**machine_info(2, "ai_edge_litert", None), "board": board(model)}
    assert describe(info).startswith("Machine: Raspberry Pi 5 Model B Rev 1.0, ")


PI4_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3

processor\t: 1
BogoMIPS\t: 108.00
CPU implementer\t: 0x41
CPU part\t: 0xd08

Revision\t: c03114
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""


def test_arm_cores_are_named_from_their_part_numbers(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(PI4_CPUINFO, encoding="utf-8")
    assert cpu_model(cpuinfo).startswith("2× Cortex-A72 (")
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) CPU\n", encoding="utf-8")
    assert cpu_model(cpuinfo) == "Intel(R) Xeon(R) CPU"
