"""The CI gate: this checkout's own code scores the ONNX files a change ships, and its base's, against gate.toml.

The workflow runs this file from the base commit's checkout, so the code that judges a change is code
the change cannot edit, and gate.toml beside it sets every threshold. For each side it reads the ONNX
file of each seed (and the JSON that train.py wrote beside it), counts every number each file stores
(mnist_cnn/onnx_model.py) and scores it with onnxruntime on the 10,000 MNIST test images, checked
against their published SHA-256. It fails (exit status 1) when the change ships another number of
models than gate.toml's seeds, the same file twice, or a file it cannot run; when a file stores the
budget or more; when a seed is below the seed floor, or the mean below the mean floor or below the
base's mean by more than the margin; or when the change's own test accuracy or loss of a seed differs
from the gate's by more than its tolerance (its scoring is then broken). A training time over the ratio
is a warning. It writes the job summary and, with --badge, a shields.io badge of the change's mean.
"""

import argparse
import hashlib
import json
import math
import re
import statistics
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from mnist_cnn.checkpoint import git_commit
from mnist_cnn.cli import BadInput, reports_errors
from mnist_cnn.data import MNIST_FILES, add_data_option, load_mnist
from mnist_cnn.files import WriteError, strict_json, write_file
from mnist_cnn.onnx_model import OnnxFileError, onnx_logits, onnx_session, read_onnx, stored_numbers

