"""Shared test helpers: the slow-test switch, running a script, the MNIST folder, one training run, bad checkpoints."""

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import export
import train
from mnist_cnn.data import MNIST_FILES, MNIST_MEAN, MNIST_STD, default_data_dir
from model import MnistCNN

ROOT = Path(__file__).resolve().parents[1]
RUN_SLOW = "--run-slow"
REQUIRE_SYSTEM_PACKAGES = "REQUIRE_SYSTEM_PACKAGES"  # .ci/run sets it: a missing Chromium or PostgreSQL fails there


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add --run-slow, which also runs the heavy integration tests (marked slow)."""
    parser.addoption(RUN_SLOW, action="store_true", help="also run the heavy integration tests (marked slow)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the tests marked slow unless --run-slow was given (pytest's documented pattern)."""
    if config.getoption(RUN_SLOW):
        return
    skip = pytest.mark.skip(reason=f"heavy integration test: run with {RUN_SLOW}")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def require(what: str, found: bool) -> None:
    """Skip the test with a reason when a system package it needs is missing; where .ci/run asks for every
    package (REQUIRE_SYSTEM_PACKAGES=1), fail it instead.
    """
    if found:
        return
    message = f"{what} is not installed on this machine"
    if os.environ.get(REQUIRE_SYSTEM_PACKAGES) == "1":
        pytest.fail(f"{message}, but {REQUIRE_SYSTEM_PACKAGES}=1 asks for it (.ci/run installs it)")
    pytest.skip(message)


