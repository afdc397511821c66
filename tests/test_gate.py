"""tools/gate.py: the verdict against a baseline, the job summary and badge it writes, old or missing baselines."""

import importlib.util
import json
import math
import re
import shutil
from pathlib import Path

import pytest

import train
from conftest import ROOT, gate_thresholds, run_script
from tools import gate as gate_cli

CURVE = [1.5 - 0.05 * part for part in range(20)]


def run_metadata(seed: int, accuracy: float, parameters: int = 23_338, seconds: float = 3.0) -> dict:
    """Return the metadata of one train.py run as the current train.py writes it."""
    return {
        "metrics": {
            "test_accuracy": accuracy,
            "test_accuracy_one_view": accuracy - 0.05,
            "test_loss": 0.135,
            "train_accuracy": 95.9,
            "train_loss": 0.66,
            "train_seconds": seconds,
            "train_loss_curve": CURVE,
        },
        "recipe": {"seed": seed},
        "num_parameters": parameters,
    }


def write_runs(folder: Path, runs: list[dict]) -> Path:
    """Write each run's JSON into folder/seed-N/ as train.py would; return folder."""
    for index, run in enumerate(runs):
        seed_dir = folder / f"seed-{index}"
        seed_dir.mkdir(parents=True)
        (seed_dir / "mnist_cnn_20261127-000000.json").write_text(json.dumps(run))
    return folder


def gate(tmp_path: Path, head: list[dict], base: list[dict] | None, *extra: str) -> tuple[int, str]:
    """Run gate_cli.main on the runs given; return the exit status and the summary it appended."""
    summary = tmp_path / "summary.md"
    args = ["--head", str(write_runs(tmp_path / "head", head)), "--summary", str(summary), *gate_thresholds(), *extra]
    if base is not None:
        args += ["--base", str(write_runs(tmp_path / "base", base))]
    status = gate_cli.main(args)
    return status, summary.read_text()


def table(markdown: str) -> dict[str, list[str]]:
    """Return the summary table's rows by metric name: [baseline, this change, change]."""
    rows = [line.strip("|").split(" | ") for line in markdown.splitlines() if line.startswith("| ")]
    return {row[0].strip(): [cell.strip() for cell in row[1:]] for row in rows if len(row) == 4}


