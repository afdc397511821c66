"""Inference with a trained model: test-time shifts as an explicit wrapper, and digit probabilities."""

import torch
import torch.nn.functional as F
from torch import nn

from model import check_input_shape

TEST_TIME_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))
VIEW_CHOICES = (1, len(TEST_TIME_SHIFTS))


def shifted_views(images: torch.Tensor, shifts: tuple[tuple[int, int], ...] = TEST_TIME_SHIFTS) -> torch.Tensor:
    """Return the images moved by each (rows, columns) shift of at most one pixel, edges repeated, as one batch."""
    padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
    height, width = images.shape[-2:]
    views = [padded[:, :, 1 - down : 1 - down + height, 1 - right : 1 - right + width] for down, right in shifts]
    return torch.cat(views).contiguous(memory_format=torch.channels_last)


def view_logits(model: nn.Module, images: torch.Tensor, views: int) -> torch.Tensor:
    """Return model's logits for each of views views of images, shape (views, N, 10): the image alone for 1; for 5
    the image and its four one-pixel shifts, through the model as one batch.
    """
    if views == 1:
        return model(images)[None]
    return model(shifted_views(images)).unflatten(0, (len(TEST_TIME_SHIFTS), -1))


class ShiftAveraged(nn.Module):
    """Test-time augmentation: the mean of a model's logits over each image and its four one-pixel shifts.

    The five views go through the model as one batch, so it costs five times the work of one view.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return the logits averaged over the shifted views of images, shape (N, 10)."""
        check_input_shape(images)
        return view_logits(self.model, images, len(TEST_TIME_SHIFTS)).mean(0)


def with_views(model: nn.Module, views: int) -> nn.Module:
    """Return model as inference should run it with views views of each image: itself for 1, else ShiftAveraged."""
    if views not in VIEW_CHOICES:
        raise ValueError(f"views must be one of {VIEW_CHOICES}, got {views}")
    return model if views == 1 else ShiftAveraged(model)


@torch.inference_mode()
def digit_probabilities(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Return the softmax of model's logits for a batch of prepared images, in float32, shape (N, 10)."""
    return model(images.contiguous(memory_format=torch.channels_last)).float().softmax(1)
