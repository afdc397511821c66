"""Train MnistCNN on MNIST with one recipe, score it on the 10,000 test images and save a timestamped checkpoint.

With --validation N it trains on all but the last N training images and scores on those (the split
that compares recipes), never reading the test files. Top to bottom: the command line, one epoch, a
whole run (fit), training with scoring and saving, main. The data set is one tensor on the device;
batches are index slices, drawn by relative loss from mid-run (mnist_cnn/hard_examples.py).
"""

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from mnist_cnn import cli
from mnist_cnn.augment import augment
from mnist_cnn.checkpoint import MODELS_DIR, run_metadata, save_run
from mnist_cnn.data import add_data_option, load_training_and_scoring_sets
from mnist_cnn.device import add_device_option, add_precision_option, autocast_dtype, keep_freed_memory, pick_device
from mnist_cnn.files import check_writable_folder
from mnist_cnn.hard_examples import epoch_order, hard_example_start, hardness, redraw_after
from mnist_cnn.optim import ScheduledOptimizers
from mnist_cnn.recipe import Recipe, build_model, default_help, recipe_for
from mnist_cnn.scoring import confusion_matrix, per_class_accuracy, score_views
from mnist_cnn.step import Step, make_step
from model import MnistCNN

CURVE_POINTS = 20


class DivergenceError(cli.RunFailed):
    """The training loss stopped being a finite number."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line of train.py; recipe options left unset keep the recipe's value for the epochs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--epochs", type=cli.positive_int, default=1, help="passes over the training set (default: 1)")
    add("--seed", type=int, help=f"seed for initialisation and shuffling (default: {recipe_for(1).seed})")
    add("--batch-size", type=cli.positive_int, help=f"batch size {default_help('batch_size')}")
    add("--adamw-lr", "--lr", type=cli.positive_float, help=f"AdamW's peak learning rate {default_help('adamw_lr')}")
    add("--muon-lr", type=cli.positive_float, help=f"Muon's peak learning rate {default_help('muon_lr')}")
    cli.add_recipe_override_option(parser)
    cli.add_validation_option(parser)
    add_data_option(parser)
    add_device_option(parser)
    add_precision_option(parser)
    add("--out-dir", type=Path, default=MODELS_DIR, help="folder for the checkpoint (default: models)")
    add("--min-accuracy", type=cli.percentage, help="after saving, exit 1 if the accuracy (%%) is below")
    add("--no-progress", action="store_true", help="no progress bars (also off when not a terminal)")
    return parser.parse_args(argv)


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """Return the recipe for args.epochs with every recipe option given on the command line (--set last) in place."""
    options = {name: getattr(args, name) for name in ("seed", "batch_size", "adamw_lr", "muon_lr")}
    given = {name: value for name, value in options.items() if value is not None}
    return recipe_for(args.epochs, **(given | dict(args.overrides)))


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

    The images come shuffled, from step hard_from on (None: never) drawn by example_losses, where each
    image's loss (relative to its batch's, as the recipe says) is written when it is trained on. The
    curve is the mean loss of each of CURVE_POINTS parts of the epoch; the sums stay on the device and
    are read, and checked for divergence, only at each part's end, so no other step waits for the device.
    """
    count, device, batch_size = len(images), images.device, recipe.batch_size
    order = epoch_order(example_losses, hard_from == 0, recipe.hard_example_share, generator).to(device)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    steps = math.ceil(count / batch_size)
    part_ends = {round(part * steps / CURVE_POINTS) for part in range(1, CURVE_POINTS + 1)} - {0}
    part_sums, part_seen = [], []
    bar = tqdm(range(steps), desc=description, unit="batch", disable=not progress, leave=False)
    for step in bar:
        if step == hard_from and step > 0:
            order = redraw_after(order, step * batch_size, example_losses, recipe.hard_example_share, generator)
        batch = order[step * batch_size : (step + 1) * batch_size]
        inputs, targets = augment(images[batch], recipe.augmentation), labels[batch]
        logits, loss = take_step(inputs, targets)
        loss_sum += loss * len(batch)
        correct += (logits.argmax(1) == targets).sum()
        example_losses[batch] = hardness(logits, targets, recipe.relative_losses)
        if step + 1 in part_ends:
            if not torch.isfinite(loss_sum):
                where = f"by step {step + 1} of {steps} in {description}"
                raise DivergenceError(f"training diverged: the loss is {loss_sum.item()} {where}; try a lower --lr")
            part_sums.append(loss_sum.clone())
            part_seen.append(min((step + 1) * batch_size, count))
            if progress:
                seen = part_seen[-1]
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{100 * correct.item() / seen:.2f}%")
    sums, seen = [0.0, *torch.stack(part_sums).tolist()], [0, *part_seen]
    curve = [(sums[i + 1] - sums[i]) / (seen[i + 1] - seen[i]) for i in range(len(part_seen))]
    return loss_sum.item() / count, 100 * correct.item() / count, curve


@dataclass
class EpochReport:
    """The figures of one finished epoch, as fit hands them to its on_epoch callback; str() gives its log line."""

    epoch: int
    epochs: int
    train_loss: float
    train_accuracy: float
    seconds: float

    def __str__(self) -> str:
        return (
            f"epoch {self.epoch}/{self.epochs}: train loss {self.train_loss:.4f}, "
            f"train accuracy {self.train_accuracy:.2f}%, {self.seconds:.1f} s"
        )


@dataclass
class FitResult:
    """A trained model and the figures of its last epoch (training seconds over all epochs)."""

    model: MnistCNN
    train_loss: float
    train_accuracy: float
    train_seconds: float
    loss_curve: list[float]


