"""The CI gate: a change's runs against its baseline's, the job summary, the verdict and the accuracy badge.

Reads every mnist_cnn_*.json that train.py wrote under the head folder and the base folder (one per
seed), and fails (exit status 1) when the head's mean test accuracy is below the baseline's by more
than the margin, when any head run is below the accuracy floor, or when the head breaks the
parameter budget. A training time over the allowed ratio of the baseline's is a warning only.
Every threshold is an option (the workflow sets them once, in its env): the gate takes none from the
code it judges. With --badge it also writes a shields.io endpoint badge of the head's mean test accuracy.
"""

import argparse
import json
import math
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mnist_cnn.cli import BadInput, percentage, positive_float, positive_int, reports_errors
from mnist_cnn.files import WriteError, strict_json, write_file

RESULT_PATTERN = "mnist_cnn_*.json"
MISSING = "n/a"
CURVE_COLOURS = ("#9e9e9e", "#d62728")
BADGE_COLOURS = ((99.0, "brightgreen"), (98.0, "green"), (95.0, "yellow"))
BADGE_FALLBACK_COLOUR = "red"


class CompareError(BadInput):
    """The head's results are missing or unreadable."""


@dataclass
class Side:
    """The runs of one side (head or baseline), one metadata dict per seed, ordered by seed."""

    label: str
    runs: list[dict]

    def values(self, key: str) -> list[float]:
        """Return the finite numbers that the runs hold under metrics[key]."""
        found = [run.get("metrics", {}).get(key) for run in self.runs]
        return [float(v) for v in found if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)]

    def mean(self, key: str) -> float | None:
        """Return the mean of metrics[key] over the runs, or None when no run holds it."""
        values = self.values(key)
        return statistics.mean(values) if values else None

    def parameters(self) -> int | None:
        """Return the parameter count of the runs (the largest, should they differ), or None when unknown."""
        counts = [run["num_parameters"] for run in self.runs if isinstance(run.get("num_parameters"), int)]
        return max(counts) if counts else None

    def seed(self, run: dict) -> str:
        """Return the seed a run was trained with, as text (from its recipe, or its config in older runs)."""
        seed = run_seed(run)
        return str(seed) if seed is not None else MISSING

    def curve(self) -> list[float] | None:
        """Return the training-loss curve averaged over the runs, or None when the runs hold none alike."""
        curves = [run.get("metrics", {}).get("train_loss_curve") for run in self.runs]
        curves = [c for c in curves if isinstance(c, list) and c and all(isinstance(v, int | float) for v in c)]
        if not curves or len({len(c) for c in curves}) != 1:
            return None
        return [statistics.mean(points) for points in zip(*curves, strict=True)]


def run_seed(run: dict) -> object:
    """Return the seed a run's JSON records: under recipe, or under config in runs from before the recipe."""
    recipe = run.get("recipe")
    return recipe.get("seed") if isinstance(recipe, dict) else run.get("config", {}).get("seed")


def read_side(folder: Path, label: str) -> Side:
    """Return the runs found under folder; a run file that is not JSON is an error."""
    runs = []
    for path in sorted(folder.rglob(RESULT_PATTERN)) if folder.is_dir() else []:
        try:
            run = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise CompareError(f"cannot read {path}: {error}") from None
        if not isinstance(run, dict):
            raise CompareError(f"{path} is not the metadata JSON of a train.py run")
        for section in ("metrics", "config"):
            if not isinstance(run.get(section), dict):
                run[section] = {}
        runs.append(run)
    runs.sort(key=lambda run: str(run_seed(run)).zfill(12))
    return Side(label, runs)


def number(value: float | None, unit: str = "", digits: int = 2) -> str:
    """Return value formatted with digits decimals and unit, or n/a."""
    return MISSING if value is None else f"{value:.{digits}f}{unit}"


def change(head: float | None, base: float | None, unit: str = "", digits: int = 2) -> str:
    """Return head - base with its sign, or n/a when either is missing."""
    return MISSING if head is None or base is None else f"{head - base:+.{digits}f}{unit}"


def table_row(
    name: str, head: Side, base: Side | None, key: str, pick: Callable[[list[float]], float], unit: str, digits: int = 2
) -> str:
    """Return one row of the summary table: pick (mean, min, max) of metrics[key] on each side, and the change."""
    head_values, base_values = head.values(key), base.values(key) if base else []
    head_value = pick(head_values) if head_values else None
    base_value = pick(base_values) if base_values else None
    change_unit = " pts" if unit == "%" else unit
    return (
        f"| {name} | {number(base_value, unit, digits)} | {number(head_value, unit, digits)} | "
        f"{change(head_value, base_value, change_unit, digits)} |"
    )


def run_figure(run: dict, key: str, unit: str = "", digits: int = 2) -> str:
    """Return one run's metrics[key] formatted, or n/a."""
    value = run.get("metrics", {}).get(key)
    return number(value if isinstance(value, int | float) else None, unit, digits)


