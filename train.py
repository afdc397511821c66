"""Train MnistCNN on MNIST, evaluate it on the 10,000 test images and save a timestamped checkpoint.

The whole data set lives in memory as one tensor on the training device and batches are index
slices of it, so the input path costs almost nothing next to the model.
"""

import argparse
import datetime
import math
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from augment import Augmentation, augment, augmentation_for
from card import model_card
from checkpoint import run_metadata, save_checkpoint
from data import DataError, add_data_option, load_mnist
from device import DeviceError, add_device_option, autocast_dtype, keep_freed_memory, pick_device
from evaluate import confusion_matrix, per_class_accuracy, score
from files import WriteError, check_writable_folder
from model import MnistCNN
from optim import make_scheduled_optimizers
from options import percentage, positive_float, positive_int
from steps import LABEL_SMOOTHING, Step, make_step

CURVE_POINTS = 20
FULL_RESOLUTION_FROM_EPOCHS = 3
HARD_EXAMPLE_SHARE = 0.5


class DivergenceError(Exception):
    """The training loss stopped being a finite number."""


@dataclass
class TrainResult:
    """What one training run produced: the two files it wrote and its metadata."""

    checkpoint_path: Path
    metadata_path: Path
    metadata: dict


@dataclass
class FitResult:
    """A trained model and the figures of its last epoch (training seconds over all epochs)."""

    model: MnistCNN
    train_loss: float
    train_accuracy: float
    train_seconds: float
    loss_curve: list[float]


def new_model(epochs: int, device: torch.device) -> MnistCNN:
    """Return a fresh MnistCNN for a run of epochs, channels-last on device, chosen on the validation split.

    Runs of FULL_RESOLUTION_FROM_EPOCHS or more get the full-resolution first layer: more work per
    image, which their length affords; one or two epochs keep the strided one, which is faster.
    """
    full_resolution = epochs >= FULL_RESOLUTION_FROM_EPOCHS
    return MnistCNN(full_resolution).to(device=device, memory_format=torch.channels_last)


def hard_examples_from(epoch: int, epochs: int, steps: int) -> int | None:
    """Return the step of epoch (0-based) of epochs from which its images are drawn by their losses, or None.

    The second half of every run does so (validation's choice): the second half of the steps of a
    one-epoch run, or every epoch from the middle one of a longer run; the rest is shuffled.
    """
    if epochs == 1:
        return steps // 2
    return 0 if epoch >= epochs / 2 else None


def draw_by_loss(example_losses: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """Return count image indices drawn with replacement, on the CPU, so that hard images come round more often.

    HARD_EXAMPLE_SHARE of the chance goes to the images in proportion to example_losses (each
    image's loss when last trained on), the rest evenly.
    """
    losses = example_losses.float().cpu()
    weights = (1 - HARD_EXAMPLE_SHARE) / len(losses) + HARD_EXAMPLE_SHARE * losses / losses.sum().clamp_min(1e-12)
    return torch.multinomial(weights, count, replacement=True, generator=generator)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line of train.py."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=positive_int, default=1, help="passes over the training set (default: 1)")
    parser.add_argument("--batch-size", type=positive_int, default=160, help="training batch size (default: 160)")
    parser.add_argument("--lr", type=positive_float, default=0.035, help="peak learning rate of AdamW (default: 0.035)")
    parser.add_argument("--muon-lr", type=positive_float, default=0.1, help="peak learning rate of Muon (default: 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seed for initialisation and shuffling (default: 0)")
    add_data_option(parser)
    add_device_option(parser)
    parser.add_argument("--out-dir", default="models", help="folder for the checkpoint and its JSON (default: models)")
    parser.add_argument("--min-accuracy", type=percentage, help="after saving, exit 1 if test accuracy (%%) is below")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bars (they are off when stderr is not a terminal)"
    )
    return parser.parse_args(argv)


