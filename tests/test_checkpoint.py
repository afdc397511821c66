"""mnist_cnn/checkpoint.py: saving never overwrites or half-writes, loading builds the recorded model or refuses."""

import errno
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from conftest import BAD_CHECKPOINTS, checkout_commit, readme_python_block
from mnist_cnn import checkpoint as checkpoint_module
from mnist_cnn.checkpoint import CheckpointError, load_checkpoint, newest_checkpoint, provenance, save_checkpoint
from mnist_cnn.files import WriteError
from model import MnistCNN


def test_loads_a_good_checkpoint(bad_checkpoints: dict[str, Path]) -> None:
    model, metadata = load_checkpoint(bad_checkpoints["missing"].parent / "good.pt", torch.device("cpu"))
    assert isinstance(model, MnistCNN) and not model.training
    assert metadata == {
        "architecture": {"full_resolution": False, "channels": list(MnistCNN().channels), "first_padding": 0}
    }


def saved_model(folder: Path, full_resolution: bool, layout: str) -> tuple[Path, MnistCNN, Callable]:
    """Save a fresh model as this code does, or in a layout of before; return the file, the model and its logits.

    Layouts of before: without first_padding (padding 2, the classifier reading the features channel by
    channel), also without channels (which were (16, 32, 48)), or with the choice in config (before the recipe).
    """
    channels = (8, 16, 24) if layout == "this-format" else (16, 32, 48)
    padding = 1 if layout == "this-format" else 2
    model = MnistCNN(full_resolution, channels, padding).eval()
    recorded = {"full_resolution": full_resolution}
    where = {
        "this-format": {"architecture": {**recorded, "channels": list(channels), "first_padding": padding}},
        "before-first-padding": {"architecture": {**recorded, "channels": list(channels)}},
        "before-channels": {"architecture": recorded},
        "before-the-recipe": {"config": {"seed": 0, **recorded}},
    }[layout]
    path = folder / f"model-{full_resolution}-{layout}.pt"
    torch.save({"model_state_dict": model.state_dict(), **where}, path)
    if layout == "this-format":
        return path, model, model
    return path, model, lambda images: model.classifier(model.features(images).flatten(1))  # channel by channel


@pytest.mark.parametrize("layout", ["this-format", "before-first-padding", "before-channels", "before-the-recipe"])
@pytest.mark.parametrize("full_resolution", [False, True])
def test_loading_builds_the_recorded_architecture(full_resolution: bool, layout: str, tmp_path: Path) -> None:
    path, saved, logits = saved_model(tmp_path, full_resolution, layout)
    model, _ = load_checkpoint(path, torch.device("cpu"))
    assert (model.full_resolution, model.channels) == (full_resolution, saved.channels)
    assert model.first_padding == saved.first_padding
    images = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(images), logits(images))


@pytest.mark.parametrize("full_resolution", [False, True])
def test_readme_loading_snippet_loads_either_architecture(full_resolution: bool, tmp_path: Path) -> None:
    path, saved, _ = saved_model(tmp_path, full_resolution, "this-format")
    snippet = readme_python_block("load_checkpoint")
    quoted = re.search(r'"(models/mnist_cnn_[^"]+\.pt)"', snippet).group(1)
    namespace = {}
    exec(snippet.replace(quoted, str(path)), namespace)  # as a user pastes it, in a namespace of its own
    images = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(namespace["model"](images), saved(images))
        assert namespace["five_views"](images).shape == (3, 10)


@pytest.mark.parametrize("case", sorted(BAD_CHECKPOINTS))
def test_bad_checkpoint_is_refused(case: str, bad_checkpoints: dict[str, Path]) -> None:
    with pytest.raises(CheckpointError, match=BAD_CHECKPOINTS[case]) as refusal:
        load_checkpoint(bad_checkpoints[case], torch.device("cpu"))
    assert "\n" not in str(refusal.value) and len(str(refusal.value)) < 500  # one line
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
    "error",
    [KeyboardInterrupt(), OSError(errno.ENOSPC, "No space left on device"), OSError(errno.EFBIG, "File too large")],
    ids=["interrupt", "disk-full", "file-size-limit"],
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
        assert str(raised.value) == f"cannot save the checkpoint in {tmp_path}: {error.strerror}"
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before
    assert earlier[0].exists() and earlier[1].exists()