@dataclass(frozen=True)
class Thresholds:
    """What the gate applies: the allowed drop of mean accuracy (points), the floor of every seed (%, or None),
    the parameter budget (a model must have fewer) and the training-time ratio above which it warns.
    """

    margin: float
    min_accuracy: float | None
    parameter_budget: int
    time_ratio: float


@dataclass
class Verdict:
    """The outcome: failures (the job fails) and warnings (it does not)."""

    failures: list[str]
    warnings: list[str]


def judge(head: Side, base: Side | None, thresholds: Thresholds) -> Verdict:
    """Apply the gates to head, against base when there is one."""
    margin, min_accuracy, time_ratio = thresholds.margin, thresholds.min_accuracy, thresholds.time_ratio
    failures, warnings = [], []
    head_accuracy = head.mean("test_accuracy")
    if head_accuracy is None:
        failures.append("the head's runs hold no test accuracy")
    parameters = head.parameters()
    if parameters is None or parameters >= thresholds.parameter_budget:
        failures.append(
            f"parameters {parameters if parameters is not None else MISSING} break the budget of "
            f"{thresholds.parameter_budget:,} (set by the gate's --parameter-budget)"
        )
    if min_accuracy is not None and any(value < min_accuracy for value in head.values("test_accuracy")):
        failures.append(
            f"a seed's test accuracy {min(head.values('test_accuracy')):.2f}% is below the floor of {min_accuracy:.2f}%"
        )
    if base is not None:
        base_accuracy = base.mean("test_accuracy")
        if head_accuracy is not None and base_accuracy is not None and base_accuracy - head_accuracy > margin + 1e-9:
            failures.append(
                f"mean test accuracy fell by {base_accuracy - head_accuracy:.2f} points "
                f"({base_accuracy:.2f}% to {head_accuracy:.2f}%), more than the margin of {margin:.2f}"
            )
        head_seconds, base_seconds = head.mean("train_seconds"), base.mean("train_seconds")
        if head_seconds is not None and base_seconds and head_seconds > time_ratio * base_seconds:
            warnings.append(
                f"training took {head_seconds / base_seconds:.2f} times as long as the baseline's "
                f"({base_seconds:.1f} s to {head_seconds:.1f} s; warned above {time_ratio:.2f}x, "
                "as runner timings are noisy)"
            )
    return Verdict(failures, warnings)


def mermaid_curves(head: Side, base: Side | None) -> list[str]:
    """Return a Mermaid xychart-beta block of the mean training-loss curves (baseline grey, head red), or no lines.

    A baseline whose runs hold no curve, or one of another length, is left out of the chart.
    """
    head_curve = head.curve()
    if head_curve is None:
        return []
    sides = [(head.label, head_curve, CURVE_COLOURS[1])]
    base_curve = base.curve() if base else None
    if base is not None and base_curve is not None and len(base_curve) == len(head_curve):
        sides.insert(0, (base.label, base_curve, CURVE_COLOURS[0]))
    values = [value for _, curve, _ in sides for value in curve]
    legend = "; ".join(f"{'grey' if colour == CURVE_COLOURS[0] else 'red'}: {label}" for label, _, colour in sides)
    return [
        f"Training loss (label-smoothed), mean over seeds, at each of {len(head_curve)} equal parts of training "
        f"({legend}):",
        "",
        "```mermaid",
        "---",
        "config:",
        "  themeVariables:",
        "    xyChart:",
        f'      plotColorPalette: "{", ".join(colour for _, _, colour in sides)}"',
        "---",
        "xychart-beta",
        '    title "Training loss, mean over seeds"',
        f'    x-axis "part of training" [{", ".join(str(part) for part in range(1, len(head_curve) + 1))}]',
        f'    y-axis "loss" {math.floor(min(values) * 10) / 10:.1f} --> {math.ceil(max(values) * 10) / 10:.1f}',
        *(f"    line [{', '.join(f'{value:.4f}' for value in curve)}]" for _, curve, _ in sides),
        "```",
        "",
    ]


