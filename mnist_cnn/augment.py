"""On-device distortions of image batches: the training augmentation, and stroke thickening shared with the suite."""

import math

import torch
import torch.nn.functional as F

from mnist_cnn.data import MNIST_STD
from mnist_cnn.recipe import Augmentation


def thicker(images: torch.Tensor) -> torch.Tensor:
    """Return images with their strokes (the brighter pixels) grown by one pixel on every side."""
    return F.max_pool2d(images, 3, stride=1, padding=1)


def thinner(images: torch.Tensor) -> torch.Tensor:
    """Return images with their strokes (the brighter pixels) thinned by one pixel (a 2x2 erosion)."""
    return -F.max_pool2d(F.pad(-images, (0, 1, 0, 1), mode="replicate"), 2, stride=1)


def augment(images: torch.Tensor, augmentation: Augmentation) -> torch.Tensor:
    """Return a batch of normalised images randomly distorted as augmentation says, from the global (seeded) generator.

    With rotation, scale or shear, each image gets its own random affine map (grid_sample); with a
    shift alone, the whole batch moves by one random whole-pixel offset, which costs almost nothing.
    """
    count, device = len(images), images.device

    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(count, device=device) * 2 - 1) * limit

    if augmentation.rotation_degrees or augmentation.scale or augmentation.shear:
        angle, scale = uniform(math.radians(augmentation.rotation_degrees)), 1 + uniform(augmentation.scale)
        shear, shift = uniform(augmentation.shear), 2 * augmentation.shift_pixels / images.shape[-1]
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack(
            [torch.stack([cos, -sin + shear, uniform(shift)], 1), torch.stack([sin, cos, uniform(shift)], 1)], 1
        )
        grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    elif augmentation.shift_pixels:
        limit = int(augmentation.shift_pixels)
        offsets = torch.randint(-limit, limit + 1, (2,)).tolist()
        images = torch.roll(images, shifts=offsets, dims=(2, 3))
    if augmentation.blur_fraction or augmentation.thickness_fraction:
        pick = torch.rand(count, 1, 1, 1, device=device)
        blur_end = augmentation.blur_fraction
        thick_end = blur_end + augmentation.thickness_fraction / 2
        thin_end = thick_end + augmentation.thickness_fraction / 2
        blurred = F.avg_pool2d(images, 3, stride=1, padding=1, count_include_pad=False)
        thick, thin = thicker(images), thinner(images)
        images = torch.where(pick < blur_end, blurred, images)
        images = torch.where((pick >= blur_end) & (pick < thick_end), thick, images)
        images = torch.where((pick >= thick_end) & (pick < thin_end), thin, images)
    if augmentation.noise:
        sigma = torch.rand(count, 1, 1, 1, device=device) * (augmentation.noise / MNIST_STD)
        images = images + sigma * torch.randn_like(images)
    return images
