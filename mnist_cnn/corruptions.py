"""The corruption suite: fixed, seeded MNIST-C-style corruptions of digit images, to measure how a model holds up.

Every corruption takes and returns a batch of pixel images in [0, 1] of shape (N, 1, 28, 28), on any
device, before MNIST's normalisation. The families are those of MNIST-C (Mu and Gilmer, 2019) that
apply to single digits: fog (a fractal texture of light), clutter (a zigzag line across the digit),
noise (Gaussian, impulse), blur (Gaussian, motion), translation (including diagonal), rotation, scale,
shear and stroke thickness. Uniform changes of brightness or contrast are left out: the model
standardises each image, so they cannot move it.
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from mnist_cnn.augment import thicker, thinner

SUITE_SEED = 2019
FOG_SCALES = {3: 1.0, 7: 0.5, 14: 0.25}  # cells across the image of each layer of random light, and its weight
ZIGZAG_CORNERS, ZIGZAG_WIDTH = 5, 1.5  # points of the line, and its width in pixels


def affine(images: torch.Tensor, matrix: list[list[float]]) -> torch.Tensor:
    """Return images resampled through a 2x3 affine map in normalised coordinates (output to input), zeros outside."""
    theta = torch.tensor(matrix, dtype=images.dtype, device=images.device).expand(len(images), 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def shift(images: torch.Tensor, right: int, down: int) -> torch.Tensor:
    """Return images moved right and down by whole pixels, filled with black."""
    moved = torch.roll(images, shifts=(down, right), dims=(2, 3))
    if down > 0:
        moved[:, :, :down] = 0
    elif down < 0:
        moved[:, :, down:] = 0
    if right > 0:
        moved[:, :, :, :right] = 0
    elif right < 0:
        moved[:, :, :, right:] = 0
    return moved


def rotate(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """Return images rotated by degrees (counter-clockwise) about their centre."""
    angle = math.radians(degrees)
    return affine(images, [[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0]])


def zoom(images: torch.Tensor, factor: float) -> torch.Tensor:
    """Return images scaled by factor about their centre (above 1 larger)."""
    return affine(images, [[1 / factor, 0, 0], [0, 1 / factor, 0]])


def shear(images: torch.Tensor, amount: float) -> torch.Tensor:
    """Return images sheared horizontally by amount (the top moves right for positive amounts)."""
    return affine(images, [[1, amount, 0], [0, 1, 0]])


def convolve(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Return images convolved with a 2-D kernel (normalised to sum 1), same size."""
    kernel = (kernel / kernel.sum()).to(images)[None, None]
    return F.conv2d(images, kernel, padding=kernel.shape[-1] // 2)


def gaussian_kernel(sigma: float, size: int) -> torch.Tensor:
    """Return a size x size Gaussian kernel."""
    offsets = torch.arange(size, dtype=torch.float32) - size // 2
    line = torch.exp(-(offsets**2) / (2 * sigma**2))
    return line[:, None] * line[None, :]


def motion_kernel(length: int) -> torch.Tensor:
    """Return a length x length kernel that smears along the diagonal, as a shaken camera does."""
    return torch.eye(length)


def gaussian_noise(images: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """Return images with seeded Gaussian noise of sigma added, clipped to [0, 1]."""
    noise = torch.randn(images.shape, generator=generator).to(images)
    return (images + sigma * noise).clamp(0, 1)


def impulse_noise(images: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Return images with a seeded fraction of pixels set to black or white (salt and pepper)."""
    draw = torch.rand(images.shape, generator=generator).to(images)
    salted = torch.where(draw < fraction / 2, torch.ones_like(images), images)
    return torch.where((draw >= fraction / 2) & (draw < fraction), torch.zeros_like(images), salted)


def fog(images: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Return images under a seeded fog of light, a texture like MNIST-C's (which grows a plasma fractal; this sums
    random light at the three scales of FOG_SCALES, coarse ones strongest), added with strength at its brightest
    and clipped to [0, 1].
    """
    side = images.shape[-1]
    texture = torch.zeros(len(images), 1, side, side)
    for cells, weight in FOG_SCALES.items():
        coarse = torch.rand(len(images), 1, cells, cells, generator=generator)
        texture += weight * F.interpolate(coarse, size=(side, side), mode="bilinear", align_corners=False)
    return (images + strength * (texture / sum(FOG_SCALES.values())).to(images)).clamp(0, 1)


def zigzag(images: torch.Tensor, corners: int, width: float, generator: torch.Generator) -> torch.Tensor:
    """Return images with a seeded white zigzag line of corners points drawn across each, width pixels wide."""
    side = images.shape[-1]
    columns = torch.linspace(-2, side + 1, corners).expand(len(images), corners)  # from beyond one edge to the other
    rows = torch.rand(len(images), corners, generator=generator) * side
    points = torch.stack([rows, columns], dim=-1)  # (N, corners, 2)
    grid = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij"), -1).reshape(1, 1, -1, 2)
    start, end = points[:, :-1, None], points[:, 1:, None]  # (N, segments, 1, 2)
    direction = end - start
    along = ((grid - start) * direction).sum(-1) / (direction**2).sum(-1).clamp(min=1e-6)
    nearest = start + along.clamp(0, 1)[..., None] * direction
    distance = (grid - nearest).norm(dim=-1).amin(1).view(len(images), 1, side, side)
    return torch.maximum(images, (width / 2 + 0.5 - distance).clamp(0, 1).to(images))


Corruption = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

SUITE: dict[str, Corruption] = {
    "fog 0.6": lambda x, g: fog(x, 0.6, g),
    "zigzag line": lambda x, g: zigzag(x, ZIGZAG_CORNERS, ZIGZAG_WIDTH, g),
    "gaussian noise 0.3": lambda x, g: gaussian_noise(x, 0.3, g),
    "impulse noise 10%": lambda x, g: impulse_noise(x, 0.1, g),
    "gaussian blur 1.2": lambda x, g: convolve(x, gaussian_kernel(1.2, 7)),
    "motion blur 5": lambda x, g: convolve(x, motion_kernel(5)),
    "shift 3 right": lambda x, g: shift(x, 3, 0),
    "shift 3 diagonal": lambda x, g: shift(x, 3, 3),
    "rotate 25": lambda x, g: rotate(x, 25),
    "scale 0.7": lambda x, g: zoom(x, 0.7),
    "scale 1.3": lambda x, g: zoom(x, 1.3),
    "shear 0.4": lambda x, g: shear(x, 0.4),
    "thicker strokes": lambda x, g: thicker(x),
    "thinner strokes": lambda x, g: thinner(x),
}


def corrupted(images: torch.Tensor, name: str) -> torch.Tensor:
    """Return pixel images under the suite's corruption called name, seeded so that every call gives the same."""
    return SUITE[name](images, torch.Generator().manual_seed(SUITE_SEED)).clamp(0, 1)
