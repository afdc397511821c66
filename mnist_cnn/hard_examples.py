"""The recipe's hard examples: from the middle of a run, images are drawn with replacement by their last loss.

What a run trains on: until the middle of the run (a one-epoch run: its middle step; a longer run:
the first epoch that starts at or after the middle) each epoch is a shuffled pass over every
training image. From there the images are drawn with replacement, half of the chance by each
image's last loss, so images the model still gets wrong come round more often and some others not
at all. A run of two epochs or more trains on every image in its first epoch; a default one-epoch
run never trains on about 16,500 of the 60,000 images (27.5% for seeds 0 and 1), which validation
preferred to a plain shuffled epoch (docs/experiments.md).
"""

import torch

from mnist_cnn.recipe import Recipe


def hard_example_start(recipe: Recipe, epoch: int, steps: int) -> int | None:
    """Return the step of epoch (0-based) from which its images are drawn by their losses, or None for a shuffled pass.

    A one-epoch run starts at recipe.hard_examples_from of its steps; a longer run draws whole
    epochs, from the first whose start is at or after that share of the run.
    """
    if recipe.epochs == 1:
        return int(steps * recipe.hard_examples_from)
    return 0 if epoch >= recipe.epochs * recipe.hard_examples_from else None


def draw_by_loss(example_losses: torch.Tensor, count: int, share: float, generator: torch.Generator) -> torch.Tensor:
    """Return count image indices drawn with replacement, on the CPU: share of the chance in proportion to
    example_losses (each image's loss when last trained on), the rest evenly.
    """
    losses = example_losses.float().cpu()
    weights = (1 - share) / len(losses) + share * losses / losses.sum().clamp_min(1e-12)
    return torch.multinomial(weights, count, replacement=True, generator=generator)
