"""bench.py --quick: the table's shape and that every figure is a finite number."""

import json
import math
from pathlib import Path

import pytest

from conftest import run_script

ROWS = [
    "Parameters",
    "Test accuracy, mean ± std over 2 seeds",
    "Test accuracy, min / max",
    "Training loop, one epoch (median)",
    "Training images per second",
    "Conventional input path, one epoch",
    "Speed-up over the conventional path",
    "Peak resident memory of the benchmark",
    "torch, threads",
    "CPU",
    "Device, autocast",
]


def test_quick_benchmark_prints_a_full_table(data_dir: str, tmp_path: Path) -> None:
    figures_path = tmp_path / "bench.json"
    result = run_script("bench.py", "--quick", "--data-dir", data_dir, "--json", str(figures_path))
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
    assert {"test_accuracy_mean", "epoch_seconds_median", "conventional_epoch_seconds", "peak_rss_mb"} <= set(numbers)
    assert all(math.isfinite(value) for value in numbers.values()), numbers
    assert len(figures["test_accuracies"]) == figures["seeds"] == 2
    assert 0 < figures["test_accuracy_min"] <= figures["test_accuracy_mean"] <= figures["test_accuracy_max"] <= 100
    assert figures["speedup_over_conventional"] == pytest.approx(
        figures["conventional_epoch_seconds"] / figures["epoch_seconds_median"]
    )
