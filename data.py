"""MNIST as normalised tensors on the device: its mean and std, the data folder option, loading."""

import argparse
import os
from pathlib import Path

import torch
import torchvision

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
DATA_DIR_ENV = "MNIST_DATA_DIR"


class DataError(Exception):
    """The MNIST files are missing and cannot be downloaded."""


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


def load_mnist(data_dir: str, train: bool, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Return MNIST's images, normalised, as one (N, 1, 28, 28) channels-last tensor on device, and its labels."""
    try:
        dataset = torchvision.datasets.MNIST(root=data_dir, train=train, download=True)
    except (OSError, RuntimeError) as error:
        raw = Path(data_dir) / "MNIST" / "raw"
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise DataError(
            f"MNIST not found in {raw} (expected {', '.join(MNIST_FILES)}) and the download failed: {reason}"
        ) from None
    images = dataset.data.to(device=device, dtype=torch.float32).div_(255).sub_(MNIST_MEAN).div_(MNIST_STD)
    return images.unsqueeze(1).contiguous(memory_format=torch.channels_last), dataset.targets.to(device)
