"""Prepare any image of one handwritten digit the way MNIST's digits were: light ink on black, 20x20 in 28x28.

The steps, each robust to what photos and scans of real handwriting bring:
1. Read the pixels of any mode Pillow opens (1, 8 and 16 bits, palette, alpha, CMYK, EXIF rotation),
   refusing oversized images before they are decoded, and shrink large ones.
2. Estimate the paper's (or board's) brightness locally, so uneven light and shadows cancel out,
   and find which way round the ink is: the polarity with less ink, counting the image's centre
   fully and its margins (where a table or a shadow lies) a quarter.
3. Threshold the ink robustly (Otsu's method) and keep the digit: the largest connected piece of
   ink and the pieces of comparable size, not specks of dirt, nor pieces touching the border (a
   table's edge) when a piece inside can be the digit.
4. Bring the strokes towards MNIST's thickness (about 2 pixels in the 20-pixel box) by growing
   thin strokes or thinning thick ones, fit the digit into a 20x20 box and centre it by its centre
   of mass in a 28x28 field.
"""

import warnings
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from mnist_cnn.data import MNIST_MEAN, MNIST_STD
from model import IMAGE_SIDE

FIELD = IMAGE_SIDE
BOX = 20
MAX_PIXELS = 40_000_000
WORKING_SIDE = 512
BACKGROUND_SIDE = 64
BACKGROUND_WINDOW = 11
COMPONENT_SIDE = 128
MIN_CONTRAST = 0.08
MIN_PIECE_SHARE = 0.08
MIN_INSIDE_PIECE = 4
MIN_INSIDE_SHARE = 0.01
MNIST_STROKE_WIDTH = 2.0
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ImageError(Exception):
    """An image cannot be read or holds no digit."""


def check_size(image: Image.Image) -> None:
    """Raise ImageError for an image of more than MAX_PIXELS pixels, before its pixels are decoded."""
    if image.width * image.height > MAX_PIXELS:
        raise ImageError(
            f"too large: {image.width}x{image.height} pixels, more than {MAX_PIXELS // 1_000_000} megapixels"
        )


def grey_pixels(image: Image.Image) -> torch.Tensor:
    """Return image as a (H, W) float tensor in [0, 1], 0 black; transparent pixels take the colour opposite the ink.

    16-bit images keep their whole range; EXIF rotation is applied; large JPEGs are decoded at a reduced size.
    """
    if image.format == "JPEG":
        image.draft(image.mode, (WORKING_SIDE, WORKING_SIDE))
    image = ImageOps.exif_transpose(image)
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float32)
        return torch.from_numpy(values / (255.0 if values.max() <= 255 else 65535.0)).clamp(0, 1)
    if image.mode == "F":
        values = torch.from_numpy(np.asarray(image, dtype=np.float32))
        return (values - values.min()) / (values.max() - values.min()).clamp(min=1e-6)
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255
        alpha = torch.from_numpy(rgba[..., 3])
        grey = torch.from_numpy(np.asarray(image.convert("RGBA").convert("L"), dtype=np.float32) / 255)
        ink_is_dark = (grey * alpha).sum() / alpha.sum().clamp(min=1e-6) < 0.5
        return grey * alpha + (1.0 if ink_is_dark else 0.0) * (1 - alpha)
    if image.mode == "CMYK":
        image = image.convert("RGB")
    return torch.from_numpy(np.asarray(image.convert("L"), dtype=np.float32) / 255)


def shrink(grey: torch.Tensor, side: int) -> torch.Tensor:
    """Return grey scaled down (averaging) so that its longer side is at most side."""
    height, width = grey.shape
    if max(height, width) <= side:
        return grey
    scale = side / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return F.interpolate(grey[None, None], size=size, mode="area")[0, 0]


def local_background(grey: torch.Tensor, paper_is_light: bool) -> torch.Tensor:
    """Return the paper's (or board's) level around each pixel, at grey's size: its brightest (or darkest) level
    nearby, found at low resolution, where strokes are thin, and smoothed.
    """
    small = shrink(grey, BACKGROUND_SIDE)[None, None]
    sign = 1.0 if paper_is_light else -1.0
    pad = BACKGROUND_WINDOW // 2
    level = sign * F.max_pool2d(sign * F.pad(small, (pad,) * 4, mode="replicate"), BACKGROUND_WINDOW, stride=1)
    level = F.avg_pool2d(F.pad(level, (pad,) * 4, mode="replicate"), BACKGROUND_WINDOW, stride=1)
    return F.interpolate(level, size=grey.shape, mode="bilinear", align_corners=False)[0, 0]