def test_failed_save_into_a_new_folder_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Path, "write_bytes", interrupted_write(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(WriteError):
        save_checkpoint(tmp_path / "new", "20260101-000000", {}, {})
    assert list(tmp_path.iterdir()) == []


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
    assert found["git_commit"] == checkout_commit()
    assert found["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", found["git_commit"])


def test_outside_a_git_checkout_the_commit_is_unknown(tmp_path: Path) -> None:
    assert checkpoint_module.git_commit(tmp_path) is None


def test_loading_builds_the_recorded_channels(tmp_path: Path) -> None:
    saved = MnistCNN(channels=(8, 16, 24)).eval()
    architecture = {"full_resolution": False, "channels": [8, 16, 24]}
    torch.save({"model_state_dict": saved.state_dict(), "architecture": architecture}, tmp_path / "narrow.pt")
    model, _ = load_checkpoint(tmp_path / "narrow.pt", torch.device("cpu"))
    assert model.channels == (8, 16, 24)


@pytest.fixture(params=["hard-links", "no-hard-links"])
def link_support(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Save checkpoints with hard links, or as on a FAT or exFAT drive, where os.link fails (forced here)."""
    if request.param == "no-hard-links":

        def no_links(source: object, target: object) -> None:
            raise OSError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(os, "link", no_links)
    return request.param


def test_saving_never_overwrites_with_or_without_hard_links(link_support: str, tmp_path: Path) -> None:
    (tmp_path / "mnist_cnn_20260101-000000.pt").write_bytes(b"an earlier checkpoint")
    (tmp_path / "mnist_cnn_20260101-000000-1.json").write_text("an earlier run's JSON")
    checkpoint, metadata = save_checkpoint(tmp_path, "20260101-000000", {"n": 1}, {"n": 1}, lambda stem: f"# {stem}")
    assert checkpoint.name == "mnist_cnn_20260101-000000-2.pt"
    assert torch.load(checkpoint, weights_only=True) == {"n": 1} and json.loads(metadata.read_text()) == {"n": 1}
    assert checkpoint.with_suffix(".md").read_text() == "# mnist_cnn_20260101-000000-2"
    assert (tmp_path / "mnist_cnn_20260101-000000.pt").read_bytes() == b"an earlier checkpoint"
    assert (tmp_path / "mnist_cnn_20260101-000000-1.json").read_text() == "an earlier run's JSON"
    assert len(list(tmp_path.iterdir())) == 5


def test_a_name_taken_between_the_check_and_the_claim_is_skipped(
    link_support: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    free = checkpoint_module.free_checkpoint_path
    taken = []

    def racing(out_dir: Path, stamp: str) -> Path:
        path = free(out_dir, stamp)
        if not taken:  # another process takes the name just after it was found free
            path.write_bytes(b"another process's checkpoint")
            taken.append(path)
        return path

    monkeypatch.setattr(checkpoint_module, "free_checkpoint_path", racing)
    checkpoint, _ = save_checkpoint(tmp_path, "20260101-000000", {"n": 1}, {"n": 1})
    assert taken[0].read_bytes() == b"another process's checkpoint"
    assert checkpoint != taken[0] and torch.load(checkpoint, weights_only=True) == {"n": 1}


def test_a_failed_rename_without_hard_links_leaves_no_empty_claim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "link", lambda source, target: (_ for _ in ()).throw(OSError(errno.EPERM, "no links")))
    replace = os.replace

    def failing_replace(source: object, target: object) -> None:
        if str(target).endswith(".pt"):
            raise OSError(errno.EIO, "Input/output error")
        replace(source, target)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(WriteError, match="Input/output error"):
        save_checkpoint(tmp_path, "20260101-000000", {"n": 1}, {"n": 1})
    assert list(tmp_path.iterdir()) == []
