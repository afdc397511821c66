"""Train MnistCNN on MNIST with one recipe, score it on the 10,000 test images and save a timestamped checkpoint.

The file reads top to bottom: the command line and the recipe it gives, the loss-weighted draw,
one epoch, a whole run (fit), then training, scoring and saving, and main. The data set lives in
memory as one tensor on the training device, and batches are index slices of it.

What a run trains on: until the middle of the run (a one-epoch run: its middle step; a longer run:
the first epoch that starts at or after the middle) each epoch is a shuffled pass over every
training image. From there the images are drawn with replacement, half of the chance by each
image's last loss (hard examples), so some images come round several times and others not at all:
in a default one-epoch run about 13,400 of the 60,000 images (22%) are never trained on.
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
from tqdm import tqdm

from mnist_cnn.augment import augment
from mnist_cnn.card import model_card
from mnist_cnn.checkpoint import MODELS_DIR, run_metadata, save_checkpoint
from mnist_cnn.cli import percentage, positive_float, positive_int, wants_progress
from mnist_cnn.data import DataError, add_data_option, load_mnist
from mnist_cnn.device import DeviceError, add_device_option, autocast_dtype, keep_freed_memory, pick_device
from mnist_cnn.files import WriteError, check_writable_folder
from mnist_cnn.optim import make_scheduled_optimizers
from mnist_cnn.recipe import Recipe, recipe_for
from mnist_cnn.scoring import confusion_matrix, per_class_accuracy, score
from mnist_cnn.step import Step, make_step
from model import MnistCNN

CURVE_POINTS = 20


class DivergenceError(Exception):
    """The training loss stopped being a finite number."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line of train.py; options left unset keep the recipe's value for the epochs."""
    defaults = recipe_for(1)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=positive_int, default=1, help="passes over the training set (default: 1)")
    parser.add_argument("--seed", type=int, help=f"seed for initialisation and shuffling (default: {defaults.seed})")
    parser.add_argument("--batch-size", type=positive_int, help=f"batch size (default: {defaults.batch_size})")
    parser.add_argument(
        "--adamw-lr", "--lr", type=positive_float, help=f"peak learning rate of AdamW (default: {defaults.adamw_lr})"
    )
    parser.add_argument(
        "--muon-lr", type=positive_float, help=f"peak learning rate of Muon (default: {defaults.muon_lr})"
    )
    parser.add_argument(
        "--full-resolution",
        action=argparse.BooleanOptionalAction,
        help="first layer at full resolution (default: from 3 epochs, as mnist_cnn/recipe.py says)",
    )
    add_data_option(parser)
    add_device_option(parser)
    parser.add_argument("--out-dir", type=Path, default=MODELS_DIR, help="folder for the checkpoint (default: models)")
    parser.add_argument("--min-accuracy", type=percentage, help="after saving, exit 1 if test accuracy (%%) is below")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (also off when not a terminal)")
    return parser.parse_args(argv)


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """Return the recipe for args.epochs with every recipe option given on the command line in place."""
    names = ("seed", "batch_size", "adamw_lr", "muon_lr", "full_resolution")
    return recipe_for(args.epochs, **{name: getattr(args, name) for name in names if getattr(args, name) is not None})


def hard_example_start(recipe: Recipe, epoch: int, steps: int) -> int | None:
    """Return the step of epoch (0-based) from which its images are drawn by their losses, or None for a shuffled pass.

    A one-epoch run starts at recipe.hard_examples_from of its steps; a longer run draws whole
    epochs, from the first whose start is at or after that share of the run.
    """
    if recipe.epochs == 1:
        return int(steps * recipe.hard_examples_from)
    return 0 if epoch >= recipe.epochs * recipe.hard_examples_from else None


def draw_by_loss(example_losses: torch.Tensor, count: int, share: float, generator: torch.Generator) -> torch.Tensor:
    """Return count image indices drawn with replacement, on the CPU: share of the chance in proportion to
    example_losses (each image's loss when last trained on), the rest evenly.
    """
    losses = example_losses.float().cpu()
    weights = (1 - share) / len(losses) + share * losses / losses.sum().clamp_min(1e-12)
    return torch.multinomial(weights, count, replacement=True, generator=generator)


