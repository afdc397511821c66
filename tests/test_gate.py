"""tools/gate.py: every rule just inside and just outside its line, each applied to the right aggregate, gate.toml
read strictly, the test files checked, and real shipped files judged by the gate's own scoring.
"""

import hashlib
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import ROOT, run_script
from mnist_cnn.data import MNIST_FILES
from mnist_cnn.onnx_model import stored_numbers
from tools import gate as gate_cli
from tools.gate import Shipped, Side, Thresholds, judge, read_thresholds

THRESHOLDS = read_thresholds(ROOT / "gate.toml")
CURVE = [1.5 - 0.05 * part for part in range(20)]


def shipped(seed: int, accuracy: float, claimed: float | None = None, **changes: object) -> Shipped:
    """A shipped model as the gate would find it, with the JSON train.py writes beside it."""
    metrics = {"test_accuracy": accuracy if claimed is None else claimed, "test_images": 10_000, "train_seconds": 3.0}
    metrics |= {"test_loss": 0.125, "train_loss_curve": CURVE}
    run = Shipped(
        f"seed-{seed}/mnist_cnn_x.onnx",
        sha256=f"{seed:064x}",
        numbers=23_609,
        images=10_000,
        accuracy=accuracy,
        loss=0.125,
        report={"metrics": metrics, "recipe": {"seed": seed}},
    )
    return replace(run, **changes)


def side(accuracies: list[float], label: str = "this change", **changes: object) -> Side:
    """One side with a model a seed scoring accuracies."""
    return Side(label, [shipped(seed, accuracy, **changes) for seed, accuracy in enumerate(accuracies)])


def failures(head: Side, base: Side | None = None, thresholds: Thresholds = THRESHOLDS) -> list[str]:
    return judge(head, base, thresholds).failures


GOOD = [99.3, 99.35, 99.25, 99.3, 99.3]


def test_gate_toml_sets_five_seeds_and_the_documented_lines() -> None:
    assert THRESHOLDS == Thresholds(
        seeds=5,
        margin=0.1,
        mean_floor=99.2,
        seed_floor=99.0,
        parameter_budget=25_000,
        claim_tolerance=0.05,
        claim_loss_tolerance=0.001,
        time_ratio=1.5,
    )


def test_an_unchanged_model_passes() -> None:
    assert failures(side(GOOD), side(GOOD, "base")) == []


@pytest.mark.parametrize("count", [4, 6])
def test_a_base_of_another_number_of_models_fails(count: int) -> None:
    assert failures(side(GOOD), side([99.3] * count, "base")) == [f"the base ships {count} models, not one a seed (5)"]


@pytest.mark.parametrize(("count", "passes"), [(4, False), (5, True), (6, False)])
def test_one_model_a_seed_of_gate_toml(count: int, passes: bool) -> None:
    found = failures(side([99.3] * count))
    assert (found == []) == passes, found


def test_the_same_file_for_two_seeds_fails() -> None:
    head = side(GOOD)
    head.runs[3].sha256 = head.runs[1].sha256
    assert failures(head) == ["the change ships the same model file for two seeds"]


@pytest.mark.parametrize(("numbers", "passes"), [(24_999, True), (25_000, False)])
def test_the_budget_applies_to_every_seeds_file(numbers: int, passes: bool) -> None:
    head = side(GOOD)
    head.runs[2].numbers = numbers  # the others store 23,609: neither their mean nor their least may decide
    assert (failures(head) == []) == passes


@pytest.mark.parametrize(("lowest", "passes"), [(99.0, True), (98.99, False)])
def test_the_seed_floor_applies_to_every_seed(lowest: float, passes: bool) -> None:
    accuracies = [99.5, 99.5, lowest, 99.5, 99.5]  # a mean well above the mean floor
    found = failures(side(accuracies))
    assert (found == []) == passes, found


