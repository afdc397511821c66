"""predict.py: MNIST-style preparation of digit images in the forms users hand over, and every bad input."""

import json
import struct
import sys
import warnings
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

import handwriting
import predict
import train
from conftest import BAD_CHECKPOINTS, as_pixels
from mnist_cnn.data import load_mnist

DIGITS = 20


@pytest.fixture(scope="module")
def test_digits(data_dir: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The first test images as uint8 (N, 28, 28), light on dark as MNIST stores them, and their labels."""
    images, labels = load_mnist(data_dir, train=False, device=torch.device("cpu"))
    return as_pixels(images[:DIGITS, 0]), labels[:DIGITS]


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


def test_predict_reads_as_many_views_as_the_checkpoints_recipe(
    trained: train.TrainResult, one_view_checkpoint: Path, digit_files: dict, capsys: pytest.CaptureFixture
) -> None:
    path = str(digit_files["enlarged.png"][0][0])
    answers = []
    runs = [(one_view_checkpoint, []), (trained.checkpoint_path, ["--views", "1"]), (trained.checkpoint_path, [])]
    for checkpoint, views in runs:
        assert predict.main([path, "--checkpoint", str(checkpoint), "--json", "--top", "10", *views]) == 0
        answers.append(json.loads(capsys.readouterr().out)["top"])
    assert answers[0] == answers[1] != answers[2]


def test_predict_lists_top_digits(trained: train.TrainResult, digit_files: dict, capsys: pytest.CaptureFixture) -> None:
    path, label = digit_files["inverted.png"][0]
    assert predict.main([str(path), "--checkpoint", str(trained.checkpoint_path), "--top", "3"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{path}: {label} (")
    assert line.count("%)") == 3


def png_claiming(width: int, height: int) -> bytes:
    """Return a tiny 1-bit PNG whose header claims width x height pixels (a decompression bomb's header)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory: pytest.TempPathFactory, digit_files: dict) -> dict[str, tuple[Path, str]]:
    """Files that must each be refused with one line, by case, with the message expected."""
    folder = tmp_path_factory.mktemp("hostile")
    good = digit_files["enlarged.png"][0][0].read_bytes()
    (folder / "notes.png").write_text("not a picture")
    (folder / "empty.png").touch()
    (folder / "a-folder.png").mkdir()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "bomb.png").write_bytes(png_claiming(100_000, 100_000))
    Image.new("1", (8000, 6000)).save(folder / "huge.png")
    limit = f"{Image.MAX_IMAGE_PIXELS:,}"
    cases = {
        "missing": (folder / "missing.png", "no such file"),
        "text": (folder / "notes.png", "not an image Pillow can read"),
        "empty": (folder / "empty.png", "is an empty file"),
        "folder": (folder / "a-folder.png", "is a folder, not an image file"),
        "truncated": (folder / "truncated.png", "cannot read it ("),
        "bomb": (folder / "bomb.png", f"too large: past Pillow's decompression-bomb limit of {limit} pixels"),
        "huge": (folder / "huge.png", "too large: 8000x6000 pixels, more than 40 megapixels"),
    }
    if sys.platform != "win32":  # a link to itself: POSIX only (Windows needs a privilege for links)
        (folder / "loop.png").symlink_to(folder / "loop.png")
        cases["link-loop"] = (folder / "loop.png", "cannot open it (Too many levels of symbolic links)")
    return cases


def test_hostile_files_are_named_and_the_rest_classified(
    trained: train.TrainResult, digit_files: dict, hostile_files: dict, capsys: pytest.CaptureFixture
) -> None:
    good, label = digit_files["enlarged.png"][0]
    bad = [str(path) for path, _ in hostile_files.values()]
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        status = predict.main([*bad[:3], str(good), *bad[3:], "--checkpoint", str(trained.checkpoint_path), "--json"])
    assert status == 1 and not warned, [str(warning.message) for warning in warned]
    printed = capsys.readouterr()
    assert json.loads(printed.out)["digit"] == label
    errors = printed.err.strip().splitlines()
    assert len(errors) == len(hostile_files)
    for line, (path, message) in zip(errors, hostile_files.values(), strict=True):
        assert line.startswith(f"error: {path}: {message}"), line


def test_predict_refuses_a_blank_image(
    trained: train.TrainResult, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    blank = tmp_path / "blank.png"
    Image.new("L", (40, 40), 255).save(blank)
    assert predict.main([str(blank), "--checkpoint", str(trained.checkpoint_path)]) == 1
    assert "no digit found" in capsys.readouterr().err


@pytest.mark.parametrize("case", sorted(BAD_CHECKPOINTS))
def test_bad_checkpoint_exits_two_with_one_line(
    case: str, bad_checkpoints: dict, digit_files: dict, capsys: pytest.CaptureFixture
) -> None:
    image = str(digit_files["mnist.png"][0][0])
    assert predict.main([image, "--checkpoint", str(bad_checkpoints[case])]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and BAD_CHECKPOINTS[case] in error and error.count("\n") == 1


HANDWRITING_TARGET = 0.90


def test_real_handwriting_is_recognised(
    trained: train.TrainResult, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    files = handwriting.write_set(tmp_path, per_style_and_digit=1, seed=3)
    paths = [str(path) for path, _, _ in files]
    assert predict.main([*paths, "--checkpoint", str(trained.checkpoint_path), "--json"]) == 0
    answers = [json.loads(line)["digit"] for line in capsys.readouterr().out.splitlines()]
    wrong = [(path.name, answer) for (path, digit, _), answer in zip(files, answers, strict=True) if answer != digit]
    assert len(answers) == len(files) == 10 * len(handwriting.STYLES)
    assert 1 - len(wrong) / len(files) >= HANDWRITING_TARGET, wrong
