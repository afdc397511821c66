"""Train MnistCNN on MNIST, evaluate it on the 10,000 test images and save a timestamped checkpoint.

The whole data set lives in memory as one tensor on the training device and batches are index
slices of it, so the input path costs almost nothing next to the model.
"""

import argparse
import ctypes
import datetime
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from tqdm import tqdm

from checkpoint import save_checkpoint
from model import MnistCNN, count_parameters

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
DATA_DIR_ENV = "MNIST_DATA_DIR"
EVAL_BATCH_SIZE = 1000
PROGRESS_UPDATES = 20
WEIGHT_DECAY = 1e-4
LABEL_SMOOTHING = 0.1
WARMUP_FRACTION = 0.25
MUON_MOMENTUM = 0.75
NEWTON_SCHULZ_STEPS = 3
NEWTON_SCHULZ_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
GLIBC_M_TRIM_THRESHOLD = -1
GLIBC_M_MMAP_THRESHOLD = -3
MALLOC_KEEP_BYTES = 32 * 1024 * 1024


class SetupError(Exception):
    """The data or the device that a run needs is not available."""


@dataclass
class TrainResult:
    """What one training run produced: the two files it wrote and its metadata."""

    checkpoint_path: Path
    metadata_path: Path
    metadata: dict


def checked_number(
    convert: Callable[[str], float], is_valid: Callable[[float], bool], requirement: str, kind: str
) -> Callable[[str], float]:
    """Return an argparse type that converts text and refuses values for which is_valid is false."""

    def parse(text: str) -> float:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        if not is_valid(value):
            raise argparse.ArgumentTypeError(f"{requirement}, got {text}")
        return value

    return parse


positive_int = checked_number(int, lambda value: value > 0, "must be greater than 0", "a whole number")
positive_float = checked_number(
    float, lambda value: math.isfinite(value) and value > 0, "must be a finite number greater than 0", "a number"
)
percentage = checked_number(float, lambda value: 0 <= value <= 100, "must be between 0 and 100", "a percentage")


def default_data_dir() -> str:
    """Return the MNIST folder: $MNIST_DATA_DIR when set, else ./data."""
    return os.environ.get(DATA_DIR_ENV) or "./data"


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """Add --device, which every script that runs the model shares."""
    parser.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda", "mps"],
        help="where to compute; auto picks cuda, then mps, then cpu (default: %(default)s)",
    )


def add_data_and_device_options(parser: argparse.ArgumentParser) -> None:
    """Add --data-dir and --device, which every script that reads MNIST shares."""
    parser.add_argument(
        "--data-dir",
        default=default_data_dir(),
        help=f"folder holding MNIST/raw/, downloaded there when missing (default: ${DATA_DIR_ENV} or ./data)",
    )
    add_device_option(parser)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line of train.py."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=1,
        help="passes over the training set (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=160,
        help="training batch size (default: %(default)s)",
    )
    parser.add_argument(
        "--lr",
        type=positive_float,
        default=0.035,
        help="peak learning rate of AdamW (first convolution, batch norms, classifier) (default: %(default)s)",
    )
    parser.add_argument(
        "--muon-lr",
        type=positive_float,
        default=0.1,
        help="peak learning rate of Muon (the other convolutions) (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed for initialisation and shuffling (default: %(default)s)",
    )
    add_data_and_device_options(parser)
    parser.add_argument(
        "--out-dir",
        default="models",
        help="folder for the checkpoint and its JSON (default: %(default)s)",
    )
    parser.add_argument(
        "--min-accuracy",
        type=percentage,
        default=None,
        help="exit with status 1, after saving, when test accuracy (in %%) is below this (default: off)",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (they are off when stderr is not a terminal)",
    )
    return parser.parse_args(argv)


