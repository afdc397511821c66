"""mnist_cnn/inference.py: test-time shifts as an explicit wrapper, one view or five, and digit probabilities."""

import pytest
import torch

from mnist_cnn.inference import TEST_TIME_SHIFTS, ShiftAveraged, digit_probabilities, shifted_views, with_views
from model import MnistCNN


def test_shifted_views_move_a_pixel_by_one_in_each_direction() -> None:
    image = torch.zeros(1, 1, 28, 28)
    image[0, 0, 10, 12] = 1.0
    lit = [tuple((view[0] == 1).nonzero()[0].tolist()) for view in shifted_views(image)]
    assert lit == [(10, 12), (11, 12), (9, 12), (10, 13), (10, 11)]


@pytest.mark.parametrize("full_resolution", [False, True])
def test_five_views_average_the_logits_of_the_shifted_images(full_resolution: bool) -> None:
    model = MnistCNN(full_resolution).eval()
    images = torch.zeros(3, 1, 28, 28)
    images[:, :, 4:24, 6:22] = torch.rand(3, 1, 20, 16)  # an empty border: rolling equals shifting
    with torch.no_grad():
        views = [model(torch.roll(images, shift, (2, 3))) for shift in TEST_TIME_SHIFTS]
        averaged = with_views(model, 5)(images)
        torch.testing.assert_close(averaged, torch.stack(views).mean(0), rtol=1e-4, atol=1e-5)
        assert not torch.allclose(averaged, views[0], atol=1e-4)


def test_one_view_is_the_model_itself_and_other_counts_are_refused() -> None:
    model = MnistCNN()
    assert with_views(model, 1) is model
    assert isinstance(with_views(model, 5), ShiftAveraged)
    with pytest.raises(ValueError, match="views must be one of"):
        with_views(model, 3)


def test_wrapper_refuses_wrong_shapes_like_the_model() -> None:
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        ShiftAveraged(MnistCNN().eval())(torch.randn(2, 28, 28))


def test_probabilities_sum_to_one_per_image() -> None:
    probabilities = digit_probabilities(MnistCNN().eval(), torch.randn(3, 1, 28, 28))
    assert probabilities.shape == (3, 10) and probabilities.dtype == torch.float32
    torch.testing.assert_close(probabilities.sum(1), torch.ones(3))
