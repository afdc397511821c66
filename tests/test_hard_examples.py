"""mnist_cnn/hard_examples.py: the second half of every run draws by loss; the draw favours hard images."""

import pytest
import torch

from mnist_cnn.hard_examples import draw_by_loss, hard_example_start, hardness
from mnist_cnn.recipe import recipe_for


@pytest.mark.parametrize(
    ("epoch", "epochs", "start"),
    [(0, 1, 50), (0, 2, None), (1, 2, 0), (1, 3, None), (2, 3, 0), (4, 10, None), (5, 10, 0)],
)
def test_second_half_of_every_run_draws_hard_examples(epoch: int, epochs: int, start: int | None) -> None:
    assert hard_example_start(recipe_for(epochs), epoch, 100) == start


def test_draw_by_loss_favours_high_losses() -> None:
    losses = torch.zeros(1000)
    losses[7] = 2.0
    order = draw_by_loss(losses, 1000, 0.5, torch.Generator().manual_seed(0))
    assert len(order) == 1000 and 0 <= order.min() and order.max() < 1000
    assert abs((order == 7).float().mean().item() - 0.5) < 0.1
    assert len(order.unique()) > 300


def test_losses_all_zero_draw_evenly() -> None:
    order = draw_by_loss(torch.zeros(1000), 1000, 0.5, torch.Generator().manual_seed(0))
    assert len(order.unique()) > 500


def test_starting_at_the_end_of_the_run_shuffles_every_epoch() -> None:
    recipe = recipe_for(10, hard_examples_from=1.0)
    assert all(hard_example_start(recipe, epoch, 100) is None for epoch in range(10))
    assert hard_example_start(recipe_for(1, hard_examples_from=1.0), 0, 100) == 100  # past the epoch's last step


def test_relative_losses_rank_images_within_their_batch() -> None:
    targets = torch.tensor([0, 1, 2, 3])
    logits = torch.eye(10)[targets] * 6
    logits[3] = 0  # one image the model cannot tell
    for scale in (1.0, 1 / 6):  # a trained model, and an unsure one (the start of a run) that ranks the images alike
        losses = hardness(logits * scale, targets)
        assert losses.mean().item() == pytest.approx(1.0)
        assert losses.argmax().item() == 3 and losses[0] < 1 < losses[3]
    raw = hardness(logits / 6, targets, relative=False)
    torch.testing.assert_close(raw, torch.nn.functional.cross_entropy(logits / 6, targets, reduction="none"))
