"""mnist_cnn/augment.py: seeded distortions that keep the batch's shape, the whole-batch shift, stroke thickness."""

import torch

from mnist_cnn.augment import augment, thicker, thinner
from mnist_cnn.recipe import EVERY_DISTORTION, WHOLE_BATCH_SHIFT


def test_augment_keeps_the_shape_and_is_seeded_by_the_global_generator() -> None:
    images = torch.randn(16, 1, 28, 28)
    for augmentation in (WHOLE_BATCH_SHIFT, EVERY_DISTORTION):
        torch.manual_seed(3)
        first = augment(images, augmentation)
        torch.manual_seed(3)
        second = augment(images, augmentation)
        assert first.shape == images.shape and torch.equal(first, second)
        assert not torch.equal(first, images)


def test_whole_batch_shift_moves_every_image_alike() -> None:
    images = torch.zeros(4, 1, 28, 28)
    images[:, :, 14, 14] = 1.0
    torch.manual_seed(0)
    moved = augment(images, WHOLE_BATCH_SHIFT)
    places = [tuple((image[0] == 1).nonzero()[0].tolist()) for image in moved]
    assert len(set(places)) == 1
    assert all(abs(coordinate - 14) <= 2 for coordinate in places[0])


def test_thicker_and_thinner_change_a_strokes_width_by_one_pixel_side() -> None:
    bar = torch.zeros(1, 1, 28, 28)
    bar[:, :, 2:26, 12:16] = 1.0  # a stroke four pixels wide and 24 tall
    assert thicker(bar).sum() == 26 * 6
    assert thinner(bar).sum() == 23 * 3


def test_thinner_leaves_ink_at_the_image_edge() -> None:
    edge = torch.zeros(1, 1, 28, 28)
    edge[:, :, :, 24:] = 1.0
    assert torch.equal(thinner(edge)[..., -1], edge[..., -1])
