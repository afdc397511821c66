"""mnist_cnn/optim.py: Muon's orthogonalisation and step, AdamW and schedules against torch.optim, who trains what."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from mnist_cnn.optim import AdamW, Muon, OneCycle, ScheduledOptimizers, orthogonalize
from mnist_cnn.recipe import Recipe
from model import MnistCNN

MOMENTUM = Recipe().muon_momentum
ROOT = Path(__file__).resolve().parents[1]


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
        Muon([conv.weight], MOMENTUM).step(0.1)
    torch.testing.assert_close(small.weight, large.weight)
    assert small.weight.norm().item() == pytest.approx(16**0.5, rel=0.2)


def test_muon_step_moves_against_the_gradient() -> None:
    conv = conv_with_grad(1.0)
    before = conv.weight.detach().clone()
    Muon([conv.weight], MOMENTUM).step(0.1)
    rescaled = before * 16**0.5 / before.norm()
    assert torch.sum((conv.weight - rescaled) * conv.weight.grad) < 0


def test_muon_skips_weights_without_gradient() -> None:
    conv = conv_with_grad(1.0)
    conv.weight.grad = None
    before = conv.weight.detach().clone()
    Muon([conv.weight], MOMENTUM).step(0.1)
    torch.testing.assert_close(conv.weight, before)


def test_recipe_trains_every_parameter_once_with_muon_on_later_convolutions() -> None:
    model = MnistCNN()
    optimizers = ScheduledOptimizers(model, Recipe(), total_steps=10)
    convolutions = [layer.weight for layer in model.modules() if isinstance(layer, nn.Conv2d)]
    assert [id(p) for p in optimizers.muon.weights] == [id(p) for p in convolutions[1:]]
    trained = optimizers.muon.weights + optimizers.adamw.params
    assert sorted(id(p) for p in trained) == sorted(id(p) for p in model.parameters())


@pytest.mark.parametrize("warmup", [0.1, 0.5])
def test_both_optimisers_warm_up_over_the_recipes_share_of_the_steps(warmup: float) -> None:
    optimizers = ScheduledOptimizers(MnistCNN(), Recipe(warmup_fraction=warmup), total_steps=100)
    rates: tuple[list[float], list[float]] = ([], [])
    for _ in range(100):
        rates[0].append(optimizers.muon_rate())
        rates[1].append(optimizers.adamw_schedule.rate(optimizers.steps_taken))
        optimizers.step()  # no gradients: nothing moves, only the schedules advance
    for seen in rates:
        assert seen.index(max(seen)) == round(warmup * 100) - 1  # the peak ends the warm-up, for Muon and AdamW alike


@pytest.mark.parametrize(("total_steps", "warmup"), [(375, 0.25), (100, 0.1), (7, 0.5), (9, 0.3)])
def test_one_cycle_gives_torchs_rates_and_momenta(total_steps: int, warmup: float) -> None:
    parameter = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.AdamW([parameter], lr=0.035)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.035, total_steps=total_steps, pct_start=warmup)
    ours = OneCycle(0.035, total_steps, warmup)
    for step in range(total_steps):
        group = optimizer.param_groups[0]
        assert ours.rate(step) == pytest.approx(group["lr"], rel=1e-12, abs=1e-15)
        assert ours.beta1(step) == pytest.approx(group["betas"][0], rel=1e-12)
        optimizer.step()
        schedule.step()


def test_a_one_step_warm_up_starts_at_the_peak() -> None:
    """Where torch's OneCycleLR divides by zero (warm-up of exactly one step), the warm-up is its last step."""
    assert OneCycle(0.1, 10, 0.1).rate(0) == pytest.approx(0.1)
    assert OneCycle(0.1, 10, 0.1).rate(1) < 0.1


def test_adamw_steps_as_torchs_does() -> None:
    generator = torch.Generator().manual_seed(0)
    start = [torch.randn(shape, generator=generator) for shape in [(16, 1, 5, 5), (16,), (10, 432)]]
    gradients = [[torch.randn(p.shape, generator=generator) for p in start] for _ in range(6)]
    ours, theirs = [p.clone() for p in start], [p.clone().requires_grad_() for p in start]
    adamw = AdamW(ours, weight_decay=0.01)
    reference = torch.optim.AdamW(theirs, lr=0.0, weight_decay=0.01, fused=True)
    for step, step_gradients in enumerate(gradients):
        lr, beta1 = 0.01 * (step + 1), 0.95 - 0.02 * step  # both change every step, as the schedule makes them
        for mine, torchs, gradient in zip(ours, theirs, step_gradients, strict=True):
            mine.grad, torchs.grad = gradient.clone(), gradient.clone()
        if step == 2:  # a step without the first parameter's gradient: it stays put, its count does not advance
            ours[0].grad = theirs[0].grad = None
            before = ours[0].clone()
        reference.param_groups[0].update(lr=lr, betas=(beta1, 0.999))
        adamw.step(lr, beta1)
        reference.step()
        if step == 2:
            torch.testing.assert_close(ours[0], before, rtol=0, atol=0)
    for mine, torchs in zip(ours, theirs, strict=True):
        torch.testing.assert_close(mine, torchs.detach(), rtol=0, atol=0)


def test_the_scheduled_optimisers_step_as_torchs_adamw_and_one_cycle_do() -> None:
    """What AdamW receives from the schedule at each step: torch's fused AdamW inside OneCycleLR, step for step."""
    torch.manual_seed(0)
    ours, theirs = MnistCNN(), MnistCNN()
    theirs.load_state_dict(ours.state_dict())
    recipe, steps = Recipe(), 12
    optimizers = ScheduledOptimizers(ours, recipe, total_steps=steps)
    names = [name for name, p in ours.named_parameters() if any(p is q for q in optimizers.adamw.params)]
    trained_by_adamw = [dict(theirs.named_parameters())[name] for name in names]
    reference = torch.optim.AdamW(trained_by_adamw, lr=recipe.adamw_lr, weight_decay=recipe.weight_decay, fused=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        reference, max_lr=recipe.adamw_lr, total_steps=steps, pct_start=recipe.warmup_fraction
    )
    assert len(trained_by_adamw) == len(optimizers.adamw.params)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for mine, torchs in zip(optimizers.adamw.params, trained_by_adamw, strict=True):
            mine.grad = torch.randn(mine.shape, generator=generator)
            torchs.grad = mine.grad.clone()
        optimizers.step()  # Muon's filters have no gradient: it skips them
        reference.step()
        schedule.step()
    for mine, torchs in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True):
        torch.testing.assert_close(mine, torchs, rtol=0, atol=0)
    with pytest.raises(ValueError, match="outside the schedule"):
        optimizers.step()  # one step past the schedule's end


def test_training_leaves_torchs_compiler_unloaded() -> None:
    """torch.optim imports torch._dynamo, about a second of every run; a whole run of train.fit must not."""
    code = (
        "import sys, torch\n"
        "import train\n"
        "from mnist_cnn.recipe import Recipe\n"
        "images, labels = torch.randn(64, 1, 28, 28), torch.arange(64) % 10\n"
        "train.fit(Recipe(batch_size=16), images.contiguous(memory_format=torch.channels_last), labels)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "False"
