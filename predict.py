"""Classify image files of handwritten digits with a trained checkpoint.

Each image is prepared the way MNIST was (mnist_cnn/digit_image.py): ink found against the paper's local
brightness, cropped to the digit, strokes brought to MNIST's thickness, fitted into a 20x20 box and
centred by its centre of mass in a 28x28 field.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

from mnist_cnn.checkpoint import load_checkpoint, newest_checkpoint, views_to_read
from mnist_cnn.cli import add_views_option, positive_int, reports_errors
from mnist_cnn.device import add_device_option, pick_device
from mnist_cnn.digit_image import ImageError, prepare_file
from mnist_cnn.inference import digit_probabilities, with_views
from model import NUM_CLASSES


def read_image(path: Path) -> torch.Tensor:
    """Open path and return it prepared like MNIST; raise ImageError when it cannot be read or holds no digit."""
    if path.is_dir():
        raise ImageError("is a folder, not an image file")
    try:
        if path.stat().st_size == 0:
            raise ImageError("is an empty file")
        with path.open("rb") as file:
            return prepare_file(file)
    except FileNotFoundError:
        raise ImageError("no such file") from None
    except OSError as error:
        raise ImageError(f"cannot open it ({error.strerror or error})") from None


@reports_errors()
def main(argv: list[str] | None = None) -> int:
    """Run predict.py with argv; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "images", nargs="+", type=Path, help="image files (PNG, JPEG, GIF, BMP, WebP, TIFF, ...), one digit each"
    )
    parser.add_argument("--checkpoint", type=Path, help="checkpoint to use (default: the newest in models/)")
    parser.add_argument(
        "--top", type=positive_int, default=1, help="how many digits to list per file (default: %(default)s)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per file")
    add_device_option(parser)
    add_views_option(parser)
    args = parser.parse_args(argv)
    top = min(args.top, NUM_CLASSES)
    device = pick_device(args.device)
    model, metadata = load_checkpoint(args.checkpoint or newest_checkpoint(), device)
    classifier = with_views(model, views_to_read(args.views, metadata))
    failed = False
    for path in args.images:
        try:
            image = read_image(path)
        except ImageError as error:
            print(f"error: {path}: {error}", file=sys.stderr)
            failed = True
            continue
        probabilities = digit_probabilities(classifier, image.unsqueeze(0).to(device))[0]
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
