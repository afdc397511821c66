"""evaluate.py and predict.py on the session's checkpoint: real answers, reports, and every bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import evaluate
import predict
import train
from checkpoint import CheckpointError, newest_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DIGITS = 20


class RunsCode:
    """Pickles into a call of open(), which creates a file if the unpickler ever runs it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


def run_script(script: str, *args: str) -> subprocess.CompletedProcess:
    """Run one of the project's scripts in a subprocess and return what it did."""
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def test_digits(data_dir: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The first test images as uint8 (N, 28, 28), light on dark as MNIST stores them, and their labels."""
    images, labels = train.load_mnist(data_dir, train=False, device=torch.device("cpu"))
    pixels = ((images[:DIGITS, 0] * train.MNIST_STD + train.MNIST_MEAN) * 255).round().clamp(0, 255).byte()
    return pixels, labels[:DIGITS]


def digit_variants(pixels: torch.Tensor) -> dict[str, Image.Image]:
    """The same digit drawn the ways a user may hand it over."""
    light_on_dark = Image.fromarray(pixels.numpy(), mode="L")
    dark_on_light = Image.eval(light_on_dark, lambda value: 255 - value)
    enlarged = dark_on_light.resize((140, 140), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (220, 160), (250, 245, 235))
    ink = Image.new("RGB", (112, 112), (20, 40, 160))
    canvas.paste(ink, (70, 20), light_on_dark.resize((112, 112), Image.Resampling.BILINEAR))
    transparent = Image.new("RGBA", (96, 96), (0, 0, 0, 0))
    transparent.paste(Image.new("RGBA", (96, 96), (0, 0, 0, 255)), (0, 0), light_on_dark.resize((96, 96)))
    return {
        "mnist.png": light_on_dark,
        "inverted.png": dark_on_light,
        "enlarged.png": enlarged,
        "colour.png": canvas,
        "colour.jpg": canvas,
        "alpha.png": transparent,
    }


@pytest.fixture(scope="module")
def digit_files(test_digits: tuple, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[Path, int]]]:
    """PNG and JPEG files of the test digits, by variant, with their labels."""
    folder = tmp_path_factory.mktemp("digits")
    pixels, labels = test_digits
    files: dict[str, list[tuple[Path, int]]] = {}
    for index, (digit, label) in enumerate(zip(pixels, labels.tolist(), strict=True)):
        for name, image in digit_variants(digit).items():
            path = folder / f"{index:02d}-{name}"
            image.save(path)
            files.setdefault(name, []).append((path, label))
    return files


@pytest.fixture(scope="module")
def bad_checkpoints(trained: train.TrainResult, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Checkpoints that must be refused, by case."""
    folder = tmp_path_factory.mktemp("bad")
    data = trained.checkpoint_path.read_bytes()
    (folder / "truncated.pt").write_bytes(data[: len(data) // 2])
    torch.save({"model_state_dict": {"features.0.weight": torch.zeros(8, 1, 3, 3)}}, folder / "foreign.pt")
    torch.save({"weights": torch.zeros(3)}, folder / "no_state.pt")
    torch.save({"model_state_dict": RunsCode(folder / "executed")}, folder / "unsafe.pt")
    (folder / "folder.pt").mkdir()
    return {
        "missing": folder / "missing.pt",
        "truncated": folder / "truncated.pt",
        "foreign": folder / "foreign.pt",
        "no_state": folder / "no_state.pt",
        "unsafe": folder / "unsafe.pt",
        "folder": folder / "folder.pt",
    }


BAD_CHECKPOINT_MESSAGES = {
    "missing": "does not exist",
    "truncated": "is not a readable torch checkpoint",
    "foreign": "weights of another architecture",
    "no_state": "has no model_state_dict",
    "unsafe": "refused to load",
    "folder": "is a folder",
}


def test_predict_returns_the_labels_of_every_variant(
    trained: train.TrainResult, digit_files: dict, capsys: pytest.CaptureFixture
) -> None:
    paths = [path for files in digit_files.values() for path, _ in files]
    assert predict.main([*map(str, paths), "--checkpoint", str(trained.checkpoint_path), "--json"]) == 0
    answers = {Path(answer["file"]): answer for answer in map(json.loads, capsys.readouterr().out.splitlines())}
    for variant, files in digit_files.items():
        correct = sum(answers[path]["digit"] == label for path, label in files)
        assert correct >= len(files) - 1, f"{variant}: {correct} of {len(files)} right"
    assert all(0 < answer["probability"] <= 1 for answer in answers.values())


def test_predict_lists_top_digits(trained: train.TrainResult, digit_files: dict, capsys: pytest.CaptureFixture) -> None:
    path, label = digit_files["inverted.png"][0]
    assert predict.main([str(path), "--checkpoint", str(trained.checkpoint_path), "--top", "3"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{path}: {label} (")
    assert line.count("%)") == 3


def test_predict_goes_on_after_a_bad_image(trained: train.TrainResult, digit_files: dict, tmp_path: Path) -> None:
    good, label = digit_files["enlarged.png"][0]
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not a picture")
    missing = tmp_path / "missing.png"
    result = run_script(
        "predict.py", str(missing), str(not_an_image), str(good), "--checkpoint", str(trained.checkpoint_path), "--json"
    )
    assert result.returncode == 1
    assert json.loads(result.stdout)["digit"] == label
    errors = result.stderr.strip().splitlines()
    assert errors == [f"error: {missing}: no such file", f"error: {not_an_image}: not an image Pillow can read"]


def test_predict_refuses_a_blank_image(
    trained: train.TrainResult, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    blank = tmp_path / "blank.png"
    Image.new("L", (40, 40), 255).save(blank)
    assert predict.main([str(blank), "--checkpoint", str(trained.checkpoint_path)]) == 1
    assert "no digit found" in capsys.readouterr().err


@pytest.mark.parametrize("case", sorted(BAD_CHECKPOINT_MESSAGES))
@pytest.mark.parametrize("script", [evaluate, predict])
def test_bad_checkpoint_is_refused(
    script: object, case: str, bad_checkpoints: dict, digit_files: dict, capsys: pytest.CaptureFixture
) -> None:
    image = str(digit_files["mnist.png"][0][0])
    args = ["--checkpoint", str(bad_checkpoints[case])] + ([image] if script is predict else [])
    assert script.main(args) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and BAD_CHECKPOINT_MESSAGES[case] in error and error.count("\n") == 1
    assert not (bad_checkpoints["unsafe"].parent / "executed").exists()


@pytest.mark.parametrize(("script", "case"), [("evaluate.py", "unsafe"), ("predict.py", "truncated")])
def test_bad_checkpoint_exits_two_as_a_subprocess(
    script: str, case: str, bad_checkpoints: dict, digit_files: dict
) -> None:
    image = [str(digit_files["mnist.png"][0][0])] if script == "predict.py" else []
    result = run_script(script, *image, "--checkpoint", str(bad_checkpoints[case]))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and BAD_CHECKPOINT_MESSAGES[case] in result.stderr
    assert "Traceback" not in result.stderr
    assert not (bad_checkpoints["unsafe"].parent / "executed").exists()


def test_newest_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no mnist_cnn_"):
        newest_checkpoint(tmp_path)
    for age, name in enumerate(["mnist_cnn_b.pt", "mnist_cnn_a.pt", "mnist_cnn_c.pt"]):
        (tmp_path / name).touch()
        os.utime(tmp_path / name, (1000 + age, 1000 + age))
    (tmp_path / "other.pt").touch()
    assert newest_checkpoint(tmp_path).name == "mnist_cnn_c.pt"


def test_evaluate_matches_the_checkpoint_and_writes_the_report(
    trained: train.TrainResult, data_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    report = tmp_path / "report"
    args = ["--checkpoint", str(trained.checkpoint_path), "--data-dir", data_dir, "--report", str(report)]
    assert evaluate.main(args) == 0
    printed = capsys.readouterr().out
    stored = trained.metadata["metrics"]["test_accuracy"]
    assert f"test accuracy  {stored:.2f}%" in printed
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
