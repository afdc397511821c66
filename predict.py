"""Classify image files of handwritten digits with a trained checkpoint.

Each image is prepared the way MNIST was: made light-on-dark grey, cropped to the digit, fitted
into a 20x20 box and centred by its centre of mass in a 28x28 field.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from checkpoint import CheckpointError, load_checkpoint, newest_checkpoint
from data import MNIST_MEAN, MNIST_STD
from device import DeviceError, add_device_option, pick_device
from model import NUM_CLASSES
from options import positive_int

FIELD = 28
BOX = 20
INK_THRESHOLD = 0.2


class ImageError(Exception):
    """An image file cannot be read or holds no digit."""


def pixels(image: Image.Image) -> torch.Tensor:
    """Return a single-band 8-bit image as a (H, W) float tensor in [0, 1]."""
    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return data.view(image.height, image.width).float() / 255


def to_grey(image: Image.Image) -> torch.Tensor:
    """Return image as a (H, W) float tensor in [0, 1]; transparent pixels take the colour opposite the ink."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        alpha, grey = pixels(rgba.getchannel("A")), pixels(rgba.convert("L"))
        ink_is_dark = (grey * alpha).sum() / alpha.sum().clamp(min=1e-6) < 0.5
        background = 1.0 if ink_is_dark else 0.0
        return grey * alpha + background * (1 - alpha)
    return pixels(image.convert("L"))


def prepare(image: Image.Image) -> torch.Tensor:
    """Return a (1, 28, 28) tensor of image prepared like MNIST, normalised with MNIST's mean and std."""
    grey = to_grey(image)
    background = torch.cat([grey[0], grey[-1], grey[:, 0], grey[:, -1]]).median()
    if background > 0.5:
        grey, background = 1 - grey, 1 - background
    ink = ((grey - background) / (grey.max() - background).clamp(min=1e-6)).clamp(0, 1)
    rows, columns = (ink > INK_THRESHOLD).nonzero(as_tuple=True)
    if len(rows) == 0:
        raise ImageError("no digit found (the image has no contrast)")
    ink = ink[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    height, width = ink.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    cropped = Image.fromarray((ink * 255).byte().numpy(), mode="L").resize(size, Image.Resampling.LANCZOS)
    digit = pixels(cropped)
    mass = digit.sum().clamp(min=1e-6)
    centre_row = (digit.sum(1) * torch.arange(size[1])).sum() / mass
    centre_column = (digit.sum(0) * torch.arange(size[0])).sum() / mass
    top = min(max(round(FIELD / 2 - 0.5 - centre_row.item()), 0), FIELD - size[1])
    left = min(max(round(FIELD / 2 - 0.5 - centre_column.item()), 0), FIELD - size[0])
    field = torch.zeros(FIELD, FIELD)
    field[top : top + size[1], left : left + size[0]] = digit
    return ((field - MNIST_MEAN) / MNIST_STD).unsqueeze(0)


def read_image(path: Path) -> torch.Tensor:
    """Open path and return it prepared like MNIST; raise ImageError when it cannot be read."""
    try:
        with Image.open(path) as image:
            image.load()
            return prepare(image)
    except FileNotFoundError:
        raise ImageError("no such file") from None
    except UnidentifiedImageError:
        raise ImageError("not an image Pillow can read") from None
    except (OSError, ValueError) as error:
        raise ImageError(f"cannot read it ({error})") from None


def main(argv: list[str] | None = None) -> int:
    """Run predict.py with argv; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path, help="PNG or JPEG files, each holding one digit")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint to use (default: the newest in models/)")
    parser.add_argument(
        "--top", type=positive_int, default=1, help="how many digits to list per file (default: %(default)s)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per file")
    add_device_option(parser)
    args = parser.parse_args(argv)
    top = min(args.top, NUM_CLASSES)
    try:
        device = pick_device(args.device)
        model, _ = load_checkpoint(args.checkpoint or newest_checkpoint(Path("models")), device)
    except (CheckpointError, DeviceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    failed = False
    for path in args.images:
        try:
            inputs = read_image(path).unsqueeze(0).to(device).contiguous(memory_format=torch.channels_last)
        except ImageError as error:
            print(f"error: {path}: {error}", file=sys.stderr)
            failed = True
            continue
        with torch.inference_mode():
            probabilities = model(inputs).float().softmax(1)[0]
        values, digits = probabilities.topk(top)
        ranked = [
            {"digit": d, "probability": round(p, 6)} for d, p in zip(digits.tolist(), values.tolist(), strict=True)
        ]
        if args.json:
            print(
                json.dumps(
                    {
                        "file": str(path),
                        "digit": ranked[0]["digit"],
                        "probability": ranked[0]["probability"],
                        "top": ranked,
                    }
                )
            )
        else:
            print(f"{path}: " + ", ".join(f"{r['digit']} ({100 * r['probability']:.1f}%)" for r in ranked))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