@pytest.mark.parametrize(("last", "passes"), [(99.2, True), (99.15, False)])
def test_the_mean_floor_applies_to_the_mean(last: float, passes: bool) -> None:
    accuracies = [99.2, 99.2, 99.2, 99.2, last]  # mean 99.20, or 99.19; every seed above the seed floor
    found = failures(side(accuracies))
    assert (found == []) == passes, found
    assert passes or found == [f"mean test accuracy 99.19% is below the floor of {THRESHOLDS.mean_floor:.2f}%"]


@pytest.mark.parametrize(("drop", "passes"), [(0.1, True), (0.11, False)])
def test_the_margin_applies_to_the_means(drop: float, passes: bool) -> None:
    base = [99.5, 99.4, 99.45, 99.5, 99.4]
    head = [value - drop for value in base]
    found = failures(side(head), side(base, "base"))
    assert (found == []) == passes, found


def test_drift_from_a_base_just_above_the_floor_fails_at_the_floor() -> None:
    base = [99.21, 99.22, 99.2, 99.24, 99.23]  # mean 99.22, just above the floor
    head = [value - 0.15 for value in base]  # within no margin of the base: 0.15 > 0.10; and below the floor
    found = failures(side(head), side(base, "base"))
    assert any("below the floor of 99.20%" in failure for failure in found)
    assert any("fell by 0.15 points" in failure for failure in found)


@pytest.mark.parametrize(("gap", "passes"), [(0.05, True), (-0.05, True), (0.06, False), (-0.06, False)])
def test_each_seeds_own_figure_must_agree_with_the_gates(gap: float, passes: bool) -> None:
    head = side(GOOD)
    head.runs[1] = shipped(1, 99.35, claimed=99.35 + gap)
    head.runs[2] = shipped(2, 99.25, claimed=99.25 - gap)  # the mean of the claims still equals the gate's mean
    found = failures(head)
    assert (found == []) == passes, found
    assert passes or "so the change's own scoring is broken" in found[0]


@pytest.mark.parametrize(("gap", "passes"), [(0.001, True), (-0.001, True), (0.0011, False), (-0.0011, False)])
def test_each_seeds_own_loss_must_agree_with_the_gates(gap: float, passes: bool) -> None:
    head = side(GOOD)
    head.runs[3].report["metrics"]["test_loss"] = head.runs[3].loss + gap
    found = failures(head)
    assert (found == []) == passes, found
    assert passes or "reports a test loss of" in found[0]


def test_a_change_that_scores_other_images_or_reports_nothing_fails() -> None:
    head = side(GOOD)
    head.runs[0].report["metrics"]["test_images"] = 60_000
    head.runs[1].report = {}
    head.runs[2].report["metrics"]["test_loss"] = float("nan")
    found = failures(head)
    assert "the change scored 60,000 images, the gate the 10,000 test images" in found[0]
    assert "reports no test accuracy or loss" in found[1] and "reports no test accuracy or loss" in found[2]


def test_a_file_name_cannot_write_into_the_summary() -> None:
    assert gate_cli.shown_name("seed-0/`x` | **y**.onnx") == "seed-0/?x??????y??.onnx"


def test_a_file_the_gate_cannot_run_fails() -> None:
    head = side(GOOD)
    head.runs[4] = Shipped("seed-4/odd.onnx", problem="onnxruntime cannot run seed-4/odd.onnx: no such op")
    assert failures(head) == ["seed-4/odd.onnx cannot be judged: onnxruntime cannot run seed-4/odd.onnx: no such op"]


@pytest.mark.parametrize(("seconds", "warned"), [(4.5, False), (4.53, True)])
def test_slower_training_warns_above_the_ratio_but_passes(seconds: float, warned: bool) -> None:
    verdict = judge(slow(seconds), side(GOOD, "base"), THRESHOLDS)
    assert verdict.failures == []
    assert bool(verdict.warnings) == warned