def train_epoch(
    take_step: Step,
    images: torch.Tensor,
    labels: torch.Tensor,
    recipe: Recipe,
    generator: torch.Generator,
    example_losses: torch.Tensor,
    hard_from: int | None,
    description: str,
    progress: bool,
) -> tuple[float, float, list[float]]:
    """Take ceil(len(images) / batch size) steps; return the mean loss, the accuracy in % and the loss curve.

    The images come shuffled; from step hard_from on (None: never) they are drawn by
    example_losses instead (draw_by_loss). Each image's loss without label smoothing is written to
    example_losses (one per image, on the device) whenever it is trained on.

    The curve is the mean loss of each of CURVE_POINTS equal parts of the epoch. The running sums
    stay on the device and are copied at each part's end, where the loss is also checked for
    divergence (DivergenceError), so no step but those waits for the device.
    """
    count, device, batch_size = len(images), images.device, recipe.batch_size
    if hard_from == 0:
        order = draw_by_loss(example_losses, count, recipe.hard_example_share, generator)
    else:
        order = torch.randperm(count, generator=generator)
    order = order.to(device)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    steps = math.ceil(count / batch_size)
    part_ends = {round(part * steps / CURVE_POINTS) for part in range(1, CURVE_POINTS + 1)} - {0}
    part_sums, part_seen = [], []
    bar = tqdm(range(steps), desc=description, unit="batch", disable=not progress, leave=False)
    for step in bar:
        if step == hard_from and step > 0:
            done = step * batch_size
            drawn = draw_by_loss(example_losses, count - done, recipe.hard_example_share, generator)
            order = torch.cat([order[:done], drawn.to(device)])
        batch = order[step * batch_size : (step + 1) * batch_size]
        inputs, targets = augment(images[batch], recipe.augmentation), labels[batch]
        logits, loss = take_step(inputs, targets)
        loss_sum += loss * len(batch)
        correct += (logits.argmax(1) == targets).sum()
        example_losses[batch] = F.cross_entropy(logits.detach().float(), targets, reduction="none")
        if step + 1 in part_ends:
            if not torch.isfinite(loss_sum):
                raise DivergenceError(
                    f"training diverged: the loss is {loss_sum.item()} by step {step + 1} of {steps} in {description}; "
                    "try a lower --adamw-lr or --muon-lr"
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


@dataclass
class FitResult:
    """A trained model and the figures of its last epoch (training seconds over all epochs)."""

    model: MnistCNN
    train_loss: float
    train_accuracy: float
    train_seconds: float
    loss_curve: list[float]


def fit(recipe: Recipe, images: torch.Tensor, labels: torch.Tensor, progress: bool = False) -> FitResult:
    """Train a fresh MnistCNN on images (channels-last, on their device) as recipe says; print one line an epoch."""
    torch.manual_seed(recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)
    device = images.device
    model = MnistCNN(recipe.full_resolution).to(device=device, memory_format=torch.channels_last).train()
    steps_per_epoch = math.ceil(len(images) / recipe.batch_size)
    schedules = make_scheduled_optimizers(model, recipe, recipe.epochs * steps_per_epoch)
    take_step = make_step(model, schedules, recipe, autocast_dtype(device))
    example_losses = torch.ones(len(images), device=device)
    train_seconds, loss_curve = 0.0, []
    for epoch in range(recipe.epochs):
        start, description = time.perf_counter(), f"epoch {epoch + 1}/{recipe.epochs}"
        hard_from = hard_example_start(recipe, epoch, steps_per_epoch)
        train_loss, train_accuracy, epoch_curve = train_epoch(
            take_step, images, labels, recipe, generator, example_losses, hard_from, description, progress
        )
        seconds = time.perf_counter() - start
        train_seconds += seconds
        loss_curve += epoch_curve
        print(f"{description}: train loss {train_loss:.4f}, train accuracy {train_accuracy:.2f}%, {seconds:.1f} s")
    return FitResult(model, train_loss, train_accuracy, train_seconds, loss_curve)


@dataclass
class TrainResult:
    """What one training run produced: the two files it wrote and its metadata."""

    checkpoint_path: Path
    metadata_path: Path
    metadata: dict


def run_training(recipe: Recipe, args: argparse.Namespace) -> TrainResult:
    """Train as recipe says, score on the test set with one view and with the recipe's views, save; return the files."""
    progress = wants_progress(args.no_progress)
    device = pick_device(args.device)
    amp_dtype = autocast_dtype(device)
    check_writable_folder(args.out_dir)
    train_images, train_labels = load_mnist(args.data_dir, train=True, device=device)
    test_images, test_labels = load_mnist(args.data_dir, train=False, device=device)

    fitted = fit(recipe, train_images, train_labels, progress)
    one_view = score(fitted.model, test_images, test_labels, amp_dtype, 1, progress)
    start = time.perf_counter()
    tested = score(fitted.model, test_images, test_labels, amp_dtype, recipe.test_time_views, progress)
    eval_seconds = time.perf_counter() - start

    metrics = {
        "test_accuracy": tested.accuracy,
        "test_loss": tested.loss,
        "test_views": recipe.test_time_views,
        "test_accuracy_one_view": one_view.accuracy,
        "test_loss_one_view": one_view.loss,
        "train_accuracy": fitted.train_accuracy,
        "train_loss": fitted.train_loss,
        "train_images": len(train_images),
        "train_seconds": fitted.train_seconds,
        "train_images_per_second": recipe.epochs * len(train_images) / fitted.train_seconds,
        "eval_seconds": eval_seconds,
        "train_loss_curve": fitted.loss_curve,
        "per_class_accuracy": per_class_accuracy(confusion_matrix(test_labels, tested.predicted)),
    }
    config = {
        "data_dir": str(args.data_dir),
        "device": args.device,
        "resolved_device": str(device),
        "autocast": str(amp_dtype).removeprefix("torch.") if amp_dtype else None,
    }
    metadata = run_metadata(metrics, recipe, config, fitted.model)
    state = {name: tensor.cpu() for name, tensor in fitted.model.state_dict().items()}
    stamp = datetime.datetime.fromisoformat(metadata["timestamp"]).strftime("%Y%m%d-%H%M%S")
    card = partial(model_card, metadata, fitted.model)
    paths = save_checkpoint(args.out_dir, stamp, {"model_state_dict": state, **metadata}, metadata, card)
    return TrainResult(*paths, metadata)


def print_summary(result: TrainResult) -> None:
    """Print the run's figures and where its files are."""
    metrics = result.metadata["metrics"]
    views = metrics["test_views"]
    print(f"parameters       {result.metadata['num_parameters']:,}")
    print(f"train accuracy   {metrics['train_accuracy']:.2f}%  (loss {metrics['train_loss']:.4f}, over the last epoch)")
    print(f"test accuracy    {metrics['test_accuracy']:.2f}%  (loss {metrics['test_loss']:.4f}, {views} views)")
    print(
        f"                 {metrics['test_accuracy_one_view']:.2f}%  (loss {metrics['test_loss_one_view']:.4f}, 1 view)"
    )
    print(f"training time    {metrics['train_seconds']:.2f} s  ({metrics['train_images_per_second']:,.0f} images/s)")
    print(f"checkpoint       {result.checkpoint_path}")
    print(f"metadata         {result.metadata_path}")


def main(argv: list[str] | None = None) -> int:
    """Run train.py with argv; return the exit status."""
    args = parse_args(argv)
    recipe = recipe_from_args(args)
    print(recipe.describe())
    keep_freed_memory()
    try:
        result = run_training(recipe, args)
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
        print(f"error: test accuracy {accuracy:.2f}% is below --min-accuracy {args.min_accuracy:.2f}%", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