def ink_maps(grey: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return how strongly each pixel is ink, in [0, 1], against the local background: as dark ink, and as light ink.

    Dark ink is measured as the share of light it takes from the paper around it, light ink (chalk)
    as its rise over the board around it, so uneven light and shadows cancel out.
    """
    paper = local_background(grey, paper_is_light=True)
    board = local_background(grey, paper_is_light=False)
    dark_ink = ((paper - grey) / paper.clamp(min=0.05)).clamp(0, 1)
    light_ink = ((grey - board) / (1 - board).clamp(min=0.05)).clamp(0, 1)
    return dark_ink, light_ink


def centre_weight(shape: tuple[int, int]) -> torch.Tensor:
    """Return weights that count the image's centre fully and its outer sixth on each side a quarter."""
    height, width = shape
    rows = ((torch.arange(height) >= height / 6) & (torch.arange(height) < height * 5 / 6)).float()
    columns = ((torch.arange(width) >= width / 6) & (torch.arange(width) < width * 5 / 6)).float()
    return 0.25 + 0.75 * rows[:, None] * columns[None, :]


def otsu_threshold(values: torch.Tensor) -> float:
    """Return the threshold that best separates values in [0, 1] into two classes (Otsu's method)."""
    histogram = torch.histc(values, bins=256, min=0, max=1)
    probability = histogram / histogram.sum()
    levels = torch.arange(256) / 255  # the same on every CPU (linspace's last bits follow its vector width)
    weight = probability.cumsum(0)
    mean = (probability * levels).cumsum(0)
    between = (mean[-1] * weight - mean) ** 2 / (weight * (1 - weight)).clamp(min=1e-12)
    return levels[between.argmax()].item()


def label_pieces(mask: torch.Tensor) -> torch.Tensor:
    """Return a label per pixel of mask (0 outside it), equal within each 8-connected piece."""
    labels = torch.arange(1, mask.numel() + 1, dtype=torch.float32).view(mask.shape) * mask
    while True:
        for _ in range(16):
            labels = F.max_pool2d(labels[None, None], 3, stride=1, padding=1)[0, 0] * mask
        spread = F.max_pool2d(labels[None, None], 3, stride=1, padding=1)[0, 0] * mask
        if torch.equal(spread, labels):
            return labels
        labels = spread


def digit_mask(ink: torch.Tensor) -> torch.Tensor:
    """Return the pixels of the digit: thresholded ink without specks and marks far from it.

    Pieces touching the border (a table beside the sheet, the edge of a shadow) are left out when a
    piece inside the image is large enough to be the digit; a digit cropped so tightly that it
    touches the border is kept.
    """
    strong = ink > max(otsu_threshold(ink), MIN_CONTRAST)
    scale = COMPONENT_SIDE / max(ink.shape)
    small = strong.float()
    if scale < 1:
        size = (max(1, round(ink.shape[0] * scale)), max(1, round(ink.shape[1] * scale)))
        small = (F.adaptive_max_pool2d(small[None, None], size)[0, 0] > 0).float()
    labels = label_pieces(small)
    pieces, inverse = labels[labels > 0].unique(return_inverse=True)
    mass = torch.zeros(len(pieces)).index_add_(0, inverse, torch.ones(len(inverse)))
    inside = ~torch.isin(pieces, torch.cat([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    if inside.any() and mass[inside].max() >= max(MIN_INSIDE_PIECE, MIN_INSIDE_SHARE * mass.max()):
        pieces, mass = pieces[inside], mass[inside]
    kept = torch.isin(labels, pieces[mass >= MIN_PIECE_SHARE * mass.max()]).float()
    grown = F.max_pool2d(kept[None, None], 3, stride=1, padding=1)
    return strong & (F.interpolate(grown, size=ink.shape, mode="nearest")[0, 0] > 0)


def stroke_width(mask: torch.Tensor) -> float:
    """Return the mean stroke width of mask in pixels: twice its area over the length of its outline."""
    padded = F.pad(mask.float(), (1, 1, 1, 1))
    edges = (padded[:, 1:] != padded[:, :-1]).sum() + (padded[1:] != padded[:-1]).sum()
    return 2 * mask.float().sum().item() / max(1, edges.item())


def morph(image: torch.Tensor, radius: int, grow: bool) -> torch.Tensor:
    """Return image grown (dilation) or thinned (erosion) by a square of the given radius."""
    sign = 1.0 if grow else -1.0
    side = 2 * radius + 1
    rows = F.max_pool2d(sign * image[None, None], (1, side), stride=1, padding=(0, radius))
    return sign * F.max_pool2d(rows, (side, 1), stride=1, padding=(radius, 0))[0, 0]


def centre_in_field(digit: torch.Tensor) -> torch.Tensor:
    """Return a 28x28 field with digit (at most 20x20) placed so that its centre of mass is at the centre."""
    height, width = digit.shape
    mass = digit.sum().clamp(min=1e-6)
    centre_row = (digit.sum(1) * torch.arange(height)).sum() / mass
    centre_column = (digit.sum(0) * torch.arange(width)).sum() / mass
    top = min(max(round(FIELD / 2 - 0.5 - centre_row.item()), 0), FIELD - height)
    left = min(max(round(FIELD / 2 - 0.5 - centre_column.item()), 0), FIELD - width)
    field = torch.zeros(FIELD, FIELD)
    field[top : top + height, left : left + width] = digit
    return field


def prepare(image: Image.Image) -> torch.Tensor:
    """Return a (1, 28, 28) tensor of image prepared like MNIST, normalised with MNIST's mean and std."""
    check_size(image)
    return prepare_pixels(grey_pixels(image))


def prepare_file(file: BinaryIO) -> torch.Tensor:
    """Decode an image file, which may be hostile, and return it prepared like MNIST; raise ImageError on any fault.

    Its size is checked before its pixels are decoded (Pillow's decompression-bomb warning counts as
    an error too), and whatever Pillow raises while decoding it becomes an ImageError.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                check_size(image)
                grey = grey_pixels(image)
    except UnidentifiedImageError:
        raise ImageError("not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        limit = Image.MAX_IMAGE_PIXELS
        raise ImageError(f"too large: past Pillow's decompression-bomb limit of {limit:,} pixels") from None
    except ImageError:
        raise
    except Exception as error:
        raise ImageError(f"cannot read it ({type(error).__name__}: {error})") from None
    return prepare_pixels(grey)


def prepare_pixels(grey: torch.Tensor) -> torch.Tensor:
    """Return a (1, 28, 28) tensor of a (H, W) grey image in [0, 1] prepared like MNIST, normalised."""
    grey = shrink(grey, WORKING_SIDE)
    dark_ink, light_ink = ink_maps(grey)
    weight = centre_weight(grey.shape)
    ink = dark_ink if (dark_ink * weight).sum() <= (light_ink * weight).sum() else light_ink
    if ink.max() < MIN_CONTRAST:
        raise ImageError("no digit found (the image has no contrast)")
    mask = digit_mask(ink)
    rows, columns = mask.nonzero(as_tuple=True)
    top, bottom, left, right = rows.min(), rows.max() + 1, columns.min(), columns.max() + 1
    mask = mask[top:bottom, left:right].float()
    ink = ink[top:bottom, left:right] * morph(mask, 1, grow=True)
    ink = (ink / ink[mask > 0].quantile(0.9).clamp(min=1e-6)).clamp(0, 1)
    scale = BOX / max(ink.shape)
    change = round((MNIST_STROKE_WIDTH / scale - stroke_width(mask)) / 2)
    if change > 0:
        ink = morph(ink, change, grow=True)
    elif change < 0:
        ink = morph(ink, min(-change, round(stroke_width(mask) / 4)), grow=False)
    size = (max(1, round(ink.shape[0] * scale)), max(1, round(ink.shape[1] * scale)))
    digit = F.interpolate(ink[None, None], size=size, mode="bilinear", antialias=True, align_corners=False)[0, 0]
    return ((centre_in_field(digit.clamp(0, 1)) - MNIST_MEAN) / MNIST_STD).unsqueeze(0)