def fit(
    recipe: Recipe,
    images: torch.Tensor,
    labels: torch.Tensor,
    progress: bool = False,
    on_epoch: Callable[[EpochReport], object] = lambda report: None,
    precision: str = "auto",
) -> FitResult:
    """Train a fresh MnistCNN on images (channels-last, on their device) as recipe says, in precision (auto, bf16,
    fp32); hand each epoch's figures to on_epoch."""
    torch.manual_seed(recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)
    device = images.device
    model = build_model(recipe).to(device, memory_format=torch.channels_last).train()
    steps_per_epoch = math.ceil(len(images) / recipe.batch_size)
    optimizers = ScheduledOptimizers(model, recipe, recipe.epochs * steps_per_epoch)
    take_step = make_step(model, optimizers, recipe, autocast_dtype(device, precision))
    example_losses = torch.ones(len(images), device=device)
    train_seconds, loss_curve = 0.0, []
    for epoch in range(recipe.epochs):
        start, description = time.perf_counter(), f"epoch {epoch + 1}/{recipe.epochs}"
        hard_from = hard_example_start(recipe, epoch, steps_per_epoch)
        train_loss, train_accuracy, epoch_curve = train_epoch(
            take_step, images, labels, recipe, generator, example_losses, hard_from, description, progress
        )
        seconds = time.perf_counter() - start
        train_seconds, loss_curve = train_seconds + seconds, loss_curve + epoch_curve
        on_epoch(EpochReport(epoch + 1, recipe.epochs, train_loss, train_accuracy, seconds))
    return FitResult(model, train_loss, train_accuracy, train_seconds, loss_curve)


@dataclass
class TrainResult:
    """What one training run produced: the two files it wrote and its metadata."""

    checkpoint_path: Path
    metadata_path: Path
    metadata: dict


def run_training(recipe: Recipe, args: argparse.Namespace) -> TrainResult:
    """Train as recipe says, score with one view and the recipe's views on the test (or validation) split, save."""
    progress = cli.wants_progress(args.no_progress)
    device = pick_device(args.device)
    amp_dtype = autocast_dtype(device, args.precision)
    check_writable_folder(args.out_dir)
    split, (train_images, train_labels), (eval_images, eval_labels) = load_training_and_scoring_sets(
        args.data_dir, device, args.validation
    )
    fitted = fit(recipe, train_images, train_labels, progress, on_epoch=print, precision=args.precision)
    start = time.perf_counter()
    scored, one_view = score_views(fitted.model, eval_images, eval_labels, amp_dtype, recipe.test_time_views, progress)
    eval_seconds = time.perf_counter() - start
    scores = {"images": len(eval_images), "views": recipe.test_time_views, "accuracy": scored.accuracy}
    scores |= {"loss": scored.loss, "accuracy_one_view": one_view.accuracy, "loss_one_view": one_view.loss}
    metrics = {
        "split": split,
        **{f"{split}_{name}": value for name, value in scores.items()},
        "per_class_accuracy": per_class_accuracy(confusion_matrix(eval_labels, scored.predicted)),
        "train_accuracy": fitted.train_accuracy,
        "train_loss": fitted.train_loss,
        "train_loss_curve": fitted.loss_curve,
        "train_images": len(train_images),
        "train_seconds": fitted.train_seconds,
        "train_images_per_second": recipe.epochs * len(train_images) / fitted.train_seconds,
        "eval_seconds": eval_seconds,
    }
    amp = str(amp_dtype).removeprefix("torch.") if amp_dtype else None
    config = {"data_dir": str(args.data_dir), "validation": args.validation, "device": str(device)}
    config |= {"precision": args.precision, "autocast": amp}
    metadata = run_metadata(metrics, recipe, config, fitted.model)
    return TrainResult(*save_run(args.out_dir, fitted.model, metadata), metadata)


def print_summary(result: TrainResult) -> None:
    """Print the run's figures and where its files are."""
    metrics, split = result.metadata["metrics"], result.metadata["metrics"]["split"]
    accuracy, loss, views, images = (metrics[f"{split}_{key}"] for key in ("accuracy", "loss", "views", "images"))
    one_view, one_view_loss = metrics[f"{split}_accuracy_one_view"], metrics[f"{split}_loss_one_view"]
    print(f"parameters       {result.metadata['num_parameters']:,}")
    print(f"train accuracy   {metrics['train_accuracy']:.2f}%  (loss {metrics['train_loss']:.4f}, over the last epoch)")
    print(f"{split + ' accuracy':<16} {accuracy:.2f}%  (loss {loss:.4f}, {views} views; {images:,} images)")
    print(f"{'':<16} {one_view:.2f}%  (loss {one_view_loss:.4f}, 1 view)")
    autocast = result.metadata["config"]["autocast"] or "float32"
    seconds, speed = metrics["train_seconds"], metrics["train_images_per_second"]
    print(f"training time    {seconds:.2f} s  ({speed:,.0f} images/s, {autocast})")
    print(f"checkpoint       {result.checkpoint_path}\nmetadata         {result.metadata_path}")


@cli.reports_errors(interrupted="no checkpoint written")
def main(argv: list[str] | None = None) -> int:
    """Run train.py with argv; return the exit status."""
    args = parse_args(argv)
    recipe = recipe_from_args(args)
    print(recipe.describe())
    keep_freed_memory()
    result = run_training(recipe, args)
    print_summary(result)
    split = result.metadata["metrics"]["split"]
    accuracy = result.metadata["metrics"][f"{split}_accuracy"]
    if args.min_accuracy is not None and accuracy < args.min_accuracy:
        raise cli.RunFailed(f"{split} accuracy {accuracy:.2f}% is below --min-accuracy {args.min_accuracy}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
