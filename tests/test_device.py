"""mnist_cnn/device.py: device choice, the autocast type and the allocator setting."""

import argparse
import sys

import pytest
import torch

from mnist_cnn import device
from mnist_cnn.optim import ScheduledOptimizers
from mnist_cnn.recipe import Recipe
from mnist_cnn.step import make_step
from model import MnistCNN


def test_device_option_offers_the_known_devices() -> None:
    parser = argparse.ArgumentParser()
    device.add_device_option(parser)
    assert parser.parse_args([]).device == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args(["--device", "tpu"])


@pytest.mark.parametrize(("cuda", "mps", "picked"), [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_picks_cuda_then_mps_then_cpu(cuda: bool, mps: bool, picked: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(device.DEVICE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert device.pick_device("auto") == torch.device(picked)
    assert device.pick_device("cpu") == torch.device("cpu")


def test_auto_picks_what_the_environment_names_even_where_mps_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)  # as on GitHub's macOS runners
    monkeypatch.setenv(device.DEVICE_ENV, "cpu")
    assert device.pick_device("auto") == torch.device("cpu")
    assert device.pick_device("mps") == torch.device("mps")  # an explicit --device still wins
    monkeypatch.setenv(device.DEVICE_ENV, "")
    assert device.pick_device("auto") == torch.device("mps")


def test_a_device_variable_naming_no_device_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(device.DEVICE_ENV, "gpu")
    with pytest.raises(device.DeviceError, match="MNIST_DEVICE is 'gpu': set it to one of cpu, cuda, mps"):
        device.pick_device("auto")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_asking_for_missing_cuda_is_an_error() -> None:
    with pytest.raises(device.DeviceError, match="no CUDA device is available"):
        device.pick_device("cuda")


@pytest.mark.parametrize(("bf16", "expected"), [(True, torch.bfloat16), (False, None)])
def test_autocast_is_bfloat16_where_the_cpu_has_it(
    bf16: bool, expected: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(device.PRECISION_ENV, raising=False)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: bf16)
    assert device.autocast_dtype(torch.device("cpu")) == expected
    assert device.autocast_dtype(torch.device("mps")) is None


@pytest.mark.parametrize(("native", "precision", "expected"), [(True, "fp32", None), (False, "bf16", torch.bfloat16)])
def test_precision_overrides_what_the_cpu_computes_natively(
    native: bool, precision: str, expected: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(device.PRECISION_ENV, raising=False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)
    assert device.autocast_dtype(torch.device("cpu"), precision) == expected


def test_auto_precision_honours_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.setenv(device.PRECISION_ENV, "fp32")
    assert device.autocast_dtype(torch.device("cpu")) is None
    assert device.autocast_dtype(torch.device("cpu"), "bf16") == torch.bfloat16  # an explicit --precision wins
    monkeypatch.setenv(device.PRECISION_ENV, "float16")
    with pytest.raises(device.DeviceError, match="MNIST_PRECISION is 'float16': set it to bf16 or fp32"):
        device.autocast_dtype(torch.device("cpu"))


def test_bfloat16_where_the_device_cannot_compute_it_is_refused() -> None:
    with pytest.raises(device.DeviceError, match="--precision bf16: mps cannot compute in bfloat16"):
        device.autocast_dtype(torch.device("mps"), "bf16")


@pytest.mark.skipif(sys.platform != "linux", reason="keep_freed_memory tunes glibc's malloc, which only Linux has")
def test_kept_memory_is_reused_with_few_page_faults() -> None:
    # Measured on the 2-core VM over these ten steps: 9,000 to 20,000 page faults without it, under 200 with it.
    import resource  # POSIX only, like the glibc setting this test measures

    device.keep_freed_memory()
    model = MnistCNN().to(memory_format=torch.channels_last)
    recipe = Recipe(batch_size=128)
    take_step = make_step(model, ScheduledOptimizers(model, recipe, total_steps=20), recipe, None)
    images = torch.randn(128, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    labels = torch.arange(128) % 10
    faults = []
    for _ in range(15):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        take_step(images, labels)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    assert sum(faults[5:]) < 1000, faults
