"""report.py: the job summary table and the shields.io badge made from a run's JSON."""

import json
from pathlib import Path

import pytest

import report
import train

METADATA = {
    "metrics": {"test_accuracy": 99.123, "train_accuracy": 97.5, "test_loss": 0.03456, "train_seconds": 4.26},
    "num_parameters": 23354,
    "versions": {"python": "3.11.7", "torch": "2.14.1", "torchvision": "0.29.1"},
    "git_commit": "0123456789abcdef0123456789abcdef01234567",
}


def write_metadata(folder: Path, metadata: dict) -> Path:
    """Write metadata as a run's JSON into folder and return its path."""
    path = folder / "mnist_cnn_20260101-000000.json"
    path.write_text(json.dumps(metadata))
    return path


def test_summary_table_holds_every_figure() -> None:
    markdown = report.summary_markdown(METADATA)
    assert "| Metric | Value |" in markdown
    for row in [
        "| Test accuracy | 99.12% |",
        "| Train accuracy | 97.50% |",
        "| Test loss | 0.0346 |",
        "| Parameters | 23,354 / 25,000 |",
        "| Training time | 4.3 s |",
        "| Commit | `0123456789ab` |",
        "| torch | 2.14.1 |",
    ]:
        assert row in markdown.splitlines()


@pytest.mark.parametrize(
    ("accuracy", "message", "color"),
    [
        (99.123, "99.12%", "brightgreen"),
        (98.5, "98.50%", "green"),
        (95.0, "95.00%", "yellow"),
        (94.99, "94.99%", "red"),
    ],
)
def test_badge_message_and_color(accuracy: float, message: str, color: str) -> None:
    metadata = METADATA | {"metrics": METADATA["metrics"] | {"test_accuracy": accuracy}}
    assert report.accuracy_badge(metadata) == {
        "schemaVersion": 1,
        "label": "accuracy",
        "message": message,
        "color": color,
    }


def test_cli_appends_summary_and_writes_badge(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    badge = tmp_path / "badge" / "accuracy.json"
    assert report.main([str(write_metadata(tmp_path, METADATA)), "--summary", str(summary), "--badge", str(badge)]) == 0
    assert summary.read_text() == "earlier step\n" + report.summary_markdown(METADATA)
    assert json.loads(badge.read_text(), parse_constant=pytest.fail)["message"] == "99.12%"


def test_cli_reads_the_json_of_a_real_run(trained: train.TrainResult, capsys: pytest.CaptureFixture) -> None:
    assert report.main([str(trained.metadata_path)]) == 0
    accuracy = trained.metadata["metrics"]["test_accuracy"]
    assert f"| Test accuracy | {accuracy:.2f}% |" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("not json", "is not the metadata JSON"),
        (json.dumps({"metrics": {}}), "is not the metadata JSON"),
        (json.dumps(METADATA | {"num_parameters": "many"}), "is not the metadata JSON"),
        ('{"metrics": {"test_accuracy": NaN}}', "is not the metadata JSON"),
        (json.dumps(METADATA | {"metrics": METADATA["metrics"] | {"test_accuracy": float("inf")}}), "not a finite"),
    ],
)
def test_cli_refuses_bad_metadata(
    content: str | None, message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "run.json"
    if content is not None:
        path.write_text(content)
    badge = tmp_path / "accuracy.json"
    assert report.main([str(path), "--badge", str(badge)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error and error.count("\n") == 1
    assert not badge.exists()
