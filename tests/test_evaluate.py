"""evaluate.py: the report and its pictures with one view or five, and bad checkpoints as a user meets them."""

import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

import evaluate
import train
from conftest import BAD_CHECKPOINTS, BAD_LABELS_MESSAGE
from mnist_cnn.corruptions import SUITE
from mnist_cnn.data import load_mnist


def test_evaluate_matches_the_checkpoint_and_writes_the_report(
    trained: train.TrainResult, data_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    report = tmp_path / "report"
    args = ["--checkpoint", str(trained.checkpoint_path), "--data-dir", data_dir, "--report", str(report)]
    assert evaluate.main(args) == 0
    printed = capsys.readouterr().out
    stored = trained.metadata["metrics"]["test_accuracy"]
    assert f"test accuracy  {stored:.2f}%" in printed and "5 view(s) of each image" in printed
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["test_accuracy"] == pytest.approx(stored, abs=1e-9)
    matrix = torch.tensor(metrics["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 10_000
    assert matrix.diagonal().sum() == 10_000 - metrics["errors"]
    assert 100 * matrix.diagonal().sum() / 10_000 == pytest.approx(stored)
    rows = [line for line in printed.splitlines() if line[:4].strip().isdigit() and len(line.split()) == 11]
    assert len(rows) == 10 and len({len(row) for row in rows}) == 1
    with Image.open(report / "confusion_matrix.png") as picture:
        assert 300 <= picture.width <= 2000 and 300 <= picture.height <= 2000
    with Image.open(report / "misclassified.png") as picture:
        assert 56 <= picture.width <= 2000 and 56 <= picture.height <= 2000
    assert "corruptions" not in metrics


@pytest.mark.slow
def test_corruptions_add_the_suite_to_the_report(
    trained: train.TrainResult, data_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    first_images = lambda *args, **kwargs: tuple(part[:2000] for part in load_mnist(*args, **kwargs))  # noqa: E731
    monkeypatch.setattr(evaluate, "load_mnist", first_images)  # the suite is what this checks, not the whole set
    report = tmp_path / "report"
    args = ["--checkpoint", str(trained.checkpoint_path), "--data-dir", data_dir, "--report", str(report)]
    assert evaluate.main([*args, "--corruptions"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["images"] == 2000
    assert list(metrics["corruptions"]) == list(SUITE)
    values = list(metrics["corruptions"].values())
    assert metrics["corruption_mean"] == pytest.approx(sum(values) / len(values)) and metrics["corruption_mean"] > 90
    assert metrics["corruption_worst"] == min(values)
    for name, accuracy in metrics["corruptions"].items():
        assert re.search(rf"{re.escape(name)}\s+{accuracy:.2f}%", printed), name


@pytest.mark.parametrize("asked", ["--views 1", "the checkpoint's recipe"])
def test_one_view_gives_the_stored_single_view_figures(
    trained: train.TrainResult,
    one_view_checkpoint: Path,
    data_dir: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    asked: str,
) -> None:
    report = tmp_path / "report"
    checkpoint = trained.checkpoint_path if asked == "--views 1" else one_view_checkpoint
    args = ["--checkpoint", str(checkpoint), "--data-dir", data_dir, "--report", str(report)]
    assert evaluate.main([*args, *(["--views", "1"] if asked == "--views 1" else [])]) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["views"] == 1
    assert metrics["test_accuracy"] == pytest.approx(trained.metadata["metrics"]["test_accuracy_one_view"], abs=1e-9)
    assert metrics["test_loss"] == pytest.approx(trained.metadata["metrics"]["test_loss_one_view"], rel=1e-6)
    assert "1 view(s) of each image" in capsys.readouterr().out


@pytest.mark.parametrize("case", sorted(BAD_CHECKPOINTS))
def test_bad_checkpoint_exits_two_with_one_line(
    case: str, bad_checkpoints: dict, capsys: pytest.CaptureFixture
) -> None:
    assert evaluate.main(["--checkpoint", str(bad_checkpoints[case])]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and BAD_CHECKPOINTS[case] in error and error.count("\n") == 1
    assert not (bad_checkpoints[case].parent / "executed").exists()


def test_report_writes_strict_json(tmp_path: Path) -> None:
    nan, inf = float("nan"), float("inf")
    metrics = {"test_accuracy": nan, "per_class_accuracy": [inf] * 10, "confusion_matrix": [[0] * 10] * 10}
    images, labels = torch.zeros(2, 1, 28, 28), torch.tensor([1, 2])
    evaluate.write_report(tmp_path, metrics, images, labels, torch.tensor([1, 3]))
    text = (tmp_path / "metrics.json").read_text()
    parsed = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in metrics.json"))
    assert parsed["test_accuracy"] is None and parsed["per_class_accuracy"] == [None] * 10
    written = sorted(path.name for path in tmp_path.iterdir())
    assert written == ["confusion_matrix.png", "metrics.json", "misclassified.png"]


def test_report_folder_that_is_a_file_fails_before_evaluating(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    taken = tmp_path / "report"
    taken.write_text("a file")
    assert evaluate.main(["--checkpoint", str(tmp_path / "missing.pt"), "--report", str(taken)]) == 1
    assert capsys.readouterr().err == f"error: cannot write into {taken}: {taken} is a file, not a folder\n"


def test_bad_mnist_file_exits_two_without_writing(
    trained: train.TrainResult, bad_labels_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    report = tmp_path / "report"
    args = ["--checkpoint", str(trained.checkpoint_path), "--data-dir", bad_labels_dir, "--report", str(report)]
    assert evaluate.main(args) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and BAD_LABELS_MESSAGE in error and error.count("\n") == 1
    assert not report.exists()
