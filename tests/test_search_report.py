"""mnist_cnn/search_report.py: the best trials in order, the paired verdict on new seeds, the winner's command."""

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from mnist_cnn.recipe import recipe_for
from mnist_cnn.search_report import report_markdown, winner_command

SPACE = {"adamw_lr": FloatDistribution(0.005, 0.1, log=True)}


def trial(number: int, value: float, adamw_lr: float) -> optuna.trial.FrozenTrial:
    """Return a trained trial as a study holds it."""
    made = optuna.trial.create_trial(
        params={"adamw_lr": adamw_lr},
        distributions=SPACE,
        value=value,
        user_attrs={"parameters": 23_338, "accuracy_one_view": value - 0.1},
    )
    made.number = number
    return made


def report(best: list[float], default: list[float]) -> str:
    """Return the report of three trials whose best (trial 1) scored best against default on new seeds."""
    trials = [trial(0, 99.1, 0.02), trial(1, 99.3, 0.05), trial(2, 99.2, 0.03)]
    confirmation = {"trial": 1, "seeds": list(range(1000, 1000 + len(best))), "best": best, "default": default}
    confirmation |= {"best_parameters": 23_338, "default_parameters": 23_338}
    return report_markdown("quick", "Three trials.", trials, ["adamw_lr"], recipe_for(1), confirmation)


def test_trials_are_listed_best_first_and_the_winner_command_comes_last() -> None:
    lines = report([99.3, 99.4], [99.2, 99.25]).splitlines()
    rows = [line for line in lines if line.startswith("| ") and line[2].isdigit()]
    assert [row.split(" | ")[0] for row in rows[:3]] == ["| 1", "| 2", "| 0"]
    assert lines[-1].strip() == "python train.py --epochs 1 --set adamw_lr=0.05"
    assert "Trials: 3 complete." in lines[2]


@pytest.mark.parametrize(
    ("best", "default", "better"),
    [
        ([99.30, 99.31, 99.32, 99.33], [99.20, 99.20, 99.20, 99.20], True),  # +0.115, tiny spread
        ([99.30, 99.10, 99.40, 99.05], [99.20, 99.20, 99.20, 99.20], False),  # +0.0125, wide spread
        ([99.45, 99.20, 99.45, 99.20], [99.20, 99.20, 99.20, 99.20], False),  # +0.125: beyond one error, not two
        ([99.10, 99.10, 99.10, 99.10], [99.20, 99.20, 99.21, 99.20], False),  # worse
    ],
)
def test_the_verdict_needs_two_standard_errors(best: list[float], default: list[float], better: bool) -> None:
    text = report(best, default)
    assert ("is better than the default beyond two standard errors" in text) == better
    assert ("Not better than the default" in text) == (not better)
    assert f"higher on {sum(b > d for b, d in zip(best, default, strict=True))} of 4 seeds" in text


def test_the_paired_figures_are_computed_from_the_seeds() -> None:
    text = report([99.3, 99.5], [99.2, 99.2])
    assert "Paired difference: +0.200 points (standard deviation 0.141, standard error 0.100;" in text


def test_the_winner_command_changes_only_what_differs_from_the_recipe_for_the_epochs() -> None:
    assert winner_command(recipe_for(3), {"adamw_lr": 0.035}) == "python train.py --epochs 3"
    narrowed = recipe_for(5).__class__(**{**recipe_for(5).__dict__, "width": 0.5})
    assert winner_command(narrowed, {"muon_lr": 0.2}) == "python train.py --epochs 5 --set muon_lr=0.2 --set width=0.5"


def test_trial_states_are_counted() -> None:
    pruned = optuna.trial.create_trial(state=TrialState.PRUNED, user_attrs={"parameters": 30_000})
    trials = [trial(0, 99.1, 0.02), pruned]
    confirmation = {"trial": 0, "seeds": [1000, 1001], "best": [99.1, 99.2], "default": [99.0, 99.1]}
    confirmation |= {"best_parameters": 1, "default_parameters": 1}
    text = report_markdown("quick", "Two trials.", trials, ["adamw_lr"], recipe_for(1), confirmation)
    assert "Trials: 1 complete, 1 pruned." in text


def costly(number: int, value: float, flops: float, adamw_lr: float) -> optuna.trial.FrozenTrial:
    """Return a trained trial of a search with a cost, as a study holds it."""
    made = optuna.trial.create_trial(
        params={"adamw_lr": adamw_lr},
        distributions=SPACE,
        values=[value, flops],
        user_attrs={"parameters": 23_338, "accuracy_one_view": value - 0.1, "flops": flops},
    )
    made.number = number
    return made


def test_a_search_with_a_cost_lists_its_front_cheapest_first_and_the_confirmed_trials_command() -> None:
    trials = [costly(0, 99.3, 6e11, 0.05), costly(1, 99.2, 3e11, 0.03), costly(2, 99.1, 5e11, 0.02)]
    confirmation = {"trial": 1, "seeds": [1000, 1001], "best": [99.2, 99.3], "default": [99.3, 99.3]}
    confirmation |= {"best_parameters": 1, "default_parameters": 1, "best_flops": 3e11, "default_flops": 6e11}
    text = report_markdown("costly", "Three.", trials, ["adamw_lr"], recipe_for(1), confirmation, front=[0, 1])
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split(" | ")[0] for row in rows[:2]] == ["| 1", "| 0"] and "| 300 |" in rows[0]
    assert "Pareto front" in text and "(1 parameters, 300 GFLOP of training)" in text
    assert text.splitlines()[-1].strip() == "python train.py --epochs 1 --set adamw_lr=0.03"