def train_epoch(
    model: nn.Module,
    take_step: Step,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    description: str,
    progress: bool,
    augmentation: Augmentation | None = None,
    example_losses: torch.Tensor | None = None,
    hard_from: int | None = None,
) -> tuple[float, float, list[float]]:
    """Train model for one pass of len(images) images; return the mean loss, the accuracy in % and the loss curve.

    The images come shuffled; from step hard_from on (None: never) they are drawn by example_losses
    instead (draw_by_loss). With example_losses (one per image, on the device), each image's loss
    without label smoothing is written there whenever it is trained on.

    The curve is the mean loss of each of CURVE_POINTS equal parts of the epoch. The running sums
    stay on the device and are copied at each part's end, where the loss is also checked for
    divergence (DivergenceError), so no step but those waits for the device.
    """
    model.train()
    count = len(images)
    order = (
        draw_by_loss(example_losses, count, generator) if hard_from == 0 else torch.randperm(count, generator=generator)
    )
    order = order.to(images.device)
    loss_sum = torch.zeros((), device=images.device)
    correct = torch.zeros((), dtype=torch.long, device=images.device)
    steps = math.ceil(count / batch_size)
    part_ends = {round(part * steps / CURVE_POINTS) for part in range(1, CURVE_POINTS + 1)} - {0}
    part_sums, part_seen = [], []
    bar = tqdm(range(steps), desc=description, unit="batch", disable=not progress, leave=False)
    for step in bar:
        if step == hard_from and step > 0:
            done = step * batch_size
            order = torch.cat([order[:done], draw_by_loss(example_losses, count - done, generator).to(images.device)])
        batch = order[step * batch_size : (step + 1) * batch_size]
        inputs, targets = images[batch], labels[batch]
        if augmentation is not None:
            inputs = augment(inputs, augmentation)
        logits, loss = take_step(inputs, targets)
        loss_sum += loss * len(batch)
        correct += (logits.argmax(1) == targets).sum()
        if example_losses is not None:
            example_losses[batch] = F.cross_entropy(logits.detach().float(), targets, reduction="none")
        if step + 1 in part_ends:
            if not torch.isfinite(loss_sum):
                raise DivergenceError(
                    f"training diverged: the loss is {loss_sum.item()} by step {step + 1} of {steps} in {description}; "
                    "try a lower --lr or --muon-lr"
                )
            part_sums.append(loss_sum.clone())
            part_seen.append(min((step + 1) * batch_size, count))
            if progress:
                seen = part_seen[-1]
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{100 * correct.item() / seen:.2f}%")
    sums = [0.0, *torch.stack(part_sums).tolist()]
    seen = [0, *part_seen]
    curve = [(sums[i + 1] - sums[i]) / (seen[i + 1] - seen[i]) for i in range(len(part_seen))]
    return loss_sum.item() / count, 100 * correct.item() / count, curve


def fit(
    args: argparse.Namespace,
    images: torch.Tensor,
    labels: torch.Tensor,
    progress: bool,
    augmentation: Augmentation | None,
) -> FitResult:
    """Train a fresh MnistCNN on images for args.epochs epochs with args' seed, batch size, learning rates and
    augmentation (None: none); the second half of the run draws its images by their losses.
    """
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    model = new_model(args.epochs, images.device)
    steps_per_epoch = math.ceil(len(images) / args.batch_size)
    schedules = make_scheduled_optimizers(model, args.lr, args.muon_lr, args.epochs * steps_per_epoch)
    take_step = make_step(model, schedules, autocast_dtype(images.device), args.batch_size)
    example_losses = torch.ones(len(images), device=images.device)
    train_seconds = 0.0
    loss_curve = []
    for epoch in range(1, args.epochs + 1):
        start, description = time.perf_counter(), f"epoch {epoch}/{args.epochs}"
        hard_from = hard_examples_from(epoch - 1, args.epochs, steps_per_epoch)
        train_loss, train_accuracy, epoch_curve = train_epoch(
            model,
            take_step,
            images,
            labels,
            args.batch_size,
            generator,
            description,
            progress,
            augmentation,
            example_losses,
            hard_from,
        )
        seconds = time.perf_counter() - start
        train_seconds += seconds
        loss_curve += epoch_curve
        figures = f"train loss {train_loss:.4f}, train accuracy {train_accuracy:.2f}%, {seconds:.1f} s"
        print(f"{description}: {figures}")
    return FitResult(model, train_loss, train_accuracy, train_seconds, loss_curve)


def run_training(args: argparse.Namespace) -> TrainResult:
    """Train, score on the test set and save as args say; return the files written and their metadata."""
    progress = not args.no_progress and sys.stderr.isatty()
    device = pick_device(args.device)
    amp_dtype = autocast_dtype(device)
    out_dir = Path(args.out_dir)
    check_writable_folder(out_dir)
    train_images, train_labels = load_mnist(args.data_dir, train=True, device=device)
    test_images, test_labels = load_mnist(args.data_dir, train=False, device=device)

    fitted = fit(args, train_images, train_labels, progress, augmentation_for(args.epochs))
    model = fitted.model
    start = time.perf_counter()
    test_loss, test_accuracy, predicted = score(model, test_images, test_labels, amp_dtype, progress)
    eval_seconds = time.perf_counter() - start

    metadata = run_metadata(
        {
            "test_accuracy": test_accuracy,
            "test_loss": test_loss,
            "train_accuracy": fitted.train_accuracy,
            "train_loss": fitted.train_loss,
            "train_seconds": fitted.train_seconds,
            "train_images_per_second": args.epochs * len(train_images) / fitted.train_seconds,
            "eval_seconds": eval_seconds,
            "train_loss_curve": fitted.loss_curve,
            "per_class_accuracy": per_class_accuracy(confusion_matrix(test_labels, predicted)),
        },
        {
            **vars(args),
            "resolved_device": str(device),
            "autocast": str(amp_dtype).removeprefix("torch.") if amp_dtype else None,
            "label_smoothing": LABEL_SMOOTHING,
            "full_resolution": model.full_resolution,
        },
        model,
    )
    state = {name: tensor.cpu() for name, tensor in model.state_dict().items()}
    stamp = datetime.datetime.fromisoformat(metadata["timestamp"]).strftime("%Y%m%d-%H%M%S")
    checkpoint_path, metadata_path = save_checkpoint(
        out_dir, stamp, {"model_state_dict": state, **metadata}, metadata, partial(model_card, metadata, model)
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
    except (DataError, DeviceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (DivergenceError, WriteError) as error:
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
