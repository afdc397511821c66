"""The report of a recipe search: the best trials or the Pareto front, the paired confirmation, the winner's command,
the pictures.
"""

import io
import math
import statistics
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import matplotlib
import optuna
from optuna.trial import FrozenTrial, TrialState

from mnist_cnn.files import write_file
from mnist_cnn.recipe import Recipe, recipe_for

matplotlib.use("Agg")  # draw to files, with no display
import matplotlib.pyplot as plt
from optuna.visualization import matplotlib as optuna_plots

BEST_ROWS = 5


def winner_command(start: Recipe, params: dict) -> str:
    """Return the train.py command that trains start with params on all training images and scores the test set."""
    winner, default = asdict(replace(start, **params)), asdict(recipe_for(start.epochs))
    changed = {name: value for name, value in winner.items() if value != default[name]}
    settings = " ".join(f"--set {name}={value:.6g}" for name, value in changed.items())
    return f"python train.py --epochs {start.epochs} {settings}".rstrip()


def accuracy(trial: FrozenTrial) -> float:
    """Return a trained trial's validation accuracy, its first objective."""
    return trial.values[0]


def gigaflops(value: float | None) -> str:
    """Return a count of floating-point operations in GFLOP, or n/a."""
    return "n/a" if value is None else f"{value / 1e9:,.0f}"


def report_markdown(
    name: str,
    description: str,
    trials: list[FrozenTrial],
    fields: list[str],
    start: Recipe,
    confirmation: dict,
    front: list[int] | None = None,
) -> str:
    """Return a study's report: the best of its trials (with front, the trial numbers of the Pareto front of accuracy
    against cost: those trials, cheapest first), the paired confirmation and the command that trains the confirmed
    trial's fields on top of start, the recipe the search started from. confirmation holds that trial's number, the
    new seeds, both recipes' accuracies on them (best, default), their parameters and floating-point operations;
    two seeds at least.
    """
    completed = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=accuracy, reverse=True)
    counts = {state.name.lower(): sum(trial.state == state for trial in trials) for state in TrialState}
    if front is None:
        shown, heading = completed[:BEST_ROWS], "The best trials"
    else:
        shown = sorted((t for t in completed if t.number in front), key=lambda t: t.user_attrs["flops"])
        heading = "The Pareto front of accuracy against the floating-point operations of training, cheapest first"
    lines = [
        f"# Study {name}",
        "",
        f"{description} Trials: " + ", ".join(f"{count} {state}" for state, count in counts.items() if count) + ".",
        "",
        f"{heading}:",
        "",
        "| trial | validation accuracy | one view | parameters | training GFLOP | " + " | ".join(fields) + " |",
        "| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in fields) + " |",
    ]
    for trial in shown:
        values = " | ".join(f"{trial.params[name]:.4g}" for name in fields)
        one_view = trial.user_attrs.get("accuracy_one_view", math.nan)
        lines.append(
            f"| {trial.number} | {accuracy(trial):.3f}% | {one_view:.3f}% | {trial.user_attrs['parameters']:,} | "
            f"{gigaflops(trial.user_attrs.get('flops'))} | {values} |"
        )
    seeds = confirmation["seeds"]
    differences = [best - default for best, default in zip(confirmation["best"], confirmation["default"], strict=True)]
    mean, spread = statistics.mean(differences), statistics.stdev(differences)
    error = spread / math.sqrt(len(seeds))
    verdict = (
        "The best trial is better than the default beyond two standard errors."
        if mean - 2 * error > 0
        else "Not better than the default beyond two standard errors: keep the default unless more seeds say so."
    )
    rows = zip(seeds, confirmation["best"], confirmation["default"], strict=True)
    lines += [
        "",
        f"## Paired confirmation on new seeds {seeds[0]} to {seeds[-1]}",
        "",
        f"Trial {confirmation['trial']} ({confirmation['best_parameters']:,} parameters, "
        f"{gigaflops(confirmation.get('best_flops'))} GFLOP of training) against the default recipe "
        f"({confirmation['default_parameters']:,} parameters, {gigaflops(confirmation.get('default_flops'))} GFLOP), "
        f"each trained on the same seeds; the best of {len(completed)} noisy trials is optimistic by construction, "
        "so only these new seeds decide.",
        "",
        "| seed | best trial | default | difference |",
        "| --- | --- | --- | --- |",
        *(f"| {seed} | {best:.2f}% | {default:.2f}% | {best - default:+.2f} |" for seed, best, default in rows),
        "",
        f"Paired difference: {mean:+.3f} points (standard deviation {spread:.3f}, standard error {error:.3f}; "
        f"higher on {sum(difference > 0 for difference in differences)} of {len(seeds)} seeds). {verdict}",
        "",
        "Train this trial's recipe on all 60,000 training images and score the test set with:",
        "",
        f"    {winner_command(start, next(t for t in completed if t.number == confirmation['trial']).params)}",
        "",
    ]
    return "\n".join(lines)


def write_pictures(study: optuna.Study, folder: Path) -> list[Path]:
    """Write the study's history, the importance of each field and accuracy against parameters as PNG files; for a
    study with a cost, accuracy against it too, with the Pareto front.
    """
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    written = []
    named = {"target": accuracy, "target_name": "validation accuracy (%)"}
    drawings = {
        "history.png": lambda: optuna_plots.plot_optimization_history(study, **named),
        "importance.png": lambda: optuna_plots.plot_param_importances(study, **named),
        "accuracy_vs_parameters.png": lambda: accuracy_against_parameters(completed),
    }
    if len(study.directions) == 2:
        front = {trial.number for trial in study.best_trials}
        drawings["accuracy_vs_cost.png"] = lambda: accuracy_against_cost(completed, front)
    for name, draw in drawings.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                axes = draw()
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue  # too few trials for this picture (importance needs two trained ones)
        buffer = io.BytesIO()
        axes.figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        plt.close(axes.figure)
        write_file(folder / name, buffer.getvalue())
        written.append(folder / name)
    return written


def accuracy_against_parameters(trials: list) -> matplotlib.axes.Axes:
    """Return a scatter of each trained trial's validation accuracy against its model's parameters."""
    _, axes = plt.subplots(figsize=(6, 4))
    axes.scatter([trial.user_attrs["parameters"] for trial in trials], [accuracy(trial) for trial in trials])
    axes.set_xlabel("parameters")
    axes.set_ylabel("validation accuracy (%)")
    axes.set_title("Accuracy against parameters")
    return axes


def accuracy_against_cost(trials: list, front: set[int]) -> matplotlib.axes.Axes:
    """Return a scatter of each trained trial's validation accuracy against its training's floating-point
    operations, the Pareto front joined by a line.
    """
    _, axes = plt.subplots(figsize=(6, 4))
    axes.scatter([trial.values[1] / 1e9 for trial in trials], [accuracy(trial) for trial in trials], label="trials")
    best = sorted((trial for trial in trials if trial.number in front), key=lambda trial: trial.values[1])
    axes.plot([t.values[1] / 1e9 for t in best], [accuracy(t) for t in best], "o-", color="C3", label="Pareto front")
    axes.set_xlabel("floating-point operations of training (GFLOP)")
    axes.set_ylabel("validation accuracy (%)")
    axes.set_title("Accuracy against cost")
    axes.legend()
    return axes
