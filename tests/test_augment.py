"""augment.py: the recipe chosen for a number of epochs, and seeded distortions that keep the batch's shape."""

import torch

from augment import ONE_EPOCH_AUGMENTATION, Augmentation, augment, augmentation_for


def test_longer_runs_get_the_full_distortions() -> None:
    assert augmentation_for(1) == ONE_EPOCH_AUGMENTATION
    assert augmentation_for(10) == Augmentation()
    assert augmentation_for(10).rotation_degrees > 0 and ONE_EPOCH_AUGMENTATION.rotation_degrees == 0


def test_augment_keeps_the_shape_and_is_seeded_by_the_global_generator() -> None:
    images = torch.randn(16, 1, 28, 28)
    for recipe in (ONE_EPOCH_AUGMENTATION, Augmentation()):
        torch.manual_seed(3)
        first = augment(images, recipe)
        torch.manual_seed(3)
        second = augment(images, recipe)
        assert first.shape == images.shape and torch.equal(first, second)
        assert not torch.equal(first, images)


def test_one_epoch_shift_moves_the_whole_batch_alike() -> None:
    images = torch.zeros(4, 1, 28, 28)
    images[:, :, 14, 14] = 1.0
    torch.manual_seed(0)
    moved = augment(images, ONE_EPOCH_AUGMENTATION)
    places = [tuple((image[0] == 1).nonzero()[0].tolist()) for image in moved]
    assert len(set(places)) == 1
    assert all(abs(coordinate - 14) <= 2 for coordinate in places[0])
