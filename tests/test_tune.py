"""edge-tune's rules and its search loop, without training: the selection as pure functions, and
the search driven by stand-in steps (a table of accuracies instead of training), so the
"within the budget", "never trains over it" and "resumes" properties are checked in seconds.
The real training path is in tests/test_tune_long.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tune.cli import main
from tune.int8 import Int8Accuracy
from tune.search import STATE_FILE, SearchConfig, search, work_dir
from tune.select import Scored, choose, pareto_front, rung_sizes, survivors

# --- the rules --------------------------------------------------------------------------------


def test_choose_picks_the_most_accurate_trained_candidate_within_the_budget():
    candidates = [
        Scored("fast", 5.0, 0.70, rung=1),
        Scored("best_inside", 9.0, 0.80, rung=1),
        Scored("over_budget", 20.0, 0.95, rung=1),  # more accurate, but too slow
        Scored("untrained", 3.0, None, rung=-1),
        Scored("dropped_early", 4.0, 0.90, rung=0),  # shorter training: not comparable
    ]
    assert choose(candidates, budget_ms=10.0).name == "best_inside"
    # the budget is inclusive, and a bigger one lets the slower, better model win
    assert choose(candidates, budget_ms=20.0).name == "over_budget"
    assert choose(candidates, budget_ms=9.0).name == "best_inside"
    assert choose(candidates, budget_ms=8.9).name == "fast"


def test_choose_breaks_ties_by_speed_and_says_none_when_nothing_inside_was_trained():
    tied = [Scored("slow", 8.0, 0.8, 0), Scored("quick", 6.0, 0.8, 0)]
    assert choose(tied, 10.0).name == "quick"
    assert choose([Scored("a", 5.0, None), Scored("b", 50.0, 0.9, 0)], 10.0) is None


def test_halving_keeps_the_most_accurate_and_stops_at_the_finalists():
    assert rung_sizes(7, eta=2, finalists=2) == [7, 4, 2]
    assert rung_sizes(9, eta=3, finalists=1) == [9, 3, 1]
    assert rung_sizes(2, eta=2, finalists=2) == [2]
    assert rung_sizes(3, eta=2, finalists=2) == [3, 2]
    assert rung_sizes(0) == []
    rung = [Scored("a", 1, 0.5), Scored("b", 1, 0.9), Scored("c", 2, 0.7), Scored("d", 1, 0.7)]
    assert survivors(rung, 2) == ["b", "d"]  # d beats c at equal accuracy: faster


def test_pareto_front_leaves_out_dominated_points():
    points = [(1.0, 0.5), (2.0, 0.7), (3.0, 0.6), (4.0, 0.9), (2.0, 0.65)]
    assert pareto_front(points) == [0, 1, 3]


# --- the search loop with stand-in steps ------------------------------------------------------

LATENCY = {("mobilenet_v2", 0.35, 96): 4.0, ("mobilenet_v2", 0.5, 96): 6.0,
           ("mobilenet_v2", 1.0, 96): 9.0, ("mobilenet_v2", 1.0, 160): 25.0,
           ("mobilenet_v2", 0.35, 160): 8.0}
ACCURACY = {("mobilenet_v2", 0.35, 96): 0.60, ("mobilenet_v2", 0.5, 96): 0.72,
            ("mobilenet_v2", 1.0, 96): 0.81, ("mobilenet_v2", 1.0, 160): 0.95,
            ("mobilenet_v2", 0.35, 160): 0.66}
"""A stand-in for training: each candidate's int8 val accuracy (the slowest is the best)."""


def write_device_report(path: Path, latency=LATENCY) -> Path:
    rows = [{"model": f"{b}-a{a:g}-{s}", "backbone": b, "alpha": a, "img_size": s,
             "size_bytes": 1000, "latency_ms": {"p50": p50, "p90": p50 * 1.1, "p99": p50 * 1.2,
                                                "mean": p50}, "peak_rss_mb": 50.0}
            for (b, a, s), p50 in latency.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"kind": "probe", "probe": "p", "machine": {"cpu": "test cpu"},
                                "rows": rows}))
    return path


