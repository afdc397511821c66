"""mnist_cnn/corruptions.py: each corruption of the suite does what its name says, the same way every time."""

import pytest
import torch

from mnist_cnn import corruptions


@pytest.fixture()
def bar() -> torch.Tensor:
    """Two images, each a vertical white bar 2 pixels wide in the middle of black."""
    images = torch.zeros(2, 1, 28, 28)
    images[:, :, 6:22, 13:15] = 1.0
    return images


def test_every_corruption_keeps_shape_and_range_and_is_seeded(bar: torch.Tensor) -> None:
    assert len(corruptions.SUITE) >= 12
    for name in corruptions.SUITE:
        once, again = corruptions.corrupted(bar, name), corruptions.corrupted(bar, name)
        assert once.shape == bar.shape and 0 <= once.min() and once.max() <= 1, name
        assert torch.equal(once, again), name
        assert not torch.equal(once, bar), name


def test_shifts_move_the_ink(bar: torch.Tensor) -> None:
    right = corruptions.corrupted(bar, "shift 3 right")
    assert torch.equal(right[:, :, 6:22, 16:18], bar[:, :, 6:22, 13:15]) and right.sum() == bar.sum()
    diagonal = corruptions.corrupted(bar, "shift 3 diagonal")
    assert torch.equal(diagonal[:, :, 9:25, 16:18], bar[:, :, 6:22, 13:15])


def test_thickness_changes_the_ink_area(bar: torch.Tensor) -> None:
    area = bar.sum()
    assert corruptions.corrupted(bar, "thicker strokes").sum() > 1.8 * area
    assert corruptions.corrupted(bar, "thinner strokes").sum() < 0.6 * area


def test_fog_lights_the_background_unevenly(bar: torch.Tensor) -> None:
    fogged = corruptions.corrupted(bar, "fog 0.6")
    background = fogged[:, :, :, :10]
    assert 0.05 < background.mean() < 0.55 and background.std() > 0.03  # a texture, not a uniform shift
    assert not torch.equal(fogged[0], fogged[1])  # each image its own fog


def test_a_zigzag_crosses_the_whole_image(bar: torch.Tensor) -> None:
    crossed = corruptions.corrupted(torch.zeros(3, 1, 28, 28), "zigzag line")
    assert (crossed[:, 0].amax(1) > 0.7).all()  # ink in every column
    assert 20 < crossed[0].sum() < 150


@pytest.mark.parametrize("name", ["fog 0.6", "zigzag line"])
def test_standardising_each_image_cannot_undo_the_corruption(bar: torch.Tensor, name: str) -> None:
    def standardised(images: torch.Tensor) -> torch.Tensor:
        return (images - images.mean((1, 2, 3), keepdim=True)) / images.std((1, 2, 3), keepdim=True)

    assert (standardised(corruptions.corrupted(bar, name)) - standardised(bar)).abs().max() > 0.5


def test_rotation_turns_a_vertical_bar(bar: torch.Tensor) -> None:
    turned = corruptions.rotate(bar, 90)
    rows, columns = (turned[0, 0] > 0.5).nonzero(as_tuple=True)
    assert columns.max() - columns.min() > rows.max() - rows.min()
