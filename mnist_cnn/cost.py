"""What a recipe's training costs: its floating-point operations, counted by torch.utils.flop_counter.

The count is deterministic and the same on every machine, so trials that share the cores of one
machine compare fairly, which measured seconds would not. It counts the matrix products and
convolutions of the forward pass, the backward pass and Muon's Newton-Schulz iterations (multiply and
add as two operations), not element-wise work (batch norm, ReLU, pooling, AdamW), which the
profile of a default epoch puts at under half of its time.
"""

import math

import torch
from torch.utils.flop_counter import FlopCounterMode

from mnist_cnn.optim import ScheduledOptimizers
from mnist_cnn.recipe import Recipe, build_model
from mnist_cnn.step import eager_step
from model import INPUT_SHAPE, NUM_CLASSES

SCHEDULE_STEPS = 10  # the schedule of the counted step: any will do, as its one step costs the same


def step_flops(recipe: Recipe) -> int:
    """Return the floating-point operations of one training step of recipe on a full batch, on the CPU in float32."""
    model = build_model(recipe).train()
    optimizers = ScheduledOptimizers(model, recipe, total_steps=SCHEDULE_STEPS)
    take_step = eager_step(model, optimizers, recipe.label_smoothing, None)
    images = torch.zeros(recipe.batch_size, *INPUT_SHAPE)
    labels = torch.arange(recipe.batch_size) % NUM_CLASSES
    with FlopCounterMode(display=False) as counter:
        take_step(images, labels)
    return counter.get_total_flops()


def training_flops(recipe: Recipe, images: int) -> int:
    """Return the floating-point operations of training recipe on images images: its steps, each as on a full batch."""
    return step_flops(recipe) * recipe.epochs * math.ceil(images / recipe.batch_size)