class FakeSteps:
    """Training that only records what it was asked; accuracy from :data:`ACCURACY`."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.trained: list[tuple[str, int, bool]] = []
        self.fail_on_call = fail_on_call

    def measure_here(self, config, folder):
        raise AssertionError("the tests give a device report")

    def train(self, config, candidate, out, epochs, fine_tune_epochs, resume=False):
        if self.fail_on_call is not None and len(self.trained) + 1 == self.fail_on_call:
            raise KeyboardInterrupt  # Ctrl-C in the middle of this candidate's training
        self.trained.append((candidate.name, epochs, resume))
        Path(out).mkdir(parents=True)
        (Path(out) / "partial").write_text("a run directory")
        key = (candidate.backbone, candidate.alpha, candidate.img_size)
        self._last = ACCURACY[key]
        return {"val_accuracy": ACCURACY[key], "test_accuracy": 0.5, "eval_split": "test"}

    def int8_accuracy(self, config, run):
        assert (Path(run) / "partial").is_file()
        return Int8Accuracy(int8=self._last, keras=self._last + 0.01, images=10)


@pytest.fixture
def data(tmp_path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


def config_for(tmp_path, data, budget_ms=10.0, **changes) -> SearchConfig:
    return SearchConfig(data=str(data), out=str(tmp_path / "runs" / "best"), budget_ms=budget_ms,
                        device=str(write_device_report(tmp_path / "probe/bench/report.json")),
                        weights="none", progress=False, **changes)


def test_search_trains_only_candidates_within_the_budget_and_picks_the_best(tmp_path, data):
    steps = FakeSteps()
    result = search(config_for(tmp_path, data), steps)
    names = {name for name, _, _ in steps.trained}
    inside = {"mobilenet_v2-a0.35-96", "mobilenet_v2-a0.5-96", "mobilenet_v2-a1-96",
              "mobilenet_v2-a0.35-160"}
    assert names == inside  # the 25 ms candidate, the most accurate, never trained
    report = json.loads((result.report_dir / "report.json").read_text())
    assert report["budget_ms"] == 10.0
    assert report["chosen"]["name"] == "mobilenet_v2-a1-96"  # the most accurate inside
    by_name = {c["name"]: c for c in report["candidates"]}
    assert by_name["mobilenet_v2-a1-160"]["val_accuracy"] is None
    assert not by_name["mobilenet_v2-a1-160"]["fits"]
    for key in ("backbone", "alpha", "img_size", "p50_ms", "val_accuracy"):
        assert all(key in c for c in report["candidates"])
    # halving: 4 candidates for 1 epoch, the best 2 for 2 epochs, then the winner in full
    assert [e for _, e, _ in steps.trained] == [1, 1, 1, 1, 2, 2, 10]
    assert steps.trained[-1][0] == "mobilenet_v2-a1-96"
    assert (result.report_dir / "pareto.png").stat().st_size > 0
    assert not work_dir(Path(result.out)).exists()  # the working folder goes at the end


def test_report_table_gives_the_epochs_each_accuracy_came_from(tmp_path, data):
    result = search(config_for(tmp_path, data, rung_epochs=3), FakeSteps())
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")
            for line in (result.report_dir / "report.md").read_text().splitlines()
            if line.startswith("| mobilenet")}
    epochs = {name: row[5] for name, row in rows.items()}
    assert epochs["mobilenet_v2-a1-96"] == "6"  # a finalist: 3 epochs, then 3 × 2
    assert sorted(epochs.values()).count("3") == 2  # dropped after the first rung
    assert rows["mobilenet_v2-a1-160"][3:6] == ["–", "–", "–"]  # over the budget: untrained


def test_search_resumes_without_training_a_finished_candidate_again(tmp_path, data):
    config = config_for(tmp_path, data)
    interrupted = FakeSteps(fail_on_call=2)  # stopped while training the second candidate
    with pytest.raises(KeyboardInterrupt):
        search(config, interrupted)
    first = interrupted.trained[0][0]
    state = json.loads((work_dir(Path(config.out)) / STATE_FILE).read_text())
    assert [c["name"] for c in state["candidates"] if c["results"]] == [first]

    resumed = FakeSteps()
    result = search(SearchConfig(data="", out=config.out, budget_ms=1.0, resume=True,
                                 progress=False), resumed)
    retrained = [name for name, epochs, _ in resumed.trained if epochs == 1]
    assert first not in retrained
    assert len(retrained) == 3  # the other three of the first rung, the interrupted one again
    assert result.report["chosen"]["name"] == "mobilenet_v2-a1-96"
    assert result.report["budget_ms"] == 10.0  # the saved settings, not the flags


def test_cli_missing_report_is_one_line_and_exit_2(tmp_path, data, capsys):
    code = main(["search", "--data", str(data), "--device", str(tmp_path / "nope.json"),
                 "--budget-ms", "10", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "nope.json does not exist" in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.tune").exists()


def test_cli_budget_nobody_fits_is_one_line_and_exit_2(tmp_path, data, capsys):
    report = write_device_report(tmp_path / "report.json")
    code = main(["search", "--data", str(data), "--device", str(report), "--budget-ms", "3",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "no candidate" in err and "mobilenet_v2-a0.35-96" in err and "4.00 ms" in err


def test_cli_refuses_a_bundle_report_in_place_of_a_probe_report(tmp_path, data, capsys):
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"bundle": "x", "rows": [{"model": "int8"}]}))
    code = main(["search", "--data", str(data), "--device", str(report), "--budget-ms", "3",
                 "--out", str(tmp_path / "run")])
    assert code == 2
    assert "not a probe's bench report" in capsys.readouterr().err


def test_cli_resume_without_a_search_is_one_line_and_exit_2(tmp_path, capsys):
    code = main(["search", "--out", str(tmp_path / "run"), "--resume"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "no search" in err


def test_search_leaves_a_foreign_folder_where_it_would_work_alone(tmp_path, data, capsys):
    config = config_for(tmp_path, data)
    work = work_dir(Path(config.out))
    work.mkdir(parents=True)
    (work / "notes.txt").write_text("the user's")
    code = main(["search", "--data", str(data), "--device", config.device, "--budget-ms", "10",
                 "--out", config.out])
    assert code == 2 and "not an edge-tune working folder" in capsys.readouterr().err
    assert (work / "notes.txt").read_text() == "the user's"


def test_plot_labels_of_neighbouring_candidates_do_not_overlap():
    pytest.importorskip("matplotlib", reason="the plot needs matplotlib (the train extra has it)")
    from common.figures import new_figure
    from tune.report import _label_points

    # five candidates as close in latency and accuracy as a real search gives
    candidates = [{"backbone": "mobilenet_v2", "alpha": 0.35, "img_size": 64 + 32 * i,
                   "p50_ms": 0.30 + 0.004 * i, "val_accuracy": 0.20 + 0.003 * i}
                  for i in range(5)]
    ax = new_figure(7, 4).add_subplot()
    ax.scatter([c["p50_ms"] for c in candidates], [c["val_accuracy"] for c in candidates])
    ax.set_xscale("log")
    ax.set_xlim(0.05, 5)  # the axes of a whole probe, as plot_pareto's
    ax.set_ylim(0, 1.02)
    _label_points(ax, candidates)
    renderer = ax.figure.canvas.get_renderer()
    boxes = [text.get_window_extent(renderer) for text in ax.texts]
    assert [t.get_text() for t in ax.texts] == [f"V2 0.35/{64 + 32 * i}" for i in range(5)]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