def slow(seconds: float) -> Side:
    """The good change, each seed reporting seconds of training (the base reports 3.0)."""
    head = side(GOOD)
    for run in head.runs:
        run.report["metrics"]["train_seconds"] = seconds
    return head


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("seeds = 5", "unknown keys [], missing keys ['margin'"),
        (Path(ROOT / "gate.toml").read_text() + "\nmargins = 0.2\n", "unknown keys ['margins']"),
        (Path(ROOT / "gate.toml").read_text().replace("seeds = 5", "seeds = 2.5"), "seeds must be a whole number"),
        (Path(ROOT / "gate.toml").read_text().replace("seeds = 5", "seeds = 0"), "seeds must be a whole number"),
        (Path(ROOT / "gate.toml").read_text().replace("seed_floor = 99.0", "seed_floor = 101"), "a percentage"),
        (Path(ROOT / "gate.toml").read_text().replace("margin = 0.1", "margin = -0.1"), "margin must be a number"),
        (Path(ROOT / "gate.toml").read_text().replace("margin = 0.1", 'margin = "0.1"'), "margin must be a number"),
        ("seeds = [", "cannot read the gate's thresholds"),
    ],
)
def test_a_bad_gate_toml_is_refused_with_one_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "gate.toml").write_text(text)
    with pytest.raises(gate_cli.GateInputError, match=re.escape(message)):
        read_thresholds(tmp_path / "gate.toml")


def copy_test_files(folder: Path, data_dir: str, change: bytes = b"") -> str:
    """Copy MNIST's test files into folder/MNIST/raw, the labels' last byte changed when change is given."""
    raw = folder / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES[2:]:
        shutil.copyfile(Path(data_dir) / "MNIST" / "raw" / name, raw / name)
    if change:
        labels = raw / MNIST_FILES[3]
        labels.write_bytes(labels.read_bytes()[:-1] + change)
    return str(folder)


def test_the_test_files_must_be_the_published_ones(tmp_path: Path, data_dir: str) -> None:
    images, labels = gate_cli.verified_test_set(copy_test_files(tmp_path / "good", data_dir))
    assert images.shape == (10_000, 1, 28, 28) and images.dtype == np.float32 and len(labels) == 10_000
    last = (Path(data_dir) / "MNIST" / "raw" / MNIST_FILES[3]).read_bytes()[-1]
    relabelled = copy_test_files(tmp_path / "relabelled", data_dir, bytes([(last + 1) % 10]))
    with pytest.raises(gate_cli.GateInputError, match="is not MNIST's published test file"):
        gate_cli.verified_test_set(relabelled)


def ship(folder: Path, run: Path, seeds: int) -> Path:
    """Copy a shipped run into folder/seed-K for each seed, its JSON naming that seed; return folder."""
    for seed in range(seeds):
        target = folder / f"seed-{seed}"
        shutil.copytree(run, target)
        report_path = next(target.glob("*.json"))
        report = json.loads(report_path.read_text())
        report["recipe"]["seed"] = seed
        report_path.write_text(json.dumps(report))
    return folder


