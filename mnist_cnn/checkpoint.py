"""Checkpoint files and what they hold: save, find the newest, load safely, the run's provenance."""

import contextlib
import datetime
import importlib.metadata
import io
import os
import pickle
import platform
import subprocess
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path

import torch

from mnist_cnn.card import model_card
from mnist_cnn.cli import BadInput
from mnist_cnn.device import cpu_model
from mnist_cnn.files import WriteError, strict_json, temporary_path
from mnist_cnn.inference import VIEW_CHOICES
from mnist_cnn.recipe import Recipe
from model import MnistCNN, count_parameters

CHECKPOINT_PREFIX = "mnist_cnn_"
MODELS_DIR = Path("models")
CHANNELS_BEFORE_RECORDED = (16, 32, 48)  # the channels of every model before checkpoints recorded them
# Models saved before checkpoints recorded first_padding padded their strided first layer by 2 pixels, and
# their classifiers read the features channel by channel: loading reorders those weights for MnistCNN.
FIRST_PADDING_BEFORE_RECORDED = 2
MAX_REASON_CHARACTERS = 200  # of an error from building a recorded architecture, quoted in the refusal


class CheckpointError(BadInput):
    """A checkpoint is missing, unreadable, unsafe or not a MnistCNN checkpoint."""


SIDECAR_SUFFIXES = (".json", ".md", ".onnx")


def free_checkpoint_path(out_dir: Path, stamp: str) -> Path:
    """Return out_dir/mnist_cnn_<stamp>.pt, or with -1, -2, ... appended, such that neither it nor a sidecar exists."""
    suffix = 0
    while True:
        name = CHECKPOINT_PREFIX + stamp + (f"-{suffix}" if suffix else "")
        path = out_dir / f"{name}.pt"
        if not any(path.with_suffix(extension).exists() for extension in (".pt", *SIDECAR_SUFFIXES)):
            return path
        suffix += 1


def claim_name(temporary: Path, path: Path) -> None:
    """Give the written file temporary the name path, or raise FileExistsError when path exists; never overwrite.

    A hard link does it in one step. Where the drive has no hard links (FAT and exFAT, some network shares)
    the name is claimed by creating path exclusively, empty, and the file is then renamed over it.
    """
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise
    except OSError:  # no hard links on this drive
        with open(path, "xb"):
            pass
        try:
            os.replace(temporary, path)
        except BaseException:
            path.unlink()
            raise


def save_checkpoint(
    out_dir: Path, stamp: str, checkpoint: dict, metadata: dict, card: Callable[[str], str] | None = None
) -> tuple[Path, Path]:
    """Write checkpoint, its JSON metadata and its model card under a fresh timestamped name, never overwriting.

    card, when given, returns the card's text for the checkpoint's final name (its stem). All files
    are written to temporary names in out_dir first; the checkpoint takes its final name with claim_name
    (which fails rather than overwrite) and the others are renamed beside it. A failure or an interruption
    leaves neither a temporary nor a half-written file, and no file that existed is touched.
    Return the paths of the checkpoint and of its JSON; the card is the checkpoint's path with .md.
    """
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    suffixes = [".json", ".md"] if card is not None else [".json"]
    temporary = temporary_path(out_dir / f"{CHECKPOINT_PREFIX}{stamp}.pt")
    temporaries = {suffix: temporary_path(out_dir / f"{CHECKPOINT_PREFIX}{stamp}{suffix}") for suffix in suffixes}
    written = []
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        temporary.write_bytes(buffer.getbuffer())
        temporaries[".json"].write_text(strict_json(metadata))
        while True:
            checkpoint_path = free_checkpoint_path(out_dir, stamp)
            try:
                claim_name(temporary, checkpoint_path)
                break
            except FileExistsError:
                continue
        written.append(checkpoint_path)
        if card is not None:
            temporaries[".md"].write_text(card(checkpoint_path.stem))
        for suffix, path in temporaries.items():
            os.replace(path, checkpoint_path.with_suffix(suffix))
            written.append(checkpoint_path.with_suffix(suffix))
        written.clear()
        created = False
    except OSError as error:
        raise WriteError(f"cannot save the checkpoint in {out_dir}: {error.strerror or error}") from None
    finally:
        for path in (temporary, *temporaries.values(), *written):
            path.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                out_dir.rmdir()
    return checkpoint_path, checkpoint_path.with_suffix(".json")


def newest_checkpoint(folder: Path = MODELS_DIR) -> Path:
    """Return the most recently written mnist_cnn_*.pt in folder."""
    candidates = sorted(folder.glob(f"{CHECKPOINT_PREFIX}*.pt"), key=lambda path: path.stat().st_mtime)
    if not candidates:
        raise CheckpointError(f"no {CHECKPOINT_PREFIX}*.pt checkpoint in {folder}/ (train one with python train.py)")
    return candidates[-1]


def recorded_architecture(checkpoint: dict) -> dict | None:
    """Return the MnistCNN arguments a checkpoint records, or None when it records none.

    This code stores them under "architecture"; checkpoints written before it kept the same
    choice as config["full_resolution"]. Those that record no channels have CHANNELS_BEFORE_RECORDED,
    those that record no first_padding FIRST_PADDING_BEFORE_RECORDED.
    """
    before = {"channels": CHANNELS_BEFORE_RECORDED, "first_padding": FIRST_PADDING_BEFORE_RECORDED}
    if isinstance(checkpoint.get("architecture"), dict):
        return before | checkpoint["architecture"]
    config = checkpoint.get("config")
    if isinstance(config, dict) and isinstance(config.get("full_resolution"), bool):
        return before | {"full_resolution": config["full_resolution"]}
    return None


