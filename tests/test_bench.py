"""tools/bench.py --quick: the table's shape and that every figure is a finite number."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from conftest import BAD_LABELS_MESSAGE, run_script
from tools import bench

ROWS = [
    "Parameters",
    "Test accuracy with 5 views, mean ± std over seeds 0 to 1",
    "Test accuracy with one view, mean (min / max)",
    "Test accuracy, min / max",
    "Corruption suite (14 corruptions), mean accuracy",
    "Worst corruption, mean over seeds",
    "Training loop, one epoch (median)",
    "Training images per second",
    "Conventional input path, one epoch",
    "Speed-up over the conventional path",
    "Peak resident memory of the benchmark",
    "torch, threads",
    "CPU",
    "Device, autocast",
]


@pytest.mark.slow
def test_quick_benchmark_prints_a_full_table(data_dir: str, tmp_path: Path) -> None:
    figures_path = tmp_path / "bench.json"
    result = run_script("tools.bench", "--quick", "--data-dir", data_dir, "--json", str(figures_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[:2] == ["| Measure | Value |", "| --- | --- |"]
    cells = [line.strip("|").split(" | ") for line in lines[2:]]
    assert all(len(row) == 2 and row[1].strip() for row in cells), lines
    names = [row[0].strip() for row in cells]
    for row in ROWS:
        assert row in names
    figures = json.loads(figures_path.read_text())
    numbers = {
        key: value for key, value in figures.items() if isinstance(value, int | float) and not isinstance(value, bool)
    }
    assert {"accuracy_mean", "epoch_seconds_median", "conventional_epoch_seconds", "peak_rss_mb"} <= set(numbers)
    assert all(math.isfinite(value) for value in numbers.values()), numbers
    assert len(figures["accuracies"]) == len(figures["accuracies_one_view"]) == figures["seeds"] == 2
    assert 0 < figures["accuracy_min"] <= figures["accuracy_mean"] <= figures["accuracy_max"] <= 100
    assert figures["split"] == "test" and figures["recipe"]["epochs"] == 1


NAN = float("nan")
FIGURES = {
    "quick": True,
    "seeds": 1,
    "first_seed": 0,
    "train_images": 10,
    "eval_images": 10,
    "split": "test",
    "parameters": 1,
    "accuracies": [NAN],
    "views": 5,
    **dict.fromkeys(["accuracy_one_view_mean", "accuracy_one_view_min", "accuracy_one_view_max"], NAN),
    "epochs": 1,
    "corruption_accuracies": {"fog": NAN},
    "corruption_mean": NAN,
    "corruption_worst": NAN,
    "corruption_worst_name": "fog",
    **dict.fromkeys(["accuracy_mean", "accuracy_std", "accuracy_min", "accuracy_max"], NAN),
    **dict.fromkeys(["epoch_seconds_median", "images_per_second", "eval_seconds_median", "peak_rss_mb"], 1.0),
    "conventional_epoch_seconds": float("inf"),
    "speedup_over_conventional": float("inf"),
    "torch": "x",
    "threads": 1,
    "cpu": "x",
    "device": "cpu",
    "autocast": "None",
}


def test_json_figures_are_strict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "run_benchmark", lambda *args: FIGURES)
    path = tmp_path / "figures.json"
    assert bench.main(["--json", str(path)]) == 0
    parsed = json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))
    assert parsed["accuracy_mean"] is None and parsed["speedup_over_conventional"] is None


def test_bad_mnist_file_exits_two_without_writing(
    bad_labels_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    figures = tmp_path / "figures.json"
    assert bench.main(["--quick", "--data-dir", bad_labels_dir, "--json", str(figures)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and BAD_LABELS_MESSAGE in error and error.count("\n") == 1
    assert not figures.exists()


class Usage:
    """What resource.getrusage returns, as far as peak_memory_mb reads it."""

    def __init__(self, ru_maxrss: int) -> None:
        self.ru_maxrss = ru_maxrss


@pytest.mark.parametrize(
    ("platform", "maxrss", "megabytes"), [("linux", 512_000, 500.0), ("darwin", 524_288_000, 500.0)]
)
def test_peak_memory_reads_each_platforms_unit(
    platform: str, maxrss: int, megabytes: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    resource = pytest.importorskip("resource", reason="resource is POSIX only")
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setattr(resource, "getrusage", lambda who: Usage(maxrss))
    assert bench.peak_memory_mb() == megabytes


def test_peak_memory_is_left_out_where_resource_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "resource", None)  # as on Windows: import resource fails
    assert bench.peak_memory_mb() is None
    figures = json.loads(json.dumps(FIGURES | {"peak_rss_mb": None}))
    assert "| Peak resident memory of the benchmark | n/a (this platform does not report it) |" in bench.markdown_table(
        figures
    )


class FirstFit(Exception):
    """Raised by a stand-in for train.fit once it has seen its recipe."""


def test_first_seed_picks_the_seeds_trained(monkeypatch: pytest.MonkeyPatch, data_dir: str) -> None:
    seen = []

    def first_fit(recipe: object, *args: object, **kwargs: object) -> None:
        seen.append(recipe.seed)
        raise FirstFit

    monkeypatch.setattr(bench.train, "fit", first_fit)
    with pytest.raises(FirstFit):
        bench.run_benchmark(2, True, data_dir, torch.device("cpu"), first_seed=10)
    assert seen == [10]
