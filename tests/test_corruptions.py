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


def test_brightness_and_fog_lift_the_background(bar: torch.Tensor) -> None:
    assert corruptions.corrupted(bar, "brightness +0.4")[0, 0, 0, 0] == pytest.approx(0.4)
    fogged = corruptions.corrupted(bar, "fog (contrast halved)")
    assert fogged[0, 0, 0, 0] == pytest.approx(0.25) and fogged.max() == pytest.approx(0.75)


def test_rotation_turns_a_vertical_bar(bar: torch.Tensor) -> None:
    turned = corruptions.rotate(bar, 90)
    rows, columns = (turned[0, 0] > 0.5).nonzero(as_tuple=True)
    assert columns.max() - columns.min() > rows.max() - rows.min()