def reads_channel_by_channel(checkpoint: dict) -> bool:
    """Return whether a checkpoint's classifier reads the features channel by channel: it records no first_padding."""
    recorded = checkpoint.get("architecture")
    return not (isinstance(recorded, dict) and "first_padding" in recorded)


def classifier_reading_channels_last(state: dict, last_channels: int) -> dict:
    """Return state with its classifier's weights reordered from reading (C, H, W) to (H, W, C); raise ValueError."""
    weight = state.get("classifier.weight")
    if not (isinstance(weight, torch.Tensor) and weight.dim() == 2 and weight.shape[1] % last_channels == 0):
        raise ValueError("no classifier weights of the shape (classes, features)")
    reordered = weight.unflatten(1, (last_channels, -1)).transpose(1, 2).flatten(1)
    return state | {"classifier.weight": reordered}


def load_checkpoint(path: Path | str, device: torch.device) -> tuple[MnistCNN, dict]:
    """Load path with torch.load(weights_only=True) only; return the model it records on device, in eval mode, and
    its metadata. Raise CheckpointError with one line saying why when it cannot be used.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file")
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"refused to load {path}: it holds objects that torch.load(weights_only=True) does not allow"
        ) from None
    except PermissionError:
        raise CheckpointError(f"cannot read checkpoint {path}: permission denied") from None
    except (OSError, EOFError, KeyError, IndexError, RuntimeError, ValueError, UnicodeDecodeError):
        raise CheckpointError(f"{path} is not a readable torch checkpoint (truncated or another format)") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model_state_dict"), dict):
        raise CheckpointError(f"{path} is not a MnistCNN checkpoint: it has no model_state_dict")
    architecture = recorded_architecture(checkpoint)
    if architecture is None:
        raise CheckpointError(
            f"{path} does not record its architecture (written before 27 November 2026); train a new one"
        )
    try:
        with torch.device("meta"):  # shapes alone, no memory: allocated once they match the file's tensors
            model = MnistCNN(**architecture)
    except (TypeError, ValueError, RuntimeError) as error:
        reason = str(error).splitlines()[0][:MAX_REASON_CHARACTERS]
        raise CheckpointError(f"{path} records an architecture that MnistCNN cannot build: {reason}") from None
    shapes = {name: tensor.shape for name, tensor in model.state_dict().items()}
    state = checkpoint["model_state_dict"]
    try:
        if reads_channel_by_channel(checkpoint):
            state = classifier_reading_channels_last(state, model.channels[-1])
        if {name: getattr(tensor, "shape", None) for name, tensor in state.items()} != shapes:
            raise ValueError("other tensors or shapes")
        model = model.to_empty(device=device).to(memory_format=torch.channels_last)
        model.load_state_dict(state)
    except (ValueError, RuntimeError):
        raise CheckpointError(f"{path} holds weights of another architecture than MnistCNN in model.py") from None
    metadata = {key: value for key, value in checkpoint.items() if key != "model_state_dict"}
    return model.eval(), metadata


def views_to_read(asked: int | None, metadata: dict) -> int:
    """Return the views of each image to read: those asked for (--views), else those the checkpoint's recipe reads
    (test_time_views), else 5 for checkpoints that record none.
    """
    if asked:
        return asked
    recipe = metadata.get("recipe")
    views = recipe.get("test_time_views") if isinstance(recipe, dict) else None
    return views if views in VIEW_CHOICES else VIEW_CHOICES[-1]


def git_commit(folder: Path = Path(__file__).parent) -> str | None:
    """Return the commit of the git checkout that folder (by default this file's) lies in, or None outside one."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=folder,
            capture_output=True,
            check=False,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def save_run(out_dir: Path, model: MnistCNN, metadata: dict) -> tuple[Path, Path]:
    """Save a trained model with its run's metadata (run_metadata) and model card under a fresh timestamped name;
    return the paths of the checkpoint and of its JSON.
    """
    state = {name: tensor.cpu() for name, tensor in model.state_dict().items()}
    stamp = datetime.datetime.fromisoformat(metadata["timestamp"]).strftime("%Y%m%d-%H%M%S")
    card = partial(model_card, metadata, model)
    return save_checkpoint(out_dir, stamp, {"model_state_dict": state, **metadata}, metadata, card)


def run_metadata(metrics: dict, recipe: Recipe, config: dict, model: MnistCNN) -> dict:
    """Return what a checkpoint holds beside its weights: the run's metrics, its whole recipe, the other settings of
    the run (config), the model's architecture and size, the time of saving and the run's provenance.
    """
    return {
        "metrics": metrics,
        "recipe": asdict(recipe) | {"channels": list(recipe.channels)},  # a list, as the JSON beside it holds it
        "config": config,
        "architecture": {
            "full_resolution": model.full_resolution,
            "channels": list(model.channels),
            "first_padding": model.first_padding,
        },
        "machine": {"cpu": cpu_model(), "threads": torch.get_num_threads()},
        "num_parameters": count_parameters(model),
        "timestamp": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        **provenance(),
    }


def provenance() -> dict:
    """Return what produced a run: the versions of Python, torch and torchvision, and the git commit."""
    return {
        "versions": {
            "python": platform.python_version(),
            "torch": str(torch.__version__),
            "torchvision": importlib.metadata.version("torchvision"),  # read, not imported: that takes a second
        },
        "git_commit": git_commit(),
    }
