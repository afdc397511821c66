"""The recipe's optimisers, written without torch.optim: Muon with its Newton-Schulz step, AdamW, one-cycle schedules.

torch.optim imports torch's compiler (torch._dynamo) the first time an optimiser is built or
stepped, which takes about a second on two CPU cores: a sixth of a whole default `python train.py`.
These few lines compute what torch.optim.AdamW (fused) and OneCycleLR compute, AdamW by torch's own
fused kernel (tests/test_optim.py holds both to torch.optim), and leave the compiler unloaded.
"""

import math
from dataclasses import dataclass

import torch
from torch import nn

from mnist_cnn.recipe import Recipe
from model import MnistCNN

NEWTON_SCHULZ_STEPS = 3
NEWTON_SCHULZ_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
ADAMW_BETA2 = 0.999
ADAMW_EPS = 1e-8
# OneCycleLR's defaults: the rate starts at peak / 25 and ends at that / 10,000; beta1 cycles 0.95 -> 0.85 -> 0.95.
START_DIVISOR, END_DIVISOR = 25.0, 1e4
HIGH_BETA1, LOW_BETA1 = 0.95, 0.85


def orthogonalize(matrix: torch.Tensor, steps: int = NEWTON_SCHULZ_STEPS) -> torch.Tensor:
    """Return matrix with its singular values pushed towards 1 by Muon's Newton-Schulz iteration.

    The iteration and its coefficients are Keller Jordan's, as in his Muon (https://github.com/KellerJordan/Muon)
    and airbench (https://github.com/KellerJordan/airbench).
    """
    a, b, c = NEWTON_SCHULZ_COEFFICIENTS
    wide = matrix.size(0) <= matrix.size(1)
    x = matrix if wide else matrix.T
    x = x / (x.norm() + 1e-7)
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x if wide else x.T


class Muon:
    """Muon for convolution filters followed by batch norm: Nesterov momentum, orthogonalised per layer.

    After Keller Jordan's Muon (https://kellerjordan.github.io/posts/muon/, https://github.com/KellerJordan/Muon):
    the Newton-Schulz step and the update follow his Muon and airbench.

    Batch norm makes the loss blind to a filter bank's scale, so each bank is reset to a fixed norm
    before its update and the learning rate alone sets the size of every step. The learning rate may
    be a device tensor, which a captured CUDA graph reads at every replay.
    """

    def __init__(self, weights: list[torch.Tensor], momentum: float) -> None:
        self.weights, self.momentum = weights, momentum
        self.buffers = [torch.zeros_like(weight) for weight in weights]

    @torch.no_grad()
    def step(self, lr: float | torch.Tensor) -> None:
        """Update every filter bank that has a gradient by one Muon step of learning rate lr."""
        for weight, buffer in zip(self.weights, self.buffers, strict=True):
            if weight.grad is None:
                continue
            buffer.mul_(self.momentum).add_(weight.grad)
            direction = weight.grad.add(buffer, alpha=self.momentum)
            update = orthogonalize(direction.reshape(len(direction), -1)).view(weight.shape)
            weight.mul_(len(weight) ** 0.5 / weight.norm())
            if isinstance(lr, torch.Tensor):
                weight.sub_(update * lr)
            else:
                weight.sub_(update, alpha=lr)


class AdamW:
    """AdamW as torch.optim.AdamW(fused=True) computes it, by the same fused kernel: one call a step on every device.

    Decoupled weight decay and bias-corrected moments; beta1 is given at each step, as the schedule
    cycles it. The parameters share one device and dtype (the model's), which the one call needs.
    """

    def __init__(self, params: list[torch.Tensor], weight_decay: float) -> None:
        self.params, self.weight_decay = params, weight_decay
        self.averages = [torch.zeros_like(param) for param in params]
        self.squares = [torch.zeros_like(param) for param in params]
        self.steps = [torch.zeros((), dtype=torch.float32, device=param.device) for param in params]

    @torch.no_grad()
    def step(self, lr: float, beta1: float) -> None:
        """Update every parameter that has a gradient by one AdamW step of learning rate lr and first-moment beta1."""
        chosen = [index for index, param in enumerate(self.params) if param.grad is not None]
        if not chosen:
            return
        params, steps = [self.params[i] for i in chosen], [self.steps[i] for i in chosen]
        torch._foreach_add_(steps, 1)
        torch._fused_adamw_(
            params,
            [param.grad for param in params],
            [self.averages[i] for i in chosen],
            [self.squares[i] for i in chosen],
            [],
            steps,
            amsgrad=False,
            lr=lr,
            beta1=beta1,
            beta2=ADAMW_BETA2,
            weight_decay=self.weight_decay,
            eps=ADAMW_EPS,
            maximize=False,
        )