def keep_freed_memory() -> None:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the system.

    By default every training step's large activation buffers come fresh from the system and
    are touched page by page, about a thousand page faults per step; this costs a quarter of the
    epoch on a 2-core CPU. Elsewhere than glibc (macOS, Windows, musl) it does nothing.
    """
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(GLIBC_M_MMAP_THRESHOLD, MALLOC_KEEP_BYTES)
    libc.mallopt(GLIBC_M_TRIM_THRESHOLD, MALLOC_KEEP_BYTES)


def pick_device(name: str) -> torch.device:
    """Return the device named, or for 'auto' the first available of cuda, mps and cpu."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SetupError("--device cuda was asked for, but no CUDA device is available")
    if name == "mps" and not torch.backends.mps.is_available():
        raise SetupError("--device mps was asked for, but MPS is not available")
    return torch.device(name)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """Return bfloat16 where the device computes it natively, else None (train in float32)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    return None


def load_mnist(data_dir: str, train: bool, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Return MNIST's images, normalised, as one (N, 1, 28, 28) channels-last tensor on device, and its labels."""
    try:
        dataset = torchvision.datasets.MNIST(root=data_dir, train=train, download=True)
    except (OSError, RuntimeError) as error:
        raw = Path(data_dir) / "MNIST" / "raw"
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise SetupError(
            f"MNIST not found in {raw} (expected {', '.join(MNIST_FILES)}) and the download failed: {reason}"
        ) from None
    images = dataset.data.to(device=device, dtype=torch.float32).div_(255).sub_(MNIST_MEAN).div_(MNIST_STD)
    return images.unsqueeze(1).contiguous(memory_format=torch.channels_last), dataset.targets.to(device)


