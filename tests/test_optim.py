"""The training recipe's optimisers: Muon's orthogonalisation and step, who trains what, the allocator setting."""

import resource
import sys

import pytest
import torch
from torch import nn

import train
from model import MnistCNN


@pytest.mark.parametrize("shape", [(32, 144), (48, 288), (144, 32)])
def test_orthogonalize_evens_out_singular_values(shape: tuple[int, int]) -> None:
    matrix = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    before = torch.linalg.svdvals(matrix)
    after = torch.linalg.svdvals(train.orthogonalize(matrix))
    assert train.orthogonalize(matrix).shape == shape
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
        train.Muon([conv.weight], lr=0.1).step()
    torch.testing.assert_close(small.weight, large.weight)
    assert small.weight.norm().item() == pytest.approx(16**0.5, rel=0.2)


def test_muon_step_moves_against_the_gradient() -> None:
    conv = conv_with_grad(1.0)
    before = conv.weight.detach().clone()
    train.Muon([conv.weight], lr=0.1).step()
    rescaled = before * 16**0.5 / before.norm()
    assert torch.sum((conv.weight - rescaled) * conv.weight.grad) < 0


def test_muon_skips_weights_without_gradient() -> None:
    conv = conv_with_grad(1.0)
    conv.weight.grad = None
    before = conv.weight.detach().clone()
    train.Muon([conv.weight], lr=0.1).step()
    torch.testing.assert_close(conv.weight, before)


def test_recipe_trains_every_parameter_once_with_muon_on_later_convolutions() -> None:
    model = MnistCNN()
    schedules = train.make_schedules(model, lr=0.03, muon_lr=0.1, total_steps=10)
    by_optimizer = {
        type(schedule.optimizer).__name__: [p for group in schedule.optimizer.param_groups for p in group["params"]]
        for schedule in schedules
    }
    convolutions = [layer.weight for layer in model.modules() if isinstance(layer, nn.Conv2d)]
    assert [id(p) for p in by_optimizer["Muon"]] == [id(p) for p in convolutions[1:]]
    trained = by_optimizer["Muon"] + by_optimizer["AdamW"]
    assert sorted(id(p) for p in trained) == sorted(id(p) for p in model.parameters())


def recipe_step(model: MnistCNN, schedules: list, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Take one training step of the recipe on images; return the loss before it."""
    loss = nn.functional.cross_entropy(model(images), labels)
    model.zero_grad(set_to_none=True)
    loss.backward()
    train.step_optimizers(schedules)
    return loss.item()


def test_recipe_lowers_the_loss_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    model = MnistCNN()
    schedules = train.make_schedules(model, lr=0.03, muon_lr=0.1, total_steps=30)
    images, labels = torch.randn(64, 1, 28, 28), torch.arange(64) % 10
    losses = [recipe_step(model, schedules, images, labels) for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.skipif(sys.platform != "linux", reason="keep_freed_memory tunes glibc's malloc, which only Linux has")
def test_kept_memory_is_reused_with_few_page_faults() -> None:
    # Measured on the 2-core VM over these ten steps: 9,000 to 20,000 page faults without it, under 200 with it.
    train.keep_freed_memory()
    model = MnistCNN().to(memory_format=torch.channels_last)
    schedules = train.make_schedules(model, lr=0.03, muon_lr=0.1, total_steps=20)
    images = torch.randn(128, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    labels = torch.arange(128) % 10
    faults = []
    for _ in range(15):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        recipe_step(model, schedules, images, labels)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    assert sum(faults[5:]) < 1000, faults
