"""mnist_cnn/cost.py: a recipe's training counted in floating-point operations, as the network's shapes say."""

from dataclasses import replace

import pytest

from mnist_cnn import cost
from mnist_cnn.recipe import recipe_for

# Multiply-adds of one image's forward pass through the default network, from its shapes (model.py).
FORWARD_MACS = 12 * 12 * 16 * 5 * 5 + 12 * 12 * 16 * 16 * 9 + 6 * 6 * 64 * 16 * 9 + 64 * 9 * 10
FIRST_LAYER_MACS = 12 * 12 * 16 * 5 * 5  # its input needs no gradient
SMALL_BATCH = replace(recipe_for(1), batch_size=16)  # the same work an image, counted quickly


@pytest.fixture(scope="module")
def default_step() -> int:
    """The floating-point operations of one step of the default recipe."""
    return cost.step_flops(recipe_for(1))


def test_a_step_counts_forward_backward_and_muon(default_step: int) -> None:
    per_image = default_step / recipe_for(1).batch_size
    forward_and_backward = 2 * (3 * FORWARD_MACS - FIRST_LAYER_MACS)  # two operations a multiply-add
    assert forward_and_backward < per_image < 1.02 * forward_and_backward  # Muon's share: under 2% at the default batch


def test_a_run_counts_every_step_of_every_epoch(default_step: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cost, "step_flops", lambda recipe: default_step)
    assert cost.training_flops(recipe_for(1), 60_096) == 313 * default_step  # 313 batches of 192
    assert cost.training_flops(replace(recipe_for(1), epochs=3), 60_097) == 3 * 314 * default_step


def test_cost_grows_with_width_and_the_first_layer_at_full_resolution() -> None:
    small = cost.step_flops(SMALL_BATCH)
    assert cost.step_flops(replace(SMALL_BATCH, width=0.5)) < 0.3 * small  # about a quarter
    assert cost.step_flops(replace(SMALL_BATCH, full_resolution=True)) > small
    assert cost.step_flops(replace(SMALL_BATCH, first_padding=2)) > 1.25 * small  # 14x14 maps: (14 / 12)² the work
