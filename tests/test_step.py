"""mnist_cnn/step.py: the eager step trains as the recipe says; on CUDA the graphed step trains like the eager one."""

import pytest
import torch

from mnist_cnn.optim import Muon, ScheduledOptimizers
from mnist_cnn.recipe import Recipe
from mnist_cnn.step import GraphedStep, eager_step, make_step
from model import MnistCNN

RECIPE = Recipe(batch_size=32, adamw_lr=0.03, muon_lr=0.1)


def batches(device: torch.device, count: int, size: int = 32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Return count seeded batches of random images and labels on device."""
    generator = torch.Generator().manual_seed(0)
    return [
        (
            torch.randn(size, 1, 28, 28, generator=generator).to(device),
            torch.randint(0, 10, (size,), generator=generator).to(device),
        )
        for _ in range(count)
    ]


def trained(device: torch.device, graphed: bool, steps: int = 12) -> MnistCNN:
    """Return a seeded model trained with the graphed or the eager step: steps full batches, then a partial one."""
    torch.manual_seed(0)
    model = MnistCNN().to(device)
    optimizers = ScheduledOptimizers(model, RECIPE, total_steps=steps + 1)
    step = GraphedStep(model, optimizers, RECIPE, None) if graphed else eager_step(model, optimizers, 0.1, None)
    for inputs, targets in batches(device, steps) + batches(device, 1, size=7):
        step(inputs, targets)
    assert optimizers.steps_taken == steps + 1  # the schedules advanced once a step, replayed or not
    return model


def test_eager_step_lowers_the_loss() -> None:
    torch.manual_seed(0)
    model = MnistCNN()
    optimizers = ScheduledOptimizers(model, RECIPE, total_steps=30)
    inputs, targets = batches(torch.device("cpu"), 1)[0]
    step = make_step(model, optimizers, RECIPE, None)
    losses = [step(inputs, targets)[1].item() for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0]


def test_muon_takes_its_learning_rate_from_a_tensor_alike() -> None:
    weights = [torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(seed)) for seed in (0, 0)]
    for weight, rate in zip(weights, (0.1, torch.tensor(0.1)), strict=True):
        weight.grad = torch.ones_like(weight)
        Muon([weight], RECIPE.muon_momentum).step(rate)
    torch.testing.assert_close(weights[0], weights[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_graphed_step_trains_like_the_eager_one() -> None:
    device = torch.device("cuda")
    graphed, eager = trained(device, graphed=True), trained(device, graphed=False)
    for (name, tensor), other in zip(graphed.state_dict().items(), eager.state_dict().values(), strict=True):
        torch.testing.assert_close(tensor, other, rtol=1e-3, atol=1e-4, msg=name)
