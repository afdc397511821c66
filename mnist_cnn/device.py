"""Where and how to compute: the --device option, device choice, autocast type, the allocator setting."""

import argparse
import ctypes
import os
import platform
import sys
from pathlib import Path

import torch

from mnist_cnn.cli import BadInput

GLIBC_M_TRIM_THRESHOLD = -1
GLIBC_M_MMAP_THRESHOLD = -3
MALLOC_KEEP_BYTES = 32 * 1024 * 1024
DEVICE_ENV = "MNIST_DEVICE"  # what auto picks when set: CI sets cpu, as hosted macOS runners report an unusable MPS
DEVICES = ("cpu", "cuda", "mps")
PRECISIONS = ("auto", "bf16", "fp32")
PRECISION_ENV = "MNIST_PRECISION"  # what auto means when set: CI sets fp32, so that runners with and without bf16 agree


class DeviceError(BadInput):
    """The device asked for is not available."""


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """Add --device, which every script that runs the model shares."""
    parser.add_argument(
        "--device",
        default="auto",
        choices=["auto", *DEVICES],
        help=f"where to compute; auto picks ${DEVICE_ENV} when set, else cuda, mps or cpu (default: %(default)s)",
    )


def add_precision_option(parser: argparse.ArgumentParser) -> None:
    """Add --precision, which the scripts that train share."""
    parser.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help=f"bf16: bfloat16 autocast; fp32: float32 throughout; auto: ${PRECISION_ENV} when set, else bf16 where "
        "the device computes it natively, else fp32 (default: %(default)s)",
    )


def pick_device(name: str) -> torch.device:
    """Return the device named, or for 'auto' the one $MNIST_DEVICE names, else the first available of cuda, mps and
    cpu.
    """
    if name == "auto" and os.environ.get(DEVICE_ENV):
        forced = os.environ[DEVICE_ENV]
        if forced not in DEVICES:
            raise DeviceError(f"${DEVICE_ENV} is {forced!r}: set it to one of {', '.join(DEVICES)}, or unset it")
        return pick_device(forced)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for, but no CUDA device is available")
    if name == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("--device mps was asked for, but MPS is not available")
    return torch.device(name)


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """Return the autocast type for precision on device: None (compute in float32) for fp32, bfloat16 for bf16, and
    for auto what $MNIST_PRECISION names, or else bfloat16 where the device computes it natively, else None.
    """
    if precision == "auto" and os.environ.get(PRECISION_ENV):
        precision = os.environ[PRECISION_ENV]
        if precision not in PRECISIONS:
            raise DeviceError(f"${PRECISION_ENV} is {precision!r}: set it to bf16 or fp32, or unset it")
    if precision == "fp32":
        return None
    if precision == "bf16":
        if device.type == "mps" or (device.type == "cuda" and not torch.cuda.is_bf16_supported()):
            raise DeviceError(f"--precision bf16: {device.type} cannot compute in bfloat16 here; use fp32 or auto")
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    return None


def cpu_model() -> str:
    """Return the CPU's model name from /proc/cpuinfo, or what platform knows where that file is missing."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def keep_freed_memory() -> None:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the system.

    By default every training step's large activation buffers come fresh from the system and
    are touched page by page, about a thousand page faults per step; this costs a quarter of the
    epoch on a 2-core CPU. Elsewhere than glibc (macOS, Windows, musl) it does nothing.
    """
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(GLIBC_M_MMAP_THRESHOLD, MALLOC_KEEP_BYTES)
    libc.mallopt(GLIBC_M_TRIM_THRESHOLD, MALLOC_KEEP_BYTES)
