"""The model: parameter budget, output shape and refusal of wrong input shapes."""

import pytest
import torch

from model import PARAMETER_BUDGET, TEST_TIME_SHIFTS, MnistCNN, count_parameters, shifted_views


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


def test_brightness_and_contrast_cannot_move_the_input() -> None:
    model = MnistCNN().eval()
    images = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(0.5 * images + 0.3), model(images), rtol=1e-2, atol=5e-3)


def test_a_checkpoint_of_the_model_without_standardisation_does_not_load() -> None:
    state = {name: tensor for name, tensor in MnistCNN().state_dict().items() if not name.endswith("eps")}
    with pytest.raises(RuntimeError, match="Missing key"):
        MnistCNN().load_state_dict(state)


def test_full_resolution_model_is_under_budget_and_returns_ten_logits_an_image() -> None:
    model = MnistCNN(full_resolution=True).eval()
    assert count_parameters(model) < PARAMETER_BUDGET
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_shifted_views_move_a_pixel_by_one_in_each_direction() -> None:
    image = torch.zeros(1, 1, 28, 28)
    image[0, 0, 10, 12] = 1.0
    views = shifted_views(image, ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)))
    lit = [tuple((view[0] == 1).nonzero()[0].tolist()) for view in views]
    assert lit == [(10, 12), (11, 12), (9, 12), (10, 13), (10, 11)]


@pytest.mark.parametrize("full_resolution", [False, True])
def test_eval_logits_are_the_mean_over_shifted_images(full_resolution: bool) -> None:
    model = MnistCNN(full_resolution).eval()
    images = torch.zeros(3, 1, 28, 28)
    images[:, :, 4:24, 6:22] = torch.rand(3, 1, 20, 16)  # an empty border: rolling equals shifting
    with torch.no_grad():
        views = [model.single_view_logits(torch.roll(images, shift, (2, 3))) for shift in TEST_TIME_SHIFTS]
        torch.testing.assert_close(model(images), torch.stack(views).mean(0), rtol=1e-4, atol=1e-5)
        assert not torch.allclose(model(images), views[0], atol=1e-4)


def test_training_logits_are_those_of_the_image_alone() -> None:
    model = MnistCNN().train()
    images = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(model(images), model.single_view_logits(images))