ROOT = Path(__file__).resolve().parents[1]
THRESHOLDS_FILE = ROOT / "gate.toml"
TEST_FILES_SHA256 = {
    MNIST_FILES[2]: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    MNIST_FILES[3]: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MODEL_PATTERN = "*.onnx"
MISSING = "n/a"
CURVE_COLOURS = ("#9e9e9e", "#d62728")
BADGE_COLOURS = ((99.0, "brightgreen"), (98.0, "green"), (95.0, "yellow"))
BADGE_FALLBACK_COLOUR = "red"
ON_THE_LINE = 1e-9  # a figure this close to a threshold counts as on it (float sums of accuracies drift by less)


class GateInputError(BadInput):
    """gate.toml, the test files or the change's folder cannot be used."""


@dataclass(frozen=True)
class Thresholds:
    """gate.toml: seeds of each side; the allowed drop of the mean (points); the floors of the mean and of every
    seed (%); the budget of stored numbers (a model must store fewer); the allowed gaps between the change's own
    test accuracy (points) and test loss and the gate's; the training-time ratio above which the gate warns.
    """

    seeds: int
    margin: float
    mean_floor: float
    seed_floor: float
    parameter_budget: int
    claim_tolerance: float
    claim_loss_tolerance: float
    time_ratio: float


def read_thresholds(path: Path) -> Thresholds:
    """Return the thresholds in path; raise GateInputError naming the first key that is missing, unknown or bad."""
    try:
        values = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise GateInputError(f"cannot read the gate's thresholds {path}: {error}") from None
    names = [item.name for item in fields(Thresholds)]
    unknown, missing = sorted(set(values) - set(names)), [name for name in names if name not in values]
    if unknown or missing:
        raise GateInputError(f"{path}: unknown keys {unknown}, missing keys {missing}; expected {', '.join(names)}")
    for item in fields(Thresholds):
        value = values[item.name]
        kind = int if item.type is int else (int, float)
        percentage = item.name.endswith("floor")
        valid = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
        valid = valid and (0 <= value <= 100 if percentage else value >= (1 if item.type is int else 0))
        if not valid:
            wanted = "a percentage" if percentage else f"a {'whole ' if item.type is int else ''}number"
            raise GateInputError(f"{path}: {item.name} must be {wanted}, not below zero, got {value!r}")
    return Thresholds(**values)


def verified_test_set(data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """Return MNIST's 10,000 test images (normalised, NCHW float32) and labels, after checking that both files are
    the published ones by their SHA-256.
    """
    images, labels = load_mnist(data_dir, train=False, device=torch.device("cpu"))
    for name, expected in TEST_FILES_SHA256.items():
        path = Path(data_dir) / "MNIST" / "raw" / name
        if hashlib.sha256(path.read_bytes()).hexdigest() != expected:
            raise GateInputError(f"{path} is not MNIST's published test file: its SHA-256 is not {expected}")
    return images.contiguous().numpy(), labels.numpy()


@dataclass
class Shipped:
    """One seed's shipped model as the gate saw it: its file, what it stores and how it scored, or why it could not
    be judged; and report, the JSON that the side's own train.py wrote beside it ({} when there is none).
    """

    name: str
    sha256: str = MISSING
    numbers: int | None = None
    images: int | None = None
    accuracy: float | None = None
    loss: float | None = None
    problem: str | None = None
    report: dict | None = None

    def reported(self, key: str) -> float | None:
        """Return the finite number that the side's own JSON holds under metrics[key], or None."""
        metrics = (self.report or {}).get("metrics")
        value = metrics.get(key) if isinstance(metrics, dict) else None
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        return float(value) if ok else None

    def seed(self) -> str:
        """Return the seed the side's own JSON names, as text, or n/a."""
        recipe = (self.report or {}).get("recipe")
        seed = recipe.get("seed") if isinstance(recipe, dict) else None
        return str(seed) if isinstance(seed, int) else MISSING


def read_report(onnx_path: Path) -> dict:
    """Return the JSON object beside an ONNX file (same name, .json), or {} when it is missing or not an object."""
    try:
        report = json.loads(onnx_path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return {}
    return report if isinstance(report, dict) else {}


def judge_file(path: Path, name: str, images: np.ndarray, labels: np.ndarray) -> Shipped:
    """Return what the gate finds in one ONNX file: its hash, the numbers it stores, its accuracy and loss."""
    shipped = Shipped(name, report=read_report(path))
    try:
        data, model = read_onnx(path)
        shipped.sha256 = hashlib.sha256(data).hexdigest()
        shipped.numbers = stored_numbers(model)
        logits = onnx_logits(onnx_session(data, name), images, name).astype(np.float64)
    except OnnxFileError as error:
        shipped.problem = str(error)
        return shipped
    shifted = logits - logits.max(1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    shipped.loss = float(-log_probabilities[np.arange(len(labels)), labels].mean())
    shipped.accuracy = 100 * float((logits.argmax(1) == labels).mean())
    shipped.images = len(labels)
    return shipped


def seed_order(shipped: Shipped) -> tuple:
    """Sort by the seed a run names, numbers by value, then by file name."""
    seed = shipped.seed()
    return (not seed.isdigit(), int(seed) if seed.isdigit() else 0, shipped.name)


def shown_name(name: str) -> str:
    """Return a file's name as the summary may show it: letters, digits, '.', '_', '-' and '/' kept, others as '?', so
    that a name cannot write into the summary's Markdown.
    """
    return re.sub(r"[^A-Za-z0-9._/-]", "?", name)


def judge_side(folder: Path, images: np.ndarray, labels: np.ndarray) -> list[Shipped]:
    """Return every ONNX file under folder, judged, ordered by seed."""
    paths = sorted(folder.rglob(MODEL_PATTERN)) if folder.is_dir() else []
    shipped = [judge_file(path, shown_name(path.relative_to(folder).as_posix()), images, labels) for path in paths]
    return sorted(shipped, key=seed_order)


@dataclass
class Side:
    """The shipped models of one side (the change or its base), one per seed."""

    label: str
    runs: list[Shipped]

    def accuracies(self) -> list[float]:
        """Return the gate's test accuracy of every model it could score."""
        return [run.accuracy for run in self.runs if run.accuracy is not None]

    def losses(self) -> list[float]:
        """Return the gate's test loss of every model it could score."""
        return [run.loss for run in self.runs if run.loss is not None]

    def numbers(self) -> list[int]:
        """Return the numbers each model that could be read stores."""
        return [run.numbers for run in self.runs if run.numbers is not None]

    def reported(self, key: str) -> list[float]:
        """Return what the side's own JSON files report under metrics[key], where they do."""
        return [value for run in self.runs if (value := run.reported(key)) is not None]

    def curve(self) -> list[float] | None:
        """Return the reported training-loss curve averaged over the runs, or None when they hold none alike."""
        curves = [((run.report or {}).get("metrics") or {}).get("train_loss_curve") for run in self.runs]
        curves = [c for c in curves if isinstance(c, list) and c and all(isinstance(v, int | float) for v in c)]
        if not curves or len({len(c) for c in curves}) != 1:
            return None
        return [statistics.mean(points) for points in zip(*curves, strict=True)]


@dataclass
class Verdict:
    """The outcome: failures (the job fails) and warnings (it does not)."""

    failures: list[str]
    warnings: list[str]


def judge(head: Side, base: Side | None, thresholds: Thresholds) -> Verdict:
    """Apply every rule of the gate to head, against base when there is one."""
    failures, warnings = [], []
    if len(head.runs) != thresholds.seeds:
        failures.append(f"the change ships {len(head.runs)} models; gate.toml asks for one a seed, {thresholds.seeds}")
    hashes = [run.sha256 for run in head.runs if run.problem is None]
    if len(set(hashes)) != len(hashes):
        failures.append("the change ships the same model file for two seeds")
    for run in head.runs:
        if run.problem is not None:
            failures.append(f"{run.name} cannot be judged: {run.problem}")
            continue
        if run.numbers >= thresholds.parameter_budget:
            failures.append(
                f"{run.name} stores {run.numbers:,} numbers; the budget is fewer than {thresholds.parameter_budget:,}"
            )
        if run.accuracy < thresholds.seed_floor - ON_THE_LINE:
            failures.append(
                f"{run.name} scores {run.accuracy:.2f}%, below the floor of every seed, {thresholds.seed_floor:.2f}%"
            )
        claimed, images, claimed_loss = (run.reported(key) for key in ("test_accuracy", "test_images", "test_loss"))
        if claimed is None or claimed_loss is None:
            failures.append(f"{run.name}: the change reports no test accuracy or loss, so its scoring is broken")
        elif images is not None and images != run.images:
            failures.append(
                f"{run.name}: the change scored {images:,.0f} images, the gate the {run.images:,} test images, "
                "so the change's own scoring is broken"
            )
        elif abs(claimed - run.accuracy) > thresholds.claim_tolerance + ON_THE_LINE:
            failures.append(
                f"{run.name}: the change reports {claimed:.2f}%, the gate finds {run.accuracy:.2f}%; more than "
                f"{thresholds.claim_tolerance:.2f} points apart, so the change's own scoring is broken"
            )
        elif abs(claimed_loss - run.loss) > thresholds.claim_loss_tolerance + ON_THE_LINE:
            failures.append(
                f"{run.name}: the change reports a test loss of {claimed_loss:.4f}, the gate finds {run.loss:.4f}; "
                f"more than {thresholds.claim_loss_tolerance:g} apart, so the change's own scoring is broken"
            )
    if base is not None:
        if len(base.runs) != thresholds.seeds:
            failures.append(f"the base ships {len(base.runs)} models, not one a seed ({thresholds.seeds})")
        failures += [f"the base's {run.name} cannot be judged: {run.problem}" for run in base.runs if run.problem]
    head_mean = pick(head.accuracies(), statistics.mean)
    if head_mean is not None and head_mean < thresholds.mean_floor - ON_THE_LINE:
        failures.append(f"mean test accuracy {head_mean:.2f}% is below the floor of {thresholds.mean_floor:.2f}%")
    base_mean = pick(base.accuracies(), statistics.mean) if base else None
    if head_mean is not None and base_mean is not None and base_mean - head_mean > thresholds.margin + ON_THE_LINE:
        failures.append(
            f"mean test accuracy fell by {base_mean - head_mean:.2f} points ({base_mean:.2f}% to {head_mean:.2f}%), "
            f"more than the margin of {thresholds.margin:.2f}"
        )
    head_seconds = pick(head.reported("train_seconds"), statistics.mean)
    base_seconds = pick(base.reported("train_seconds"), statistics.mean) if base else None
    if head_seconds is not None and base_seconds and head_seconds > thresholds.time_ratio * base_seconds:
        warnings.append(
            f"training took {head_seconds / base_seconds:.2f} times as long as the base's ({base_seconds:.1f} s to "
            f"{head_seconds:.1f} s; warned above {thresholds.time_ratio:.2f}x, as runner timings are noisy)"
        )
    return Verdict(failures, warnings)


def number(value: float | None, unit: str = "", digits: int = 2) -> str:
    """Return value formatted with digits decimals and unit, or n/a."""
    return MISSING if value is None else f"{value:,.{digits}f}{unit}"


def change(head: float | None, base: float | None, unit: str = "", digits: int = 2) -> str:
    """Return head - base with its sign, or n/a when either is missing."""
    return MISSING if head is None or base is None else f"{head - base:+,.{digits}f}{unit}"


def table_row(name: str, head: float | None, base: float | None, unit: str, digits: int = 2) -> str:
    """Return one row of the summary table: the base's figure, the change's and the change between them."""
    difference = change(head, base, " pts" if unit == "%" else unit, digits)
    return f"| {name} | {number(base, unit, digits)} | {number(head, unit, digits)} | {difference} |"


def pick(values: list[float], how: Callable[[list[float]], float]) -> float | None:
    """Return how(values) (mean, min or max), or None for no values."""
    return how(values) if values else None


def sides_row(
    name: str,
    head: Side,
    base: Side | None,
    values: Callable[[Side], list[float]],
    how: Callable[[list[float]], float],
    unit: str,
    digits: int = 2,
) -> str:
    """Return the summary table's row of how(values(side)) for the base and the change."""
    return table_row(name, pick(values(head), how), pick(values(base) if base else [], how), unit, digits)


def mermaid_curves(head: Side, base: Side | None) -> list[str]:
    """Return a Mermaid xychart-beta block of the mean reported training-loss curves (base grey, change red), or no
    lines. A base whose runs hold no curve, or one of another length, is left out of the chart.
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
        f"Training loss (label-smoothed) as each side's train.py reports it, mean over seeds, at each of "
        f"{len(head_curve)} equal parts of training ({legend}):",
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
    head: Side, base: Side | None, verdict: Verdict, thresholds: Thresholds, no_base_reason: str, judge_line: str
) -> str:
    """Return the job summary: verdict, who judged, the table of both sides, each shipped file and the curves."""
    head_accuracies, base_accuracies = head.accuracies(), base.accuracies() if base else []
    head_mean, base_mean = pick(head_accuracies, statistics.mean), pick(base_accuracies, statistics.mean)
    status = "❌ Fail" if verdict.failures else "✅ Pass"
    seeds = f"{len(head.runs)} seed" + ("s" if len(head.runs) != 1 else "")
    rules = (
        f"the gate fails below -{thresholds.margin:.2f} points, under {thresholds.mean_floor:.2f}% on the mean "
        f"or {thresholds.seed_floor:.2f}% on any seed"
    )
    lines = [f"## Gate: {status}", "", judge_line, ""]
    if base is not None:
        lines.append(
            f"Mean test accuracy over {seeds}: **{number(head_mean, '%')}** for {head.label} against "
            f"{number(base_mean, '%')} for {base.label} ({change(head_mean, base_mean, ' points')}; {rules})."
        )
    else:
        lines.append(
            f"Mean test accuracy over {seeds}: **{number(head_mean, '%')}** ({rules}). No base to compare with: "
            f"{no_base_reason}. Every other rule applies."
        )
    notes = [f"- ❌ {failure}" for failure in verdict.failures] + [f"- ⚠️ {warning}" for warning in verdict.warnings]
    lines += ["", *notes, ""] if notes else [""]
    lines += [
        "| Metric | Base | This change | Change |",
        "| --- | --- | --- | --- |",
        table_row("Test accuracy, mean", head_mean, base_mean, "%"),
        sides_row("Test accuracy, min", head, base, Side.accuracies, min, "%"),
        sides_row("Test accuracy, max", head, base, Side.accuracies, max, "%"),
        sides_row("Test loss, mean", head, base, Side.losses, statistics.mean, "", 4),
        sides_row(
            "Test accuracy, mean, as its own train.py reports it",
            *(head, base, lambda side: side.reported("test_accuracy"), statistics.mean, "%"),
        ),
        sides_row(
            f"Numbers a model stores, largest (budget: fewer than {thresholds.parameter_budget:,})",
            *(head, base, Side.numbers, max, "", 0),
        ),
        sides_row(
            "Training seconds, mean, as reported",
            *(head, base, lambda side: side.reported("train_seconds"), statistics.mean, " s", 1),
        ),
        "",
        "<details><summary>Each shipped model</summary>",
        "",
        "| Side | Seed | File | SHA-256 | Numbers stored | Test accuracy | Reported | Test loss |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for side in (base, head):
        for run in side.runs if side else []:
            lines.append(
                f"| {side.label} | {run.seed()} | `{run.name}` | `{run.sha256[:16]}` | {number(run.numbers, '', 0)} | "
                f"{number(run.accuracy, '%')} | {number(run.reported('test_accuracy'), '%')} | "
                f"{number(run.loss, '', 4)} |"
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
    """Run the gate with argv; return the exit status (0 pass, 1 a rule failed, 2 unusable input)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--head", type=Path, required=True, help="folder holding the change's ONNX file of each seed")
    add("--base", type=Path, help="folder holding the base's ONNX file of each seed, which must all be judged")
    add("--head-label", default="this change", help="name of the change in the summary")
    add("--base-label", default="the base", help="name of the base in the summary")
    add("--no-base-reason", default="none was given", help="the summary's words on why there is no --base")
    add("--judge", default="this checkout", help="what the summary calls the checkout that judges")
    add_data_option(parser)
    add("--summary", type=Path, help="also append the markdown summary to this file")
    add("--badge", type=Path, help="write a shields.io badge of the change's mean test accuracy here")
    args = parser.parse_args(argv)
    thresholds = read_thresholds(THRESHOLDS_FILE)
    if not (args.head.is_dir() and any(args.head.rglob(MODEL_PATTERN))):
        raise GateInputError(f"no {MODEL_PATTERN} under {args.head}: the change shipped no model to judge")
    images, labels = verified_test_set(args.data_dir)
    head = Side(args.head_label, judge_side(args.head, images, labels))
    base = Side(args.base_label, judge_side(args.base, images, labels)) if args.base else None
    verdict = judge(head, base, thresholds)
    commit = git_commit(ROOT) or "unknown (not a git checkout)"
    judge_line = (
        f"Judged by `tools/gate.py` and `gate.toml` of commit `{commit[:12]}` ({args.judge}): each shipped ONNX file "
        f"scored with onnxruntime on the {len(labels):,} MNIST test images."
    )
    markdown = summary_markdown(head, base, verdict, thresholds, args.no_base_reason, judge_line)
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
    head_mean = pick(head.accuracies(), statistics.mean)
    if args.badge and head_mean is not None:
        write_file(args.badge, strict_json(accuracy_badge(head_mean)))
    return 1 if verdict.failures else 0


if __name__ == "__main__":
    sys.exit(main())