def train_epoch(
    model: nn.Module,
    schedules: list[torch.optim.lr_scheduler.LRScheduler],
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    amp_dtype: torch.dtype | None,
    description: str,
    progress: bool,
) -> tuple[float, float]:
    """Train model for one shuffled pass over images; return the mean loss and the accuracy in %."""
    model.train()
    order = torch.randperm(len(images), generator=generator).to(images.device)
    loss_sum = torch.zeros((), device=images.device)
    correct = torch.zeros((), dtype=torch.long, device=images.device)
    steps = math.ceil(len(images) / batch_size)
    update_every = max(1, steps // PROGRESS_UPDATES)
    bar = tqdm(range(steps), desc=description, unit="batch", disable=not progress, leave=False)
    for step in bar:
        batch = order[step * batch_size : (step + 1) * batch_size]
        inputs, targets = images[batch], labels[batch]
        with torch.autocast(images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(inputs)
            loss = F.cross_entropy(logits, targets, label_smoothing=LABEL_SMOOTHING)
        model.zero_grad(set_to_none=True)
        loss.backward()
        step_optimizers(schedules)
        loss_sum += loss.detach() * len(batch)
        correct += (logits.argmax(1) == targets).sum()
        if progress and (step + 1) % update_every == 0:
            seen = min((step + 1) * batch_size, len(images))
            bar.set_postfix(
                loss=f"{loss_sum.item() / seen:.4f}",
                acc=f"{100 * correct.item() / seen:.2f}%",
            )
    return loss_sum.item() / len(images), 100 * correct.item() / len(images)


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    amp_dtype: torch.dtype | None,
    progress: bool,
) -> tuple[float, float, torch.Tensor]:
    """Return the mean loss, the accuracy in % and the predicted labels of model on images."""
    model.eval()
    loss_sum = torch.zeros((), device=images.device)
    predictions = []
    for start in tqdm(
        range(0, len(images), EVAL_BATCH_SIZE),
        desc="evaluate",
        unit="batch",
        disable=not progress,
        leave=False,
    ):
        inputs, targets = (
            images[start : start + EVAL_BATCH_SIZE],
            labels[start : start + EVAL_BATCH_SIZE],
        )
        with torch.autocast(images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(inputs)
        loss_sum += F.cross_entropy(logits.float(), targets, reduction="sum")
        predictions.append(logits.argmax(1))
    predicted = torch.cat(predictions)
    accuracy = 100 * (predicted == labels).sum().item() / len(labels)
    return loss_sum.item() / len(images), accuracy, predicted


def git_commit() -> str | None:
    """Return the commit of the checkout this file lives in, or None outside a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            check=False,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def orthogonalize(matrix: torch.Tensor, steps: int = NEWTON_SCHULZ_STEPS) -> torch.Tensor:
    """Return matrix with its singular values pushed towards 1 by Muon's Newton-Schulz iteration."""
    a, b, c = NEWTON_SCHULZ_COEFFICIENTS
    wide = matrix.size(0) <= matrix.size(1)
    x = matrix if wide else matrix.T
    x = x / (x.norm() + 1e-7)
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x if wide else x.T


class Muon(torch.optim.Optimizer):
    """Muon for convolution filters followed by batch norm: Nesterov momentum, orthogonalised per layer.

    Batch norm makes the loss blind to a filter bank's scale, so each bank is reset to a fixed norm
    before its update and the learning rate alone sets the size of every step.
    """

    def __init__(self, params: list[torch.Tensor], lr: float, momentum: float = MUON_MOMENTUM) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self) -> None:
        """Update every filter bank that has a gradient by one Muon step."""
        for group in self.param_groups:
            for weight in group["params"]:
                if weight.grad is None:
                    continue
                state = self.state[weight]
                if not state:
                    state["momentum_buffer"] = torch.zeros_like(weight.grad)
                buffer = state["momentum_buffer"].mul_(group["momentum"]).add_(weight.grad)
                direction = weight.grad.add(buffer, alpha=group["momentum"])
                update = orthogonalize(direction.reshape(len(direction), -1)).view(weight.shape)
                weight.mul_(len(weight) ** 0.5 / weight.norm())
                weight.sub_(update, alpha=group["lr"])


def make_schedules(
    model: MnistCNN, lr: float, muon_lr: float, total_steps: int
) -> list[torch.optim.lr_scheduler.OneCycleLR]:
    """Return the recipe's optimisers, each inside its one-cycle schedule over total_steps.

    Muon trains the convolutions after the first, which batch norm follows; fused AdamW (weight
    decay, cycled beta1) trains the first convolution, the batch norms and the classifier.
    """
    muon_weights = [layer.weight for layer in model.modules() if isinstance(layer, nn.Conv2d)][1:]
    adamw_weights = [p for p in model.parameters() if all(p is not weight for weight in muon_weights)]
    muon = Muon(muon_weights, lr=muon_lr)
    adamw = torch.optim.AdamW(adamw_weights, lr=lr, weight_decay=WEIGHT_DECAY, fused=True)
    return [
        torch.optim.lr_scheduler.OneCycleLR(
            muon, max_lr=muon_lr, total_steps=total_steps, pct_start=WARMUP_FRACTION, cycle_momentum=False
        ),
        torch.optim.lr_scheduler.OneCycleLR(adamw, max_lr=lr, total_steps=total_steps, pct_start=WARMUP_FRACTION),
    ]


def step_optimizers(schedules: list[torch.optim.lr_scheduler.LRScheduler]) -> None:
    """Apply every schedule's optimiser to the gradients, then advance the schedule by one step."""
    for schedule in schedules:
        schedule.optimizer.step()
        schedule.step()


@dataclass
class FitResult:
    """A trained model and the figures of its last epoch (training seconds over all epochs)."""

    model: MnistCNN
    train_loss: float
    train_accuracy: float
    train_seconds: float


def fit(args: argparse.Namespace, images: torch.Tensor, labels: torch.Tensor, progress: bool) -> FitResult:
    """Train a fresh MnistCNN on images for args.epochs epochs with args' seed, batch size and learning rate."""
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    model = MnistCNN().to(device=images.device, memory_format=torch.channels_last)
    steps_per_epoch = math.ceil(len(images) / args.batch_size)
    schedules = make_schedules(model, args.lr, args.muon_lr, args.epochs * steps_per_epoch)
    amp_dtype = autocast_dtype(images.device)
    train_seconds = 0.0
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        train_loss, train_accuracy = train_epoch(
            model,
            schedules,
            images,
            labels,
            args.batch_size,
            generator,
            amp_dtype,
            f"epoch {epoch}/{args.epochs}",
            progress,
        )
        seconds = time.perf_counter() - start
        train_seconds += seconds
        print(
            f"epoch {epoch}/{args.epochs}: train loss {train_loss:.4f}, train accuracy {train_accuracy:.2f}%, {seconds:.1f} s"
        )
    return FitResult(model, train_loss, train_accuracy, train_seconds)


def run_training(args: argparse.Namespace) -> TrainResult:
    """Train, evaluate and save as args say; return the files written and their metadata."""
    progress = not args.no_progress and sys.stderr.isatty()
    device = pick_device(args.device)
    amp_dtype = autocast_dtype(device)
    train_images, train_labels = load_mnist(args.data_dir, train=True, device=device)
    test_images, test_labels = load_mnist(args.data_dir, train=False, device=device)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    fitted = fit(args, train_images, train_labels, progress)
    model = fitted.model
    start = time.perf_counter()
    test_loss, test_accuracy, _ = evaluate(model, test_images, test_labels, amp_dtype, progress)
    eval_seconds = time.perf_counter() - start

    now = datetime.datetime.now().astimezone()
    metadata = {
        "metrics": {
            "test_accuracy": test_accuracy,
            "test_loss": test_loss,
            "train_accuracy": fitted.train_accuracy,
            "train_loss": fitted.train_loss,
            "train_seconds": fitted.train_seconds,
            "train_images_per_second": args.epochs * len(train_images) / fitted.train_seconds,
            "eval_seconds": eval_seconds,
        },
        "config": {
            **vars(args),
            "resolved_device": str(device),
            "autocast": str(amp_dtype).removeprefix("torch.") if amp_dtype else None,
        },
        "num_parameters": count_parameters(model),
        "timestamp": now.isoformat(timespec="seconds"),
        "versions": {
            "python": platform.python_version(),
            "torch": str(torch.__version__),
            "torchvision": torchvision.__version__,
        },
        "git_commit": git_commit(),
    }
    state = {name: tensor.cpu() for name, tensor in model.state_dict().items()}
    checkpoint_path, metadata_path = save_checkpoint(
        out_dir,
        now.strftime("%Y%m%d-%H%M%S"),
        {"model_state_dict": state, **metadata},
        metadata,
    )
    return TrainResult(checkpoint_path, metadata_path, metadata)


def print_summary(result: TrainResult) -> None:
    """Print the run's figures and where its files are."""
    metrics = result.metadata["metrics"]
    print(f"parameters       {result.metadata['num_parameters']:,}")
    print(f"train accuracy   {metrics['train_accuracy']:.2f}%  (loss {metrics['train_loss']:.4f}, over the last epoch)")
    print(f"test accuracy    {metrics['test_accuracy']:.2f}%  (loss {metrics['test_loss']:.4f}, 10,000 images)")
    print(f"training time    {metrics['train_seconds']:.2f} s  ({metrics['train_images_per_second']:,.0f} images/s)")
    print(f"checkpoint       {result.checkpoint_path}")
    print(f"metadata         {result.metadata_path}")


def main(argv: list[str] | None = None) -> int:
    """Run train.py with argv; return the exit status."""
    args = parse_args(argv)
    keep_freed_memory()
    try:
        result = run_training(args)
    except SetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: no checkpoint written", file=sys.stderr)
        return 130
    print_summary(result)
    accuracy = result.metadata["metrics"]["test_accuracy"]
    if args.min_accuracy is not None and accuracy < args.min_accuracy:
        print(
            f"error: test accuracy {accuracy:.2f}% is below --min-accuracy {args.min_accuracy:.2f}%",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
