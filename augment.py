"""On-device augmentation of training batches: random affine maps, noise, blur, stroke thickness, by epochs."""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from data import MNIST_STD


@dataclass(frozen=True)
class Augmentation:
    """How strongly each training batch is distorted, on the device: random affine, noise, blur, stroke thickness."""

    rotation_degrees: float = 5.0
    scale: float = 0.05
    shear: float = 0.05
    shift_pixels: float = 1.5
    noise: float = 0.1
    blur_fraction: float = 0.05
    thickness_fraction: float = 0.05


ONE_EPOCH_AUGMENTATION = Augmentation(
    rotation_degrees=0, scale=0, shear=0, shift_pixels=2, noise=0, blur_fraction=0, thickness_fraction=0
)
FULL_AUGMENTATION_FROM_EPOCHS = 3


def augmentation_for(epochs: int) -> Augmentation:
    """Return the augmentation for a run of epochs, chosen on the validation split.

    One or two epochs get a whole-batch shift of up to 2 pixels, which costs nothing; longer runs,
    which have the epochs to learn harder images, get every distortion.
    """
    return Augmentation() if epochs >= FULL_AUGMENTATION_FROM_EPOCHS else ONE_EPOCH_AUGMENTATION


def augment(images: torch.Tensor, recipe: Augmentation) -> torch.Tensor:
    """Return a batch of normalised images randomly distorted as recipe says, drawn from the global (seeded) generator.

    With rotation, scale or shear, each image gets its own random affine map (grid_sample); with a
    shift alone, the whole batch moves by one random whole-pixel offset, which costs almost nothing.
    """
    count, device = len(images), images.device

    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(count, device=device) * 2 - 1) * limit

    if recipe.rotation_degrees or recipe.scale or recipe.shear:
        angle, scale = uniform(math.radians(recipe.rotation_degrees)), 1 + uniform(recipe.scale)
        shear, shift = uniform(recipe.shear), 2 * recipe.shift_pixels / images.shape[-1]
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack(
            [torch.stack([cos, -sin + shear, uniform(shift)], 1), torch.stack([sin, cos, uniform(shift)], 1)], 1
        )
        grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    elif recipe.shift_pixels:
        limit = int(recipe.shift_pixels)
        offsets = torch.randint(-limit, limit + 1, (2,)).tolist()
        images = torch.roll(images, shifts=offsets, dims=(2, 3))
    if recipe.blur_fraction or recipe.thickness_fraction:
        pick = torch.rand(count, 1, 1, 1, device=device)
        blur_end = recipe.blur_fraction
        thick_end = blur_end + recipe.thickness_fraction / 2
        thin_end = thick_end + recipe.thickness_fraction / 2
        blurred = F.avg_pool2d(images, 3, stride=1, padding=1, count_include_pad=False)
        thick = F.max_pool2d(images, 3, stride=1, padding=1)
        thin = -F.max_pool2d(F.pad(-images, (0, 1, 0, 1), mode="replicate"), 2, stride=1)
        images = torch.where(pick < blur_end, blurred, images)
        images = torch.where((pick >= blur_end) & (pick < thick_end), thick, images)
        images = torch.where((pick >= thick_end) & (pick < thin_end), thin, images)
    if recipe.noise:
        sigma = torch.rand(count, 1, 1, 1, device=device) * (recipe.noise / MNIST_STD)
        images = images + sigma * torch.randn_like(images)
    return images
