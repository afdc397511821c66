"""Shared test helpers: the repository root, running a script as a subprocess, the MNIST folder, one training run."""

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import train
from mnist_cnn.data import MNIST_FILES, default_data_dir

ROOT = Path(__file__).resolve().parents[1]


def run_script(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run one of the project's scripts (train.py) or tools (tools.gate) in a subprocess from the repository root."""
    command = [str(ROOT / script)] if script.endswith(".py") else ["-m", script]
    return subprocess.run(
        [sys.executable, *command, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
        cwd=ROOT,
    )


def offline_env() -> dict[str, str]:
    """The environment with every proxy pointed at a closed local port, so that no download can succeed."""
    unreachable = "http://127.0.0.1:9"
    proxies = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")
    return os.environ | dict.fromkeys(proxies, unreachable)


def copy_with(raw: Path, name: str, change: Callable[[bytes], bytes]) -> None:
    """Link the real MNIST files into raw, except name, which is written changed by change(bytes)."""
    real = Path(default_data_dir()).resolve() / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for file in MNIST_FILES:
        if file != name:
            (raw / file).symlink_to(real / file)
    (raw / name).write_bytes(change((real / name).read_bytes()))


def set_byte(offset: int, value: int) -> Callable[[bytes], bytes]:
    """Return a change that sets one byte."""
    return lambda content: content[:offset] + bytes([value]) + content[offset + 1 :]


@pytest.fixture(scope="session")
def bad_labels_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A data folder like the real one whose test labels hold a label 11."""
    folder = tmp_path_factory.mktemp("bad-mnist")
    copy_with(folder / "MNIST" / "raw", MNIST_FILES[3], set_byte(100, 11))
    return str(folder)


BAD_LABELS_MESSAGE = "t10k-labels-idx1-ubyte is not a valid MNIST file: it holds the label 11, expected labels 0 to 9"


@pytest.fixture(scope="session")
def data_dir() -> str:
    """The MNIST folder: $MNIST_DATA_DIR, falling back to ./data."""
    return default_data_dir()


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, data_dir: str) -> train.TrainResult:
    """Train the default recipe for one epoch, once per session, into a temporary folder."""
    args = train.parse_args(
        ["--data-dir", data_dir, "--out-dir", str(tmp_path_factory.mktemp("models")), "--no-progress"]
    )
    return train.run_training(train.recipe_from_args(args), args)
