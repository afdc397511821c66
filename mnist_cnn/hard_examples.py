"""The recipe's hard examples: from the middle of a run, images are drawn with replacement by their relative loss.

What a run trains on: until the middle of the run (a one-epoch run: its middle step; a longer run:
the first epoch that starts at or after the middle) each epoch is a shuffled pass over every
training image. From there the images are drawn with replacement, half of the chance by each
image's relative loss: its loss when last trained on over its batch's mean loss then (1.0, the
average, for an image not yet trained on). So images the model still gets wrong come round more
often, and some others not at all. Relative, because early in a run every loss is high: ranked by
raw losses (recipe.relative_losses false), a loss from the first batches outranks a hard image
seen later, and a one-epoch run scored less on validation (docs/experiments.md). A run of two
epochs or more trains on every image in its first epoch; a default one-epoch run never trains on
about 18,200 of the 60,000 images (30.4%, seeds 0 and 1).
"""

import torch
import torch.nn.functional as F

from mnist_cnn.recipe import Recipe

TINY_SUM = 1e-12  # keeps a division by a sum of losses finite when every loss is zero


def hard_example_start(recipe: Recipe, epoch: int, steps: int) -> int | None:
    """Return the step of epoch (0-based) from which its images are drawn by their losses, or None for a shuffled pass.

    A one-epoch run starts at recipe.hard_examples_from of its steps; a longer run draws whole
    epochs, from the first whose start is at or after that share of the run.
    """
    if recipe.epochs == 1:
        return int(steps * recipe.hard_examples_from)
    return 0 if epoch >= recipe.epochs * recipe.hard_examples_from else None


def hardness(logits: torch.Tensor, targets: torch.Tensor, relative: bool = True) -> torch.Tensor:
    """Return each image's cross-entropy (no label smoothing), over its batch's mean where relative.

    The recipe's relative_losses says which: relative, each loss says how hard the image is beside the
    rest of its batch, whenever in the run it was trained on.
    """
    losses = F.cross_entropy(logits.detach().float(), targets, reduction="none")
    return losses / losses.mean().clamp_min(TINY_SUM) if relative else losses


def epoch_order(example_losses: torch.Tensor, by_loss: bool, share: float, generator: torch.Generator) -> torch.Tensor:
    """Return the order of an epoch's images on the CPU: drawn by loss from its first step (by_loss), else shuffled."""
    if by_loss:
        return draw_by_loss(example_losses, len(example_losses), share, generator)
    return torch.randperm(len(example_losses), generator=generator)


def redraw_after(
    order: torch.Tensor, done: int, example_losses: torch.Tensor, share: float, generator: torch.Generator
) -> torch.Tensor:
    """Return order (on its device) with its first done images kept and the rest drawn again by loss."""
    drawn = draw_by_loss(example_losses, len(order) - done, share, generator)
    return torch.cat([order[:done], drawn.to(order.device)])


def draw_by_loss(example_losses: torch.Tensor, count: int, share: float, generator: torch.Generator) -> torch.Tensor:
    """Return count image indices drawn with replacement, on the CPU: share of the chance in proportion to
    example_losses (each image's relative loss when last trained on), the rest evenly.
    """
    losses = example_losses.float().cpu()
    weights = (1 - share) / len(losses) + share * losses / losses.sum().clamp_min(TINY_SUM)
    return torch.multinomial(weights, count, replacement=True, generator=generator)
