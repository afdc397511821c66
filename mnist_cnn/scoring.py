"""Scoring a model on labelled images: accuracy and loss with one or five views, per digit, under corruption."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from mnist_cnn.corruptions import SUITE, corrupted
from mnist_cnn.data import MNIST_MEAN, MNIST_STD
from mnist_cnn.inference import VIEW_CHOICES, view_logits
from model import NUM_CLASSES

ROWS_PER_PASS = 1000  # images times views in one forward pass: 1,000 images with one view, 200 with five


@dataclass
class Score:
    """How a model did on a labelled set: mean cross-entropy, accuracy in % and each predicted digit."""

    loss: float
    accuracy: float
    predicted: torch.Tensor


@torch.inference_mode()
def score_views(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    amp_dtype: torch.dtype | None,
    views: int,
    progress: bool = False,
) -> tuple[Score, Score]:
    """Return the score of model on images each read through views views (1, or 5 with the test-time shifts), and
    its score on the images alone, from one pass: the first of the views is the image itself.
    """
    if views not in VIEW_CHOICES:
        raise ValueError(f"views must be one of {VIEW_CHOICES}, got {views}")
    model.eval()
    per_pass = ROWS_PER_PASS // views
    loss_sums = torch.zeros(2, device=images.device)
    predictions: tuple[list, list] = ([], [])
    starts = range(0, len(images), per_pass)
    for start in tqdm(starts, desc=f"score ({views} view(s))", unit="batch", disable=not progress, leave=False):
        inputs, targets = images[start : start + per_pass], labels[start : start + per_pass]
        with torch.autocast(images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = view_logits(model, inputs, views)
            averaged = logits.mean(0)
        for index, chosen in enumerate((averaged, logits[0])):
            loss_sums[index] += F.cross_entropy(chosen.float(), targets, reduction="sum")
            predictions[index].append(chosen.argmax(1))
    losses = (loss_sums / len(images)).tolist()
    predicted = [torch.cat(found) for found in predictions]
    accuracies = [100 * (found == labels).sum().item() / len(labels) for found in predicted]
    return Score(losses[0], accuracies[0], predicted[0]), Score(losses[1], accuracies[1], predicted[1])


def score(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    amp_dtype: torch.dtype | None,
    views: int,
    progress: bool = False,
) -> Score:
    """Return the score of model on images, each read through views views (1, or 5 with the test-time shifts)."""
    return score_views(model, images, labels, amp_dtype, views, progress)[0]


def corruption_accuracies(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, amp_dtype: torch.dtype | None, views: int
) -> dict[str, float]:
    """Return the accuracy in % of model on normalised images under each corruption of the suite."""
    pixels = images.float() * MNIST_STD + MNIST_MEAN
    accuracies = {}
    for name in SUITE:
        inputs = ((corrupted(pixels, name) - MNIST_MEAN) / MNIST_STD).contiguous(memory_format=torch.channels_last)
        accuracies[name] = score(model, inputs, labels, amp_dtype, views).accuracy
    return accuracies


def confusion_matrix(labels: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
    """Return the 10x10 matrix of counts: rows are true digits, columns predicted digits."""
    pairs = labels.cpu() * NUM_CLASSES + predicted.cpu()
    return torch.bincount(pairs, minlength=NUM_CLASSES**2).view(NUM_CLASSES, NUM_CLASSES)


def per_class_accuracy(matrix: torch.Tensor) -> list[float]:
    """Return the accuracy in % for each digit from a confusion matrix."""
    return (100 * matrix.diagonal() / matrix.sum(1)).tolist()
