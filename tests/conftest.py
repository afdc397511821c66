"""Shared fixtures: the MNIST folder and one training run per test session."""

import pytest

import train


@pytest.fixture(scope="session")
def data_dir() -> str:
    """The MNIST folder: $MNIST_DATA_DIR, falling back to ./data."""
    return train.default_data_dir()


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, data_dir: str) -> train.TrainResult:
    """Train the default configuration for one epoch, once per session, into a temporary folder."""
    out_dir = tmp_path_factory.mktemp("models")
    return train.run_training(train.parse_args(["--data-dir", data_dir, "--out-dir", str(out_dir), "--no-progress"]))
