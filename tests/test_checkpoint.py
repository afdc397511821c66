"""mnist_cnn/checkpoint.py: saving never overwrites or half-writes, loading builds the recorded model or refuses."""

import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT
from mnist_cnn.checkpoint import CheckpointError, load_checkpoint, newest_checkpoint, provenance, save_checkpoint
from mnist_cnn.files import WriteError
from model import MnistCNN


class RunsCode:
    """Pickles into a call of open(), which creates a file if the unpickler ever runs it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


BAD_CHECKPOINTS = {
    "missing": "does not exist",
    "truncated": "is not a readable torch checkpoint",
    "foreign": "weights of another architecture",
    "no_state": "has no model_state_dict",
    "no_architecture": "does not record its architecture",
    "unsafe": "refused to load",
    "folder": "is a folder",
}


def write_bad_checkpoints(folder: Path, good: Path) -> dict[str, Path]:
    """Write into folder one checkpoint of each kind that must be refused; return them by case."""
    data = good.read_bytes()
    (folder / "truncated.pt").write_bytes(data[: len(data) // 2])
    foreign = {"features.0.weight": torch.zeros(8, 1, 3, 3)}
    torch.save({"model_state_dict": foreign, "architecture": {"full_resolution": False}}, folder / "foreign.pt")
    torch.save({"weights": torch.zeros(3)}, folder / "no_state.pt")
    torch.save({"model_state_dict": MnistCNN().state_dict()}, folder / "no_architecture.pt")
    torch.save({"model_state_dict": RunsCode(folder / "executed")}, folder / "unsafe.pt")
    (folder / "folder.pt").mkdir()
    return {case: folder / f"{case}.pt" for case in BAD_CHECKPOINTS}


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Checkpoints that must be refused, by case, made from a freshly initialised model's checkpoint."""
    folder = tmp_path_factory.mktemp("bad")
    good = folder / "good.pt"
    torch.save({"model_state_dict": MnistCNN().state_dict(), "architecture": {"full_resolution": False}}, good)
    return write_bad_checkpoints(folder, good)


def test_loads_a_good_checkpoint(bad_checkpoints: dict[str, Path]) -> None:
    model, metadata = load_checkpoint(bad_checkpoints["missing"].parent / "good.pt", torch.device("cpu"))
    assert isinstance(model, MnistCNN) and not model.training
    assert metadata == {"architecture": {"full_resolution": False}}


def saved_model(folder: Path, full_resolution: bool, older_format: bool) -> tuple[Path, MnistCNN]:
    """Save a fresh model the way this code does (architecture) or the way it did before (config); return both."""
    model = MnistCNN(full_resolution).eval()
    recorded = {"full_resolution": full_resolution}
    where = {"config": {"seed": 0, **recorded}} if older_format else {"architecture": recorded}
    path = folder / f"model-{full_resolution}-{older_format}.pt"
    torch.save({"model_state_dict": model.state_dict(), **where}, path)
    return path, model


@pytest.mark.parametrize("older_format", [False, True], ids=["this-format", "before-the-recipe"])
@pytest.mark.parametrize("full_resolution", [False, True])
def test_loading_builds_the_recorded_architecture(full_resolution: bool, older_format: bool, tmp_path: Path) -> None:
    path, saved = saved_model(tmp_path, full_resolution, older_format)
    model, _ = load_checkpoint(path, torch.device("cpu"))
    assert model.full_resolution == full_resolution
    images = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(images), saved(images))


