"""mnist_cnn/optim.py: Muon's orthogonalisation and step, which optimiser trains what, and that the recipe learns."""

import pytest
import torch
from torch import nn

from mnist_cnn.optim import Muon, make_scheduled_optimizers, orthogonalize
from mnist_cnn.recipe import Recipe
from model import MnistCNN

MOMENTUM = Recipe().muon_momentum


@pytest.mark.parametrize("shape", [(32, 144), (48, 288), (144, 32)])
def test_orthogonalize_evens_out_singular_values(shape: tuple[int, int]) -> None:
    matrix = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    before = torch.linalg.svdvals(matrix)
    after = torch.linalg.svdvals(orthogonalize(matrix))
    assert orthogonalize(matrix).shape == shape
    assert before.max() / before.min() > 2
    assert after.max() / after.min() < 1.5
    assert 0.5 < after.min() and after.max() < 1.3


def conv_with_grad(scale: float) -> nn.Conv2d:
    """Return a 3x3 convolution 8 to 16 with seeded weights times scale and a seeded gradient."""
    generator = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, bias=False)
    with torch.no_grad():
        conv.weight.copy_(scale * torch.randn(conv.weight.shape, generator=generator))
    conv.weight.grad = torch.randn(conv.weight.shape, generator=generator)
    return conv


def test_muon_step_ignores_the_filters_scale() -> None:
    small, large = conv_with_grad(1.0), conv_with_grad(50.0)
    for conv in (small, large):
        Muon([conv.weight], lr=0.1, momentum=MOMENTUM).step()
    torch.testing.assert_close(small.weight, large.weight)
    assert small.weight.norm().item() == pytest.approx(16**0.5, rel=0.2)


def test_muon_step_moves_against_the_gradient() -> None:
    conv = conv_with_grad(1.0)
    before = conv.weight.detach().clone()
    Muon([conv.weight], lr=0.1, momentum=MOMENTUM).step()
    rescaled = before * 16**0.5 / before.norm()
    assert torch.sum((conv.weight - rescaled) * conv.weight.grad) < 0


def test_muon_skips_weights_without_gradient() -> None:
    conv = conv_with_grad(1.0)
    conv.weight.grad = None
    before = conv.weight.detach().clone()
    Muon([conv.weight], lr=0.1, momentum=MOMENTUM).step()
    torch.testing.assert_close(conv.weight, before)


def test_recipe_trains_every_parameter_once_with_muon_on_later_convolutions() -> None:
    model = MnistCNN()
    schedules = make_scheduled_optimizers(model, Recipe(), total_steps=10)
    by_optimizer = {
        type(schedule.optimizer).__name__: [p for group in schedule.optimizer.param_groups for p in group["params"]]
        for schedule in schedules
    }
    convolutions = [layer.weight for layer in model.modules() if isinstance(layer, nn.Conv2d)]
    assert [id(p) for p in by_optimizer["Muon"]] == [id(p) for p in convolutions[1:]]
    trained = by_optimizer["Muon"] + by_optimizer["AdamW"]
    assert sorted(id(p) for p in trained) == sorted(id(p) for p in model.parameters())


@pytest.mark.parametrize("warmup", [0.1, 0.5])
def test_both_optimisers_warm_up_over_the_recipes_share_of_the_steps(warmup: float) -> None:
    model = MnistCNN()
    schedules = make_scheduled_optimizers(model, Recipe(warmup_fraction=warmup), total_steps=100)
    rates: list[list[float]] = [[] for _ in schedules]
    for _ in range(100):
        for schedule, seen in zip(schedules, rates, strict=True):
            seen.append(schedule.get_last_lr()[0])
            schedule.optimizer.step()  # no gradients: nothing moves, only the schedule advances
            schedule.step()
    for seen in rates:
        assert seen.index(max(seen)) == round(warmup * 100) - 1  # the peak ends the warm-up, for Muon and AdamW alike
