"""The recipe's optimisers: Muon and its Newton-Schulz orthogonalisation, AdamW, the one-cycle schedules."""

import torch
from torch import nn

from mnist_cnn.recipe import Recipe
from model import MnistCNN

NEWTON_SCHULZ_STEPS = 3
NEWTON_SCHULZ_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


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


class Muon(torch.optim.Optimizer):
    """Muon for convolution filters followed by batch norm: Nesterov momentum, orthogonalised per layer.

    After Keller Jordan's Muon (https://kellerjordan.github.io/posts/muon/, https://github.com/KellerJordan/Muon):
    the Newton-Schulz step and the update follow his Muon and airbench.

    Batch norm makes the loss blind to a filter bank's scale, so each bank is reset to a fixed norm
    before its update and the learning rate alone sets the size of every step. The learning rate may
    be a device tensor, which a captured CUDA graph reads at every replay.
    """

    def __init__(self, params: list[torch.Tensor], lr: float, momentum: float) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self) -> None:
        """Update every filter bank that has a gradient by one Muon step."""
        for group in self.param_groups:
            for weight in group["params"]:
                if weight.grad is None:
                    continue
                state = self.state[weight]
                if not state:
                    state["momentum_buffer"] = torch.zeros_like(weight.grad)
                buffer = state["momentum_buffer"].mul_(group["momentum"]).add_(weight.grad)
                direction = weight.grad.add(buffer, alpha=group["momentum"])
                update = orthogonalize(direction.reshape(len(direction), -1)).view(weight.shape)
                weight.mul_(len(weight) ** 0.5 / weight.norm())
                if isinstance(group["lr"], torch.Tensor):
                    weight.sub_(update * group["lr"])
                else:
                    weight.sub_(update, alpha=group["lr"])


def make_scheduled_optimizers(
    model: MnistCNN, recipe: Recipe, total_steps: int
) -> list[torch.optim.lr_scheduler.OneCycleLR]:
    """Build the recipe's optimisers and return each inside its one-cycle schedule over total_steps.

    Muon trains the convolutions after the first, which batch norm follows; fused AdamW (weight
    decay, cycled beta1) trains the first convolution, the batch norms and the classifier.
    """
    muon_weights = [layer.weight for layer in model.modules() if isinstance(layer, nn.Conv2d)][1:]
    adamw_weights = [p for p in model.parameters() if all(p is not weight for weight in muon_weights)]
    muon = Muon(muon_weights, lr=recipe.muon_lr, momentum=recipe.muon_momentum)
    adamw = torch.optim.AdamW(adamw_weights, lr=recipe.adamw_lr, weight_decay=recipe.weight_decay, fused=True)
    warmup = recipe.warmup_fraction
    return [
        torch.optim.lr_scheduler.OneCycleLR(
            muon, max_lr=recipe.muon_lr, total_steps=total_steps, pct_start=warmup, cycle_momentum=False
        ),
        torch.optim.lr_scheduler.OneCycleLR(adamw, max_lr=recipe.adamw_lr, total_steps=total_steps, pct_start=warmup),
    ]


def step_optimizers(schedules: list[torch.optim.lr_scheduler.LRScheduler]) -> None:
    """Apply every schedule's optimiser to the gradients, then advance the schedule by one step."""
    for schedule in schedules:
        schedule.optimizer.step()
        schedule.step()
