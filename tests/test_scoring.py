"""mnist_cnn/scoring.py: accuracy, loss and predictions with one view or five, the confusion matrix, per digit."""

import pytest
import torch
import torch.nn.functional as F

import train
from mnist_cnn.checkpoint import load_checkpoint
from mnist_cnn.data import load_mnist
from mnist_cnn.device import autocast_dtype
from mnist_cnn.scoring import confusion_matrix, per_class_accuracy, score, score_views
from model import MnistCNN


class RightBelowSix(torch.nn.Module):
    """Answers the label of each image whose label is below 6, the next digit for the others; an image's label is
    its brightest pixel, which one-pixel shifts keep.
    """

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        labels = images.amax((1, 2, 3)).round().long()
        answers = torch.where(labels < 6, labels, (labels + 1) % 10)
        return 8.0 * F.one_hot(answers, 10).float()


@pytest.mark.parametrize("views", [1, 5])
def test_score_counts_the_predictions_right(views: int) -> None:
    labels = torch.arange(25) % 10  # 17 of them below 6
    images = labels.float().view(25, 1, 1, 1).expand(25, 1, 28, 28).contiguous()
    scored = score(RightBelowSix(), images, labels, None, views)
    assert scored.accuracy == 68.0
    assert torch.equal(scored.predicted == labels, labels < 6)
    right, wrong = (
        F.cross_entropy(8.0 * F.one_hot(torch.tensor([answer]), 10).float(), torch.tensor([0])) for answer in (0, 1)
    )
    assert scored.loss == pytest.approx((17 * right.item() + 8 * wrong.item()) / 25, rel=1e-5)


def test_checkpoint_reproduces_both_stored_test_accuracies(trained: train.TrainResult, data_dir: str) -> None:
    cpu = torch.device("cpu")
    model, metadata = load_checkpoint(trained.checkpoint_path, cpu)
    images, labels = load_mnist(data_dir, train=False, device=cpu)
    metrics = metadata["metrics"]
    for views, key in ((5, "test_accuracy"), (1, "test_accuracy_one_view")):
        assert score(model, images, labels, autocast_dtype(cpu), views).accuracy == pytest.approx(
            metrics[key], abs=1e-9
        )


def test_confusion_matrix_counts_pairs_and_per_class_accuracy_reads_its_rows() -> None:
    labels, predicted = torch.tensor([0, 0, 1, 9]), torch.tensor([0, 1, 1, 9])
    matrix = confusion_matrix(labels, predicted)
    assert matrix.shape == (10, 10) and matrix.sum() == 4
    assert matrix[0, 0] == 1 and matrix[0, 1] == 1 and matrix[1, 1] == 1 and matrix[9, 9] == 1
    accuracy = per_class_accuracy(matrix)
    assert accuracy[0] == 50 and accuracy[1] == 100 and accuracy[9] == 100


def test_one_pass_gives_the_views_and_the_image_alone_as_two_passes_would(data_dir: str) -> None:
    torch.manual_seed(0)
    model = MnistCNN().eval()
    images, labels = (part[:300] for part in load_mnist(data_dir, train=False, device=torch.device("cpu")))
    both, alone = score_views(model, images, labels, None, 5)
    separately = score(model, images, labels, None, 5), score(model, images, labels, None, 1)
    for together, apart in zip((both, alone), separately, strict=True):
        assert torch.equal(together.predicted, apart.predicted)
        assert together.loss == pytest.approx(apart.loss, rel=1e-5) and together.accuracy == apart.accuracy
    assert not torch.equal(both.predicted, alone.predicted)  # five views are not one
