"""Shared test helpers: the repository root, running a script as a subprocess, the MNIST folder, one training run."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import train
from data import default_data_dir
from model import MnistCNN
from optim import step_optimizers

ROOT = Path(__file__).resolve().parents[1]


def run_script(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run one of the project's scripts in a subprocess and return what it did."""
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )


def offline_env() -> dict[str, str]:
    """The environment with every proxy pointed at a closed local port, so that no download can succeed."""
    unreachable = "http://127.0.0.1:9"
    proxies = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")
    return os.environ | dict.fromkeys(proxies, unreachable)


def recipe_step(model: MnistCNN, schedules: list, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Take one training step of the recipe on images; return the loss before it."""
    loss = nn.functional.cross_entropy(model(images), labels)
    model.zero_grad(set_to_none=True)
    loss.backward()
    step_optimizers(schedules)
    return loss.item()


@pytest.fixture(scope="session")
def data_dir() -> str:
    """The MNIST folder: $MNIST_DATA_DIR, falling back to ./data."""
    return default_data_dir()


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, data_dir: str) -> train.TrainResult:
    """Train the default configuration for one epoch, once per session, into a temporary folder."""
    out_dir = tmp_path_factory.mktemp("models")
    return train.run_training(train.parse_args(["--data-dir", data_dir, "--out-dir", str(out_dir), "--no-progress"]))
