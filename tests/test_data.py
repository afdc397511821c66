"""mnist_cnn/data.py: MNIST loaded as normalised channels-last tensors, the data folder option, missing data."""

import argparse
from pathlib import Path

import pytest
import torch

from conftest import copy_with, set_byte
from mnist_cnn import data


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


BAD_FILES = [
    ("t10k-labels-idx1-ubyte", set_byte(100, 10), "it holds the label 10, expected labels 0 to 9"),
    ("t10k-labels-idx1-ubyte", set_byte(3, 3), "its magic number is 2051, expected 2049"),
    ("t10k-images-idx3-ubyte", lambda content: content[:100_000], "it is 100,000 bytes long, expected 7,840,016"),
    ("t10k-images-idx3-ubyte", set_byte(7, 0x11), "its header counts 10,001 items, expected 10,000"),
    ("t10k-images-idx3-ubyte", set_byte(11, 32), "its images are 32x28, expected 28x28"),
    ("t10k-labels-idx1-ubyte", lambda content: content[:5], "it is 5 bytes long, shorter than its 8-byte header"),
    ("train-labels-idx1-ubyte", lambda content: content + b"\0", "it is 60,009 bytes long, expected 60,008"),
]


@pytest.mark.parametrize(("name", "change", "problem"), BAD_FILES)
def test_bad_raw_file_is_named_with_what_is_wrong(name: str, change: object, problem: str, tmp_path: Path) -> None:
    copy_with(tmp_path / "MNIST" / "raw", name, change)
    with pytest.raises(data.DataError) as raised:
        data.load_mnist(str(tmp_path), train=name.startswith("train"), device=torch.device("cpu"))
    path = tmp_path / "MNIST" / "raw" / name
    assert str(raised.value) == (
        f"{path} is not a valid MNIST file: {problem}; "
        "delete it so that it is downloaded again, or copy a good one in its place"
    )


def test_sound_files_pass_the_check(data_dir: str) -> None:
    for train in (True, False):
        data.check_raw_files(data_dir, train)


def test_the_validation_split_is_the_last_training_images_held_out(data_dir: str) -> None:
    cpu = torch.device("cpu")
    images, labels = data.load_mnist(data_dir, train=True, device=cpu)
    split, (train_images, train_labels), (held_images, held_labels) = data.load_training_and_scoring_sets(
        data_dir, cpu, 7
    )
    assert split == "validation" and len(train_images) == 60_000 - 7 and len(held_images) == 7
    assert torch.equal(held_images, images[-7:]) and torch.equal(held_labels, labels[-7:])
    assert torch.equal(train_images, images[:-7]) and torch.equal(train_labels, labels[:-7])
