"""MNIST as normalised tensors on the device: its mean and std, the data folder option, loading."""

import argparse
import os
from pathlib import Path

import torch

from mnist_cnn.cli import BadInput
from model import IMAGE_SIDE, NUM_CLASSES

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
DATA_DIR_ENV = "MNIST_DATA_DIR"
SPLIT_SIZES = {True: 60_000, False: 10_000}
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049


class DataError(BadInput):
    """The MNIST files are missing and cannot be downloaded, or a file present is not a valid MNIST file."""


def default_data_dir() -> str:
    """Return the MNIST folder: $MNIST_DATA_DIR when set, else ./data."""
    return os.environ.get(DATA_DIR_ENV) or "./data"


def add_data_option(parser: argparse.ArgumentParser) -> None:
    """Add --data-dir, which every script that reads MNIST shares."""
    parser.add_argument(
        "--data-dir",
        default=default_data_dir(),
        help=f"folder holding MNIST/raw/, downloaded there when missing (default: ${DATA_DIR_ENV} or ./data)",
    )


def raw_file_problem(path: Path, images: bool, count: int) -> str | None:
    """Return what is wrong with one raw MNIST file (found against expected), or None when it is sound."""
    header_size = 16 if images else 8
    item_size = IMAGE_SIDE * IMAGE_SIDE if images else 1
    with path.open("rb") as file:
        header = file.read(header_size)
        if len(header) < header_size:
            return f"it is {len(header)} bytes long, shorter than its {header_size}-byte header"
        fields = [int.from_bytes(header[start : start + 4], "big") for start in range(0, header_size, 4)]
        expected_magic = IMAGES_MAGIC if images else LABELS_MAGIC
        if fields[0] != expected_magic:
            return f"its magic number is {fields[0]}, expected {expected_magic}"
        if fields[1] != count:
            return f"its header counts {fields[1]:,} items, expected {count:,}"
        if images and fields[2:] != [IMAGE_SIDE, IMAGE_SIDE]:
            return f"its images are {fields[2]}x{fields[3]}, expected {IMAGE_SIDE}x{IMAGE_SIDE}"
        size, expected_size = path.stat().st_size, header_size + count * item_size
        if size != expected_size:
            return f"it is {size:,} bytes long, expected {expected_size:,}"
        if not images:
            largest = max(file.read())
            if largest >= NUM_CLASSES:
                return f"it holds the label {largest}, expected labels 0 to {NUM_CLASSES - 1}"
    return None


def check_raw_files(data_dir: str, train: bool) -> None:
    """Raise DataError when a raw file of the split is present but not sound; missing ones are left to download."""
    images_name, labels_name = MNIST_FILES[:2] if train else MNIST_FILES[2:]
    for name, images in ((images_name, True), (labels_name, False)):
        path = Path(data_dir) / "MNIST" / "raw" / name
        if not path.exists():
            continue
        try:
            problem = raw_file_problem(path, images, SPLIT_SIZES[train])
        except OSError as error:
            problem = f"it cannot be read ({error.strerror or error})"
        if problem:
            raise DataError(
                f"{path} is not a valid MNIST file: {problem}; delete it so that it is downloaded again, "
                "or copy a good one in its place"
            )


def download_mnist(data_dir: str) -> None:
    """Download MNIST's raw files into data_dir/MNIST/raw with torchvision; raise DataError when that fails."""
    import torchvision  # only here: importing it takes about a second that a run with the files present saves

    try:
        torchvision.datasets.MNIST(root=data_dir, train=True, download=True)
    except (OSError, RuntimeError) as error:
        raw = Path(data_dir) / "MNIST" / "raw"
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise DataError(
            f"MNIST not found in {raw} (expected {', '.join(MNIST_FILES)}) and the download failed: {reason}"
        ) from None


def load_mnist(data_dir: str, train: bool, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Return MNIST's images, normalised, as one (N, 1, 28, 28) channels-last tensor on device, and its labels.

    The raw files are checked before use and downloaded when missing.
    """
    raw = Path(data_dir) / "MNIST" / "raw"
    images_path, labels_path = (raw / name for name in (MNIST_FILES[:2] if train else MNIST_FILES[2:]))
    check_raw_files(data_dir, train)
    if not (images_path.is_file() and labels_path.is_file()):
        download_mnist(data_dir)
        check_raw_files(data_dir, train)
    count = SPLIT_SIZES[train]
    pixels = torch.frombuffer(bytearray(images_path.read_bytes()), dtype=torch.uint8)[16:]
    labels = torch.frombuffer(bytearray(labels_path.read_bytes()), dtype=torch.uint8)[8:].long()
    images = pixels.view(count, 1, IMAGE_SIDE, IMAGE_SIDE).to(device=device, dtype=torch.float32)
    images = images.div_(255).sub_(MNIST_MEAN).div_(MNIST_STD)
    return images.contiguous(memory_format=torch.channels_last), labels.to(device)


def load_training_and_scoring_sets(
    data_dir: str, device: torch.device, validation: int | None
) -> tuple[str, tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Return the name of the split that scores a run ("test" or "validation"), the (images, labels) to train on
    and those to score on: the test set, or with validation the last validation training images, held out (the
    test files are then never read).
    """
    images, labels = load_mnist(data_dir, train=True, device=device)
    if not validation:
        return "test", (images, labels), load_mnist(data_dir, train=False, device=device)
    if validation >= len(images):
        raise DataError(f"--validation {validation:,} leaves no training image: MNIST has {len(images):,}")
    return "validation", (images[:-validation], labels[:-validation]), (images[-validation:], labels[-validation:])