def test_unchanged_model_passes_with_zero_change(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runs = [run_metadata(seed, accuracy) for seed, accuracy in enumerate([99.39, 99.25, 99.31])]
    status, markdown = gate(tmp_path, runs, runs)
    assert status == 0
    assert markdown.startswith("## Gate: ✅ Pass")
    rows = table(markdown)
    assert rows["Test accuracy, mean"] == ["99.32%", "99.32%", "+0.00 pts"]
    assert rows["Test accuracy, min"] == ["99.25%", "99.25%", "+0.00 pts"]
    assert rows["Test loss, mean"][2] == "+0.0000"
    assert rows["Parameters (budget: fewer than 25,000)"] == ["23,338", "23,338", "+0"]
    assert "::error::" not in capsys.readouterr().out


def test_drop_beyond_the_margin_fails(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = [run_metadata(seed, 99.4) for seed in range(3)]
    head = [run_metadata(seed, 98.4) for seed in range(3)]
    status, markdown = gate(tmp_path, head, base, "--min-accuracy", "95")
    assert status == 1
    assert markdown.startswith("## Gate: ❌ Fail")
    assert "mean test accuracy fell by 1.00 points (99.40% to 98.40%), more than the margin of 0.20" in markdown
    assert table(markdown)["Test accuracy, mean"] == ["99.40%", "98.40%", "-1.00 pts"]
    assert "::error::mean test accuracy fell by 1.00 points" in capsys.readouterr().out


def test_drop_of_exactly_the_margin_passes(tmp_path: Path) -> None:
    base = [run_metadata(seed, 99.3) for seed in range(3)]
    head = [run_metadata(seed, 99.1) for seed in range(3)]
    assert gate(tmp_path, head, base, "--margin", "0.2")[0] == 0
    assert gate(tmp_path / "tighter", head, base, "--margin", "0.19")[0] == 1


def test_missing_baseline_applies_only_the_absolute_gates(tmp_path: Path) -> None:
    head = [run_metadata(seed, 99.3) for seed in range(3)]
    reason = "the base commit 0123456789ab has no train.py"
    status, markdown = gate(tmp_path, head, None, "--no-base-reason", reason)
    assert status == 0
    assert f"No baseline: {reason}." in markdown
    assert table(markdown)["Test accuracy, mean"] == ["n/a", "99.30%", "n/a"]
    status, markdown = gate(tmp_path / "floor", [run_metadata(0, 94.0)], None, "--min-accuracy", "95")
    assert status == 1 and "below the floor of 95.00%" in markdown


def test_empty_baseline_folder_counts_as_none(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    head = write_runs(tmp_path / "head", [run_metadata(0, 99.3)])
    args = ["--head", str(head), "--base", str(tmp_path / "base"), "--summary", str(tmp_path / "s"), *gate_thresholds()]
    assert gate_cli.main(args) == 0
    assert "No baseline" in (tmp_path / "s").read_text()


def test_odd_base_sections_count_as_missing(tmp_path: Path) -> None:
    status, markdown = gate(tmp_path, [run_metadata(0, 99.25)], [{"metrics": None, "config": [1]}])
    assert status == 0
    assert table(markdown)["Test accuracy, mean"] == ["n/a", "99.25%", "n/a"]


def test_older_base_format_shows_n_a(tmp_path: Path) -> None:
    old = {"metrics": {"test_accuracy": 99.2, "train_seconds": 3.0}}
    status, markdown = gate(tmp_path, [run_metadata(0, 99.25)], [old])
    assert status == 0
    rows = table(markdown)
    assert rows["Test loss, mean"] == ["n/a", "0.1350", "n/a"]
    assert rows["Parameters (budget: fewer than 25,000)"] == ["n/a", "23,338", "n/a"]
    assert rows["Test accuracy, mean"] == ["99.20%", "99.25%", "+0.05 pts"]
    assert "grey:" not in markdown and "red: this change" in markdown


@pytest.mark.parametrize(("parameters", "status"), [(24_999, 0), (25_000, 1)])
def test_parameter_budget_is_a_gate(parameters: int, status: int, tmp_path: Path) -> None:
    answer, markdown = gate(tmp_path, [run_metadata(0, 99.5, parameters=parameters)], [run_metadata(0, 99.3)])
    assert answer == status
    assert ("break the budget of 25,000" in markdown) == bool(status)


def test_a_head_that_raises_the_budget_in_its_own_model_still_fails(tmp_path: Path) -> None:
    head = tmp_path / "head"
    shutil.copytree(ROOT, head, ignore=shutil.ignore_patterns(".git", "data", "models", "runs", "tests", ".*cache*"))
    model = (head / "model.py").read_text()
    wider = model.replace("PARAMETER_BUDGET = 25_000", "PARAMETER_BUDGET = 60_000")
    wider = wider.replace("CHANNELS = (16, 32, 48)", "CHANNELS = (16, 48, 64)")
    assert wider.count("60_000") == 1 and wider.count("(16, 48, 64)") == 1
    (head / "model.py").write_text(wider)
    spec = importlib.util.spec_from_file_location("head_model", head / "model.py")
    head_model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(head_model)
    parameters = head_model.count_parameters(head_model.MnistCNN())
    assert 25_000 < parameters < 60_000
    write_runs(head / "runs" / "head", [run_metadata(0, 99.6, parameters=parameters)])
    result = run_script("tools.gate", "--head", "runs/head", *gate_thresholds(), cwd=head)
    assert result.returncode == 1
    assert f"::error::parameters {parameters} break the budget of 25,000" in result.stdout


def test_slower_training_warns_but_passes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    status, markdown = gate(tmp_path, [run_metadata(0, 99.3, seconds=7.0)], [run_metadata(0, 99.3, seconds=3.0)])
    assert status == 0
    assert "⚠️ training took 2.33 times as long" in markdown
    assert "::warning::training took 2.33 times" in capsys.readouterr().out


def test_missing_head_results_exit_two(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert gate_cli.main(["--head", str(tmp_path / "nothing"), *gate_thresholds()]) == 2
    assert capsys.readouterr().err.startswith("error: no mnist_cnn_*.json under")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "mnist_cnn_x.json").write_text("{not json")
    assert gate_cli.main(["--head", str(tmp_path / "bad"), *gate_thresholds()]) == 2


def test_summary_holds_per_seed_details_and_a_well_formed_chart(tmp_path: Path) -> None:
    base = [run_metadata(seed, 99.3) for seed in range(2)]
    head = [run_metadata(seed, 99.2) for seed in range(2)]
    _, markdown = gate(tmp_path, head, base)
    details = markdown[markdown.index("<details>") : markdown.index("</details>")]
    assert details.count("| this change |") == 2 and details.count("| the baseline |") == 2
    block = re.search(r"```mermaid\n(.*?)\n```", markdown, re.DOTALL)
    assert block, markdown
    lines = block.group(1).splitlines()
    chart = lines[lines.index("xychart-beta") :]
    assert lines[0] == "---" and lines[lines.index("xychart-beta") - 1] == "---"
    x_axis = re.fullmatch(r'\s+x-axis "[^"]+" \[(.*)\]', chart[2])
    y_axis = re.fullmatch(r'\s+y-axis "[^"]+" (-?[\d.]+) --> (-?[\d.]+)', chart[3])
    assert x_axis and y_axis
    points = len(x_axis.group(1).split(", "))
    series = [re.fullmatch(r"\s+line \[(.*)\]", line) for line in chart[4:]]
    assert points == len(CURVE) and len(series) == 2 and all(series)
    low, high = float(y_axis.group(1)), float(y_axis.group(2))
    for match in series:
        values = [float(value) for value in match.group(1).split(", ")]
        assert len(values) == points and all(math.isfinite(v) and low <= v <= high for v in values)


@pytest.mark.parametrize(
    ("accuracy", "message", "colour"),
    [
        (99.123, "99.12%", "brightgreen"),
        (98.5, "98.50%", "green"),
        (95.0, "95.00%", "yellow"),
        (94.99, "94.99%", "red"),
    ],
)
def test_badge_message_and_colour(accuracy: float, message: str, colour: str) -> None:
    badge = gate_cli.accuracy_badge(accuracy)
    assert badge == {"schemaVersion": 1, "label": "accuracy", "message": message, "color": colour}


def test_badge_shows_the_heads_mean_over_seeds(tmp_path: Path) -> None:
    badge = tmp_path / "badge" / "accuracy.json"
    runs = [run_metadata(seed, accuracy) for seed, accuracy in enumerate([99.30, 99.20, 99.40])]
    status, _ = gate(tmp_path, runs, None, "--badge", str(badge))
    assert status == 0
    assert json.loads(badge.read_text(), parse_constant=pytest.fail)["message"] == "99.30%"


def test_the_json_of_a_real_run_passes_the_gate(
    trained: train.TrainResult, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert gate_cli.main(["--head", str(trained.metadata_path.parent), *gate_thresholds()]) == 0
    rows = table(capsys.readouterr().out)
    metrics = trained.metadata["metrics"]
    assert rows["Test accuracy, mean"][1] == f"{metrics['test_accuracy']:.2f}%"
    assert rows["Test accuracy, one view, mean"][1] == f"{metrics['test_accuracy_one_view']:.2f}%"


def test_base_runs_from_before_the_recipe_are_ordered_by_their_seeds(tmp_path: Path) -> None:
    base = [{"metrics": {"test_accuracy": 99.3}, "config": {"seed": seed}} for seed in (1, 0)]
    _, markdown = gate(tmp_path, [run_metadata(0, 99.3), run_metadata(1, 99.3)], base)
    seeds = [line.split(" | ")[1] for line in markdown.splitlines() if line.startswith("| the baseline | ")]
    assert seeds == ["0", "1"]
