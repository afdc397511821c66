"""The model: parameter budget, output shape and refusal of wrong input shapes."""

import pytest
import torch

from model import PARAMETER_BUDGET, MnistCNN, count_parameters


def test_parameter_count_is_under_budget() -> None:
    assert count_parameters(MnistCNN()) < PARAMETER_BUDGET


def test_count_parameters_counts_only_trainable_ones() -> None:
    model = MnistCNN()
    total = sum(p.numel() for p in model.parameters())
    model.classifier.weight.requires_grad_(False)
    assert count_parameters(model) == total - model.classifier.weight.numel()


@pytest.mark.parametrize("batch", [1, 2, 7, 64])
def test_output_shape(batch: int) -> None:
    model = MnistCNN().eval()
    assert model(torch.randn(batch, 1, 28, 28)).shape == (batch, 10)


@pytest.mark.parametrize("shape", [(1, 28, 28), (2, 3, 28, 28), (2, 1, 32, 32), (0, 1, 28, 28), (4, 784)])
def test_wrong_input_shape_raises_value_error(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)") as raised:
        MnistCNN()(torch.randn(shape))
    assert str(tuple(shape)) in str(raised.value)