@dataclass(frozen=True)
class OneCycle:
    """torch.optim.lr_scheduler.OneCycleLR's two-phase cosine schedule over total_steps, peaking at peak.

    The rate rises from peak / 25 to peak over the first warmup_fraction of the steps, then falls to
    peak / 250,000; beta1 falls from 0.95 to 0.85 as the rate rises, and rises back as it falls.
    """

    peak: float
    total_steps: int
    warmup_fraction: float

    def __post_init__(self) -> None:
        """Raise ValueError for a schedule of no steps."""
        if self.total_steps < 1:
            raise ValueError(f"a schedule needs at least one step, got total_steps={self.total_steps}")

    def phase(self, step: int) -> tuple[float, bool]:
        """Return how much of step's phase lies ahead (cosine-eased: 1 at its start, 0 at its end); is it warm-up?"""
        if not 0 <= step < self.total_steps:
            raise ValueError(f"step {step} is outside the schedule's {self.total_steps} steps")
        warmup_end = self.warmup_fraction * self.total_steps - 1
        warming_up = step <= warmup_end
        start, end = (0.0, warmup_end) if warming_up else (warmup_end, self.total_steps - 1)
        done = (step - start) / (end - start) if end > start else 1.0
        return (math.cos(math.pi * done) + 1) / 2, warming_up

    def rate(self, step: int) -> float:
        """Return the learning rate of step (0-based)."""
        ahead, warming_up = self.phase(step)
        start = self.peak / START_DIVISOR
        begin, end = (start, self.peak) if warming_up else (self.peak, start / END_DIVISOR)
        return end + (begin - end) * ahead

    def beta1(self, step: int) -> float:
        """Return AdamW's beta1 for step (0-based): high where the rate is low."""
        ahead, warming_up = self.phase(step)
        begin, end = (HIGH_BETA1, LOW_BETA1) if warming_up else (LOW_BETA1, HIGH_BETA1)
        return end + (begin - end) * ahead


class ScheduledOptimizers:
    """The recipe's optimisers on their one-cycle schedules, which warm up over warmup_fraction of total_steps.

    Muon trains the convolutions after the first, which batch norm follows; AdamW (weight decay,
    cycled beta1) trains the first convolution, the batch norms and the classifier. Their state is
    made here, beside the parameters: build them after the model has moved to its device.
    """

    def __init__(self, model: MnistCNN, recipe: Recipe, total_steps: int) -> None:
        muon_weights = [layer.weight for layer in model.modules() if isinstance(layer, nn.Conv2d)][1:]
        adamw_params = [p for p in model.parameters() if all(p is not weight for weight in muon_weights)]
        self.muon = Muon(muon_weights, recipe.muon_momentum)
        self.adamw = AdamW(adamw_params, recipe.weight_decay)
        self.muon_schedule = OneCycle(recipe.muon_lr, total_steps, recipe.warmup_fraction)
        self.adamw_schedule = OneCycle(recipe.adamw_lr, total_steps, recipe.warmup_fraction)
        self.steps_taken = 0

    def muon_rate(self) -> float:
        """Return Muon's learning rate for the next step."""
        return self.muon_schedule.rate(self.steps_taken)

    def step(self, muon: bool = True) -> None:
        """Take the next step of both optimisers (AdamW's alone when muon is False) at the schedules' rates."""
        if muon:
            self.muon.step(self.muon_rate())
        self.adamw.step(self.adamw_schedule.rate(self.steps_taken), self.adamw_schedule.beta1(self.steps_taken))
        self.steps_taken += 1