@pytest.fixture
def one_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A gate.toml like the real one that asks for one seed, in use by the gate."""
    path = tmp_path / "gate.toml"
    path.write_text((ROOT / "gate.toml").read_text().replace("seeds = 5", "seeds = 1"))
    monkeypatch.setattr(gate_cli, "THRESHOLDS_FILE", path)
    return path


def run_gate(head: Path, *extra: str, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    status = gate_cli.main(["--head", str(head), *extra])
    return status, capsys.readouterr().out


def test_a_real_shipped_run_passes_and_is_judged_from_its_own_file(
    shipped_run: Path, one_seed: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    head = ship(tmp_path / "head", shipped_run, 1)
    badge = tmp_path / "badge.json"
    status, out = run_gate(head, "--base", str(head), "--badge", str(badge), "--judge", "a test", capsys=capsys)
    assert status == 0, out
    onnx_file = next(head.rglob("*.onnx"))
    digest = hashlib.sha256(onnx_file.read_bytes()).hexdigest()
    row = next(line for line in out.splitlines() if line.startswith("| this change | 0 |"))
    assert f"`{digest[:16]}`" in row
    assert re.search(r"Judged by `tools/gate.py` and `gate.toml` of commit `\w+` \(a test\)", out)
    message = json.loads(badge.read_text())["message"]
    assert message == re.search(r"\*\*(\d+\.\d\d%)\*\*", out).group(1)


def test_a_wider_model_that_reports_a_small_count_fails_on_what_it_stores(
    shipped_run: Path, one_seed: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    head = ship(tmp_path / "head", shipped_run, 1)
    path = next(head.rglob("*.onnx"))
    model = onnx.load(path)
    just_over = THRESHOLDS.parameter_budget - stored_numbers(model)  # the count reaches the budget: one too many
    model.graph.initializer.append(numpy_helper.from_array(np.zeros(just_over, np.float32), "unused_capacity"))
    path.write_bytes(model.SerializeToString())
    report_path = path.with_suffix(".json")
    report = json.loads(report_path.read_text())
    report["num_parameters"] = 10_000
    report_path.write_text(json.dumps(report))
    status, out = run_gate(head, capsys=capsys)
    assert status == 1
    assert re.search(r"::error::seed-0/\S+\.onnx stores 25,000 numbers; the budget is fewer than 25,000", out)


def test_a_hostile_file_fails_with_its_reason(
    shipped_run: Path, one_seed: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    head = ship(tmp_path / "head", shipped_run, 1)
    next(head.rglob("*.onnx")).write_bytes(b"\x08\x07" * 1000)
    status, out = run_gate(head, capsys=capsys)
    assert status == 1 and "cannot be judged:" in out


def test_no_shipped_model_exits_two(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert gate_cli.main(["--head", str(tmp_path)]) == 2
    assert "the change shipped no model to judge" in capsys.readouterr().err


def test_a_base_that_cannot_be_judged_fails_the_gate(
    shipped_run: Path, one_seed: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    head = ship(tmp_path / "head", shipped_run, 1)
    base = ship(tmp_path / "base", shipped_run, 1)
    next(base.rglob("*.onnx")).write_bytes(b"")
    status, out = run_gate(head, "--base", str(base), capsys=capsys)
    assert status == 1 and "::error::the base's seed-0/" in out and "cannot be judged" in out
    status, out = run_gate(head, "--base", str(tmp_path / "empty"), capsys=capsys)
    assert status == 1 and "::error::the base ships 0 models, not one a seed (1)" in out


def test_the_command_line_runs_the_gate_from_its_checkout(tmp_path: Path) -> None:
    result = run_script("tools.gate", "--head", str(tmp_path / "nothing"))
    assert result.returncode == 2 and result.stderr.startswith("error: no *.onnx under")


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


def test_summary_holds_both_sides_each_file_and_a_well_formed_chart() -> None:
    head, base = side(GOOD), side(GOOD, "base")
    verdict = judge(head, base, THRESHOLDS)
    markdown = gate_cli.summary_markdown(head, base, verdict, THRESHOLDS, "", "Judged by a test.")
    assert markdown.startswith("## Gate: ✅ Pass\n\nJudged by a test.")
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in markdown.splitlines() if "|" in line}
    assert rows["Test accuracy, mean"] == ["99.30%", "99.30%", "+0.00 pts |"]
    assert rows["Numbers a model stores, largest (budget: fewer than 25,000)"] == ["23,609", "23,609", "+0 |"]
    details = markdown[markdown.index("<details>") : markdown.index("</details>")]
    assert details.count("| this change |") == 5 and details.count("| base |") == 5
    block = re.search(r"```mermaid\n(.*?)\n```", markdown, re.DOTALL).group(1).splitlines()
    chart = block[block.index("xychart-beta") :]
    x_axis = re.fullmatch(r'\s+x-axis "[^"]+" \[(.*)\]', chart[2])
    y_axis = re.fullmatch(r'\s+y-axis "[^"]+" (-?[\d.]+) --> (-?[\d.]+)', chart[3])
    series = [re.fullmatch(r"\s+line \[(.*)\]", line) for line in chart[4:]]
    assert x_axis and y_axis and len(series) == 2 and all(series)
    low, high = float(y_axis.group(1)), float(y_axis.group(2))
    for match in series:
        values = [float(value) for value in match.group(1).split(", ")]
        assert len(values) == len(CURVE) and all(low <= value <= high for value in values)