def summary_markdown(
    head: Side, base: Side | None, verdict: Verdict, thresholds: Thresholds, no_base_reason: str
) -> str:
    """Return the job summary: headline, table of both sides, per-seed details and the training curves."""
    head_accuracy = head.mean("test_accuracy")
    base_accuracy = base.mean("test_accuracy") if base else None
    status = "❌ Fail" if verdict.failures else "✅ Pass"
    seeds = f"{len(head.runs)} seed" + ("s" if len(head.runs) != 1 else "")
    lines = [f"## Gate: {status}", ""]
    if base is not None:
        lines.append(
            f"Mean test accuracy over {seeds}: **{number(head_accuracy, '%')}** for {head.label} "
            f"against {number(base_accuracy, '%')} for {base.label} "
            f"({change(head_accuracy, base_accuracy, ' points')}; the gate fails below -{thresholds.margin:.2f})."
        )
    else:
        lines.append(
            f"Mean test accuracy over {seeds}: **{number(head_accuracy, '%')}**. "
            f"No baseline: {no_base_reason}. Only the absolute gates (accuracy floor, parameter budget) apply."
        )
    notes = [f"- ❌ {failure}" for failure in verdict.failures] + [f"- ⚠️ {warning}" for warning in verdict.warnings]
    lines += ["", *notes, ""] if notes else [""]

    base_parameters = base.parameters() if base else None
    head_parameters = head.parameters()
    lines += [
        "| Metric | Baseline | This change | Change |",
        "| --- | --- | --- | --- |",
        table_row("Test accuracy, mean", head, base, "test_accuracy", statistics.mean, "%"),
        table_row("Test accuracy, min", head, base, "test_accuracy", min, "%"),
        table_row("Test accuracy, max", head, base, "test_accuracy", max, "%"),
        table_row("Test accuracy, one view, mean", head, base, "test_accuracy_one_view", statistics.mean, "%"),
        table_row("Test loss, mean", head, base, "test_loss", statistics.mean, "", 4),
        table_row("Train accuracy, mean", head, base, "train_accuracy", statistics.mean, "%"),
        f"| Parameters (budget: fewer than {thresholds.parameter_budget:,}) | "
        f"{MISSING if base_parameters is None else f'{base_parameters:,}'} | "
        f"{MISSING if head_parameters is None else f'{head_parameters:,}'} | "
        f"{change(head_parameters, base_parameters, '', 0)} |",
        table_row("Training seconds, mean", head, base, "train_seconds", statistics.mean, " s", 1),
        "",
        "<details><summary>Per seed</summary>",
        "",
        "| Side | Seed | Test accuracy | Test loss | Train accuracy | Training seconds |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for side in (base, head):
        for run in side.runs if side else []:
            lines.append(
                f"| {side.label} | {side.seed(run)} | {run_figure(run, 'test_accuracy', '%')} | "
                f"{run_figure(run, 'test_loss', '', 4)} | {run_figure(run, 'train_accuracy', '%')} | "
                f"{run_figure(run, 'train_seconds', ' s', 1)} |"
            )
    lines += ["", "</details>", ""]
    lines += mermaid_curves(head, base)
    return "\n".join(lines)


def accuracy_badge(accuracy: float) -> dict:
    """Return a shields.io endpoint badge for a mean test accuracy in %."""
    colour = next((colour for floor, colour in BADGE_COLOURS if accuracy >= floor), BADGE_FALLBACK_COLOUR)
    return {"schemaVersion": 1, "label": "accuracy", "message": f"{accuracy:.2f}%", "color": colour}


@reports_errors()
def main(argv: list[str] | None = None) -> int:
    """Run the gate with argv; return the exit status (0 pass, 1 a gate failed, 2 no readable head results)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--head", type=Path, required=True, help="folder holding the change's run JSON files")
    add("--base", type=Path, help="folder holding the baseline's run JSON files (none: no baseline)")
    add("--head-label", default="this change", help="name of the head in the summary")
    add("--base-label", default="the baseline", help="name of the baseline in the summary")
    add("--no-base-reason", default="no results of a baseline were found", help="the summary's words with no base")
    add("--margin", type=positive_float, required=True, help="allowed drop of mean test accuracy, in points")
    add("--min-accuracy", type=percentage, required=True, help="floor of every head seed's test accuracy, in %%")
    add("--parameter-budget", type=positive_int, required=True, help="the head must have fewer parameters than this")
    add("--time-ratio", type=positive_float, required=True, help="warn when training takes this many times as long")
    add("--summary", type=Path, help="also append the markdown summary to this file")
    add("--badge", type=Path, help="write a shields.io badge of the head's mean test accuracy here")
    args = parser.parse_args(argv)
    thresholds = Thresholds(args.margin, args.min_accuracy, args.parameter_budget, args.time_ratio)
    head = read_side(args.head, args.head_label)
    if not head.runs:
        raise CompareError(f"no {RESULT_PATTERN} under {args.head}: the change's training produced no result")
    base = read_side(args.base, args.base_label) if args.base else None
    if base is not None and not base.runs:
        base = None
    verdict = judge(head, base, thresholds)
    markdown = summary_markdown(head, base, verdict, thresholds, args.no_base_reason)
    print(markdown)
    for warning in verdict.warnings:
        print(f"::warning::{warning}")
    for failure in verdict.failures:
        print(f"::error::{failure}")
    if args.summary:
        try:
            with args.summary.open("a") as summary:
                summary.write(markdown + "\n")
        except OSError as error:
            raise WriteError(f"cannot write {args.summary}: {error.strerror or error}") from None
    head_accuracy = head.mean("test_accuracy")
    if args.badge and head_accuracy is not None:
        write_file(args.badge, strict_json(accuracy_badge(head_accuracy)))
    return 1 if verdict.failures else 0


if __name__ == "__main__":
    sys.exit(main())
