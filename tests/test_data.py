"""data.py: MNIST loaded as normalised channels-last tensors, the data folder option, missing data."""

import argparse
from pathlib import Path

import pytest
import torch

import data


def test_default_data_dir_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data.DATA_DIR_ENV, "/somewhere/mnist")
    assert data.default_data_dir() == "/somewhere/mnist"
    monkeypatch.delenv(data.DATA_DIR_ENV)
    assert data.default_data_dir() == "./data"


def test_data_option_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data.DATA_DIR_ENV, "/from/env")
    parser = argparse.ArgumentParser()
    data.add_data_option(parser)
    assert parser.parse_args([]).data_dir == "/from/env"
    assert parser.parse_args(["--data-dir", "x"]).data_dir == "x"


def test_test_set_is_normalised_and_channels_last(data_dir: str) -> None:
    images, labels = data.load_mnist(data_dir, train=False, device=torch.device("cpu"))
    assert images.shape == (10_000, 1, 28, 28) and labels.shape == (10_000,)
    assert images.is_contiguous(memory_format=torch.channels_last)
    pixels = images * data.MNIST_STD + data.MNIST_MEAN
    assert pixels.min().item() == pytest.approx(0, abs=1e-5) and pixels.max().item() == pytest.approx(1, abs=1e-5)
    assert labels.bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_training_set_mean_and_std_are_mnists(data_dir: str) -> None:
    images, _ = data.load_mnist(data_dir, train=True, device=torch.device("cpu"))
    assert len(images) == 60_000
    assert images.mean().item() == pytest.approx(0, abs=1e-3)
    assert images.std().item() == pytest.approx(1, abs=1e-3)


def test_missing_data_names_the_folder_and_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")
    with pytest.raises(data.DataError) as raised:
        data.load_mnist(str(tmp_path), train=False, device=torch.device("cpu"))
    message = str(raised.value)
    assert message.startswith(f"MNIST not found in {tmp_path / 'MNIST' / 'raw'}")
    assert all(name in message for name in data.MNIST_FILES)