def run_script(
    script: str, *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess:
    """Run one of the project's scripts (train.py) or tools (tools.gate) in a subprocess from the repository root
    (or from cwd, a copy of it).
    """
    command = [str(cwd / script)] if script.endswith(".py") else ["-m", script]
    return subprocess.run(
        [sys.executable, *command, *args], capture_output=True, text=True, timeout=300, check=False, env=env, cwd=cwd
    )


def checkout_commit() -> str | None:
    """Return the commit of the checkout the tests run in, as git itself says, or None outside a git checkout (a ZIP
    download of the repository) or without git.
    """
    try:
        found = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    except OSError:
        return None
    return found.stdout.strip() if found.returncode == 0 else None


def offline_env() -> dict[str, str]:
    """The environment with every proxy pointed at a closed local port, so that no download can succeed."""
    unreachable = "http://127.0.0.1:9"
    proxies = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")
    return os.environ | dict.fromkeys(proxies, unreachable)


WORKFLOW = ROOT / ".github" / "workflows" / "model-training.yml"


def readme_python_block(containing: str) -> str:
    """Return the first Python block of the README or of docs/scripts.md that contains the given text."""
    pages = (ROOT / "README.md").read_text() + (ROOT / "docs" / "scripts.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", pages, re.DOTALL)
    return next(block for block in blocks if containing in block)


def as_pixels(images: torch.Tensor) -> torch.Tensor:
    """Return normalised MNIST images as the uint8 pixels they were stored as (light digits on dark)."""
    return ((images * MNIST_STD + MNIST_MEAN) * 255).round().clamp(0, 255).byte()


def link_or_copy(source: Path, target: Path) -> None:
    """Make target a symbolic link to source, or a copy where links need a privilege (Windows)."""
    try:
        target.symlink_to(source)
    except OSError:
        shutil.copyfile(source, target)


def copy_with(raw: Path, name: str, change: Callable[[bytes], bytes]) -> None:
    """Link the real MNIST files into raw, except name, which is written changed by change(bytes)."""
    real = Path(default_data_dir()).resolve() / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for file in MNIST_FILES:
        if file != name:
            link_or_copy(real / file, raw / file)
    (raw / name).write_bytes(change((real / name).read_bytes()))


def set_byte(offset: int, value: int) -> Callable[[bytes], bytes]:
    """Return a change that sets one byte."""
    return lambda content: content[:offset] + bytes([value]) + content[offset + 1 :]


@pytest.fixture(scope="session")
def bad_labels_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A data folder like the real one whose test labels hold a label 10, the first one past the digits."""
    folder = tmp_path_factory.mktemp("bad-mnist")
    copy_with(folder / "MNIST" / "raw", MNIST_FILES[3], set_byte(100, 10))
    return str(folder)


BAD_LABELS_MESSAGE = "t10k-labels-idx1-ubyte is not a valid MNIST file: it holds the label 10, expected labels 0 to 9"


class RunsCode:
    """Pickles into a call of open(), which creates a file if the unpickler ever runs it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


# Each kind of checkpoint that loading must refuse, with the words of its one-line refusal.
BAD_CHECKPOINTS = {
    "missing": "does not exist",
    "truncated": "is not a readable torch checkpoint",
    "foreign": "weights of another architecture",
    "no_state": "has no model_state_dict",
    "no_architecture": "does not record its architecture",
    "padding_true": "records an architecture that MnistCNN cannot build",
    "padding_text": "records an architecture that MnistCNN cannot build",
    "padding_five": "records an architecture that MnistCNN cannot build",
    "huge_channels": "weights of another architecture",
    "channels_zero": "records an architecture that MnistCNN cannot build",
    "channels_dict": "records an architecture that MnistCNN cannot build",
    "channels_past_memory": "records an architecture that MnistCNN cannot build",
    "resolution_text": "records an architecture that MnistCNN cannot build",
    "flat_classifier": "weights of another architecture",
    "unsafe": "refused to load",
    "folder": "is a folder",
}


@pytest.fixture(scope="session")
def bad_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One checkpoint of each kind in BAD_CHECKPOINTS, by case, made from a fresh model's good checkpoint (good.pt
    beside them); the unsafe one creates the file 'executed' beside them if it is ever unpickled.
    """
    folder = tmp_path_factory.mktemp("bad-checkpoints")
    good = folder / "good.pt"
    architecture = {"full_resolution": False, "channels": list(MnistCNN().channels), "first_padding": 0}
    torch.save({"model_state_dict": MnistCNN().state_dict(), "architecture": architecture}, good)
    data = good.read_bytes()
    (folder / "truncated.pt").write_bytes(data[: len(data) // 2])
    foreign = {"features.0.weight": torch.zeros(8, 1, 3, 3)}
    torch.save({"model_state_dict": foreign, "architecture": {"full_resolution": False}}, folder / "foreign.pt")
    torch.save({"weights": torch.zeros(3)}, folder / "no_state.pt")
    torch.save({"model_state_dict": MnistCNN().state_dict()}, folder / "no_architecture.pt")
    for case, padding in {"padding_true": True, "padding_text": "0", "padding_five": 5}.items():
        recorded = architecture | {"first_padding": padding}
        torch.save({"model_state_dict": MnistCNN().state_dict(), "architecture": recorded}, folder / f"{case}.pt")
    odd = {  # recorded before first_padding, so that loading would reorder the classifier
        "channels_zero": {"full_resolution": False, "channels": [16, 16, 0]},
        "channels_dict": {"full_resolution": False, "channels": {16: 0, 16.5: 0, 64: 0}},
        "channels_past_memory": {"full_resolution": False, "channels": [10**30, 16, 64]},
        "resolution_text": {"full_resolution": "no", "channels": [16, 16, 64]},
    }
    for case, recorded in odd.items():
        torch.save({"model_state_dict": MnistCNN().state_dict(), "architecture": recorded}, folder / f"{case}.pt")
    huge = architecture | {"channels": [100_000, 100_000, 100_000]}  # 360 GB of weights, were they built
    torch.save({"model_state_dict": MnistCNN().state_dict(), "architecture": huge}, folder / "huge_channels.pt")
    flat = MnistCNN().state_dict() | {"classifier.weight": torch.zeros(5760)}  # recorded before first_padding
    before = {"full_resolution": False, "channels": architecture["channels"]}
    torch.save({"model_state_dict": flat, "architecture": before}, folder / "flat_classifier.pt")
    torch.save({"model_state_dict": RunsCode(folder / "executed")}, folder / "unsafe.pt")
    (folder / "folder.pt").mkdir()
    return {case: folder / f"{case}.pt" for case in BAD_CHECKPOINTS}


@pytest.fixture(scope="session")
def data_dir() -> str:
    """The MNIST folder: $MNIST_DATA_DIR, falling back to ./data."""
    return default_data_dir()


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, data_dir: str) -> train.TrainResult:
    """Train the default recipe for one epoch, once per session, into a temporary folder."""
    args = train.parse_args(
        ["--data-dir", data_dir, "--out-dir", str(tmp_path_factory.mktemp("models")), "--no-progress"]
    )
    return train.run_training(train.recipe_from_args(args), args)


@pytest.fixture(scope="session")
def one_view_checkpoint(trained: train.TrainResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's checkpoint with its recipe's test_time_views set to 1, as --set test_time_views=1 would store."""
    checkpoint = torch.load(trained.checkpoint_path, weights_only=True)
    checkpoint["recipe"]["test_time_views"] = 1
    path = tmp_path_factory.mktemp("one-view") / "mnist_cnn_one_view.pt"
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="session")
def shipped_run(trained: train.TrainResult, tmp_path_factory: pytest.TempPathFactory, data_dir: str) -> Path:
    """The session's training run as the workflow ships it: a folder seed-0/ with its checkpoint, JSON, model card and
    the ONNX file export.py writes (the recipe's views).
    """
    folder = tmp_path_factory.mktemp("shipped") / "seed-0"
    folder.mkdir()
    for suffix in (".pt", ".json", ".md"):
        shutil.copyfile(trained.checkpoint_path.with_suffix(suffix), folder / f"{trained.checkpoint_path.stem}{suffix}")
    checkpoint = folder / trained.checkpoint_path.name
    export.export_checkpoint(checkpoint, checkpoint.with_suffix(".onnx"), None, data_dir)
    return folder