def readme_loading_snippet() -> str:
    """Return the README's Python block that loads a checkpoint."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    return next(block for block in blocks if "load_checkpoint" in block)


@pytest.mark.parametrize("full_resolution", [False, True])
def test_readme_loading_snippet_loads_either_architecture(full_resolution: bool, tmp_path: Path) -> None:
    path, saved = saved_model(tmp_path, full_resolution, older_format=False)
    snippet = readme_loading_snippet()
    quoted = re.search(r'"(models/mnist_cnn_[^"]+\.pt)"', snippet).group(1)
    images = torch.zeros(3, 1, 28, 28)
    check = "images = torch.zeros(3, 1, 28, 28)\nprint(model(images).argmax(1).tolist())\n"
    code = snippet.replace(quoted, str(path)) + check
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    with torch.no_grad():
        expected = saved(images).argmax(1).tolist()
    assert result.stdout.strip().splitlines()[-1] == str(expected)


@pytest.mark.parametrize("case", sorted(BAD_CHECKPOINTS))
def test_bad_checkpoint_is_refused(case: str, bad_checkpoints: dict[str, Path]) -> None:
    with pytest.raises(CheckpointError, match=BAD_CHECKPOINTS[case]):
        load_checkpoint(bad_checkpoints[case], torch.device("cpu"))
    assert not (bad_checkpoints[case].parent / "executed").exists()


def test_save_checkpoint_never_overwrites(tmp_path: Path) -> None:
    paths = [save_checkpoint(tmp_path, "20260101-000000", {"n": n}, {"n": n}) for n in range(3)]
    checkpoints = [checkpoint for checkpoint, _ in paths]
    assert [p.name for p in checkpoints] == [
        "mnist_cnn_20260101-000000.pt",
        "mnist_cnn_20260101-000000-1.pt",
        "mnist_cnn_20260101-000000-2.pt",
    ]
    for n, (checkpoint, metadata) in enumerate(paths):
        assert torch.load(checkpoint, weights_only=True) == {"n": n}
        assert json.loads(metadata.read_text()) == {"n": n}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([p.name for pair in paths for p in pair])


def interrupted_write(error: BaseException) -> object:
    """Return a Path.write_bytes that writes half of its data, then raises error."""

    def write_half(path: Path, data: bytes) -> None:
        with open(path, "wb") as file:
            file.write(bytes(data)[: len(data) // 2])
        raise error

    return write_half


@pytest.mark.parametrize(
    "error", [KeyboardInterrupt(), OSError(errno.ENOSPC, "No space left on device")], ids=["interrupt", "enospc"]
)
def test_failed_save_leaves_the_folder_as_it_was(
    error: BaseException, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    earlier = save_checkpoint(tmp_path, "20260101-000000", {"n": 0}, {"n": 0})
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    monkeypatch.setattr(Path, "write_bytes", interrupted_write(error))
    expected = KeyboardInterrupt if isinstance(error, KeyboardInterrupt) else WriteError
    with pytest.raises(expected) as raised:
        save_checkpoint(tmp_path, "20260101-000000", {"n": 1}, {"n": 1})
    if expected is WriteError:
        assert str(raised.value) == f"cannot save the checkpoint in {tmp_path}: No space left on device"
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before
    assert earlier[0].exists() and earlier[1].exists()


def test_failed_save_into_a_new_folder_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Path, "write_bytes", interrupted_write(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(WriteError):
        save_checkpoint(tmp_path / "new", "20260101-000000", {}, {})
    assert list(tmp_path.iterdir()) == []


def test_file_size_limit_fails_cleanly(tmp_path: Path) -> None:
    earlier = save_checkpoint(tmp_path, "20260101-000000", {"n": 0}, {"n": 0})
    before = sorted(path.name for path in tmp_path.iterdir())
    code = (
        "import sys, torch; from mnist_cnn.checkpoint import save_checkpoint; from mnist_cnn.files import WriteError\n"
        "try:\n"
        f"    save_checkpoint(__import__('pathlib').Path({str(tmp_path)!r}), '20260101-000000',"
        " {'weights': torch.zeros(100_000)}, {})\n"
        "except WriteError as error:\n"
        "    sys.exit(str(error))\n"
    )
    result = subprocess.run(
        ["bash", "-c", 'ulimit -f 64 && exec "$0" -c "$1"', sys.executable, code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == f"cannot save the checkpoint in {tmp_path}: File too large"
    assert sorted(path.name for path in tmp_path.iterdir()) == before
    assert torch.load(earlier[0], weights_only=True) == {"n": 0}


def test_metadata_is_strict_json(tmp_path: Path) -> None:
    _, metadata_path = save_checkpoint(tmp_path, "20260101-000000", {}, {"loss": float("nan"), "x": [float("inf")]})
    text = metadata_path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in JSON")) == {"loss": None, "x": [None]}


def test_newest_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no mnist_cnn_"):
        newest_checkpoint(tmp_path)
    for age, name in enumerate(["mnist_cnn_b.pt", "mnist_cnn_a.pt", "mnist_cnn_c.pt"]):
        (tmp_path / name).touch()
        os.utime(tmp_path / name, (1000 + age, 1000 + age))
    (tmp_path / "other.pt").touch()
    assert newest_checkpoint(tmp_path).name == "mnist_cnn_c.pt"


def test_provenance_names_the_versions_and_the_commit() -> None:
    found = provenance()
    assert set(found["versions"]) == {"python", "torch", "torchvision"}
    assert found["versions"]["torch"] == str(torch.__version__)
    commit = found["git_commit"]
    assert commit is None or (len(commit) == 40 and all(c in "0123456789abcdef" for c in commit))


def test_loading_builds_the_recorded_channels(tmp_path: Path) -> None:
    saved = MnistCNN(channels=(8, 16, 24)).eval()
    architecture = {"full_resolution": False, "channels": [8, 16, 24]}
    torch.save({"model_state_dict": saved.state_dict(), "architecture": architecture}, tmp_path / "narrow.pt")
    model, _ = load_checkpoint(tmp_path / "narrow.pt", torch.device("cpu"))
    assert model.channels == (8, 16, 24)
