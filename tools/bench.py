"""Benchmark a recipe: accuracy over seeds (one view and five), robustness, speed, and the conventional input path.

Run it from the repository's root as python -m tools.bench. It scores on the test set, or with
--validation N on the last N training images held out (the test files are then never read);
--set FIELD=VALUE changes a field of the recipe. Prints a markdown table; --json PATH also writes
the figures as JSON.
"""

import argparse
import functools
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torchvision
from torch.utils.data import DataLoader, Subset
from torchvision import transforms

import train
from mnist_cnn.cli import add_recipe_override_option, add_validation_option, positive_int, reports_errors
from mnist_cnn.corruptions import SUITE
from mnist_cnn.data import MNIST_MEAN, MNIST_STD, add_data_option, load_training_and_scoring_sets
from mnist_cnn.device import (
    add_device_option,
    add_precision_option,
    autocast_dtype,
    cpu_model,
    keep_freed_memory,
    pick_device,
)
from mnist_cnn.files import check_writable_folder, strict_json, write_file
from mnist_cnn.optim import ScheduledOptimizers
from mnist_cnn.recipe import Recipe, build_model, recipe_for
from mnist_cnn.scoring import corruption_accuracies, score_views
from mnist_cnn.step import eager_step
from model import count_parameters

CONVENTIONAL_BATCH_SIZE = 64
QUICK_SEEDS = 2
QUICK_TRAIN_IMAGES = 4096
QUICK_TEST_IMAGES = 1024
PEAK_UNKNOWN = "n/a (this platform does not report it)"


def conventional_epoch_seconds(data_dir: str, train_images: int, device: torch.device, recipe: Recipe) -> float:
    """Time one epoch of the same model, optimisers and step as recipe's, fed the way most MNIST repos feed it.

    That is: a per-sample Compose([ToTensor(), Normalize()]) on torchvision's MNIST, a shuffled
    DataLoader of batch size 64, float32 NCHW tensors, and the loss read back on every step.
    """
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])
    dataset = torchvision.datasets.MNIST(data_dir, train=True, download=True, transform=transform)
    if train_images < len(dataset):
        dataset = Subset(dataset, range(train_images))
    generator = torch.Generator().manual_seed(recipe.seed)
    loader = DataLoader(dataset, batch_size=CONVENTIONAL_BATCH_SIZE, shuffle=True, generator=generator)
    torch.manual_seed(recipe.seed)
    model = build_model(recipe).to(device).train()
    take_step = eager_step(model, ScheduledOptimizers(model, recipe, len(loader)), recipe.label_smoothing, None)
    start = time.perf_counter()
    for inputs, targets in loader:
        _, loss = take_step(inputs.to(device), targets.to(device))
        loss.item()
    return time.perf_counter() - start


def peak_memory_mb() -> float | None:
    """Return this process's peak resident memory in MB, or None where the platform does not say (Windows).

    getrusage's ru_maxrss is in KiB on Linux and in bytes on macOS.
    """
    try:
        import resource  # POSIX only
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024


def run_benchmark(
    seeds: int,
    quick: bool,
    data_dir: str,
    device: torch.device,
    epochs: int = 1,
    validation: int | None = None,
    overrides: dict | None = None,
    precision: str = "auto",
    first_seed: int = 0,
) -> dict:
    """Train recipe_for(epochs, **overrides) once per seed, seeds first_seed onwards; score it (one view and the
    recipe's views) on the test set or the validation split and under the corruption suite, time it and the
    conventional path (one epoch); return every figure.
    """
    overrides = overrides or {}
    split, (train_images, train_labels), (eval_images, eval_labels) = load_training_and_scoring_sets(
        data_dir, device, validation
    )
    if quick:
        train_images, train_labels = train_images[:QUICK_TRAIN_IMAGES], train_labels[:QUICK_TRAIN_IMAGES]
        eval_images, eval_labels = eval_images[:QUICK_TEST_IMAGES], eval_labels[:QUICK_TEST_IMAGES]
    accuracies, one_view, train_seconds, eval_seconds, corruptions = [], [], [], [], []
    amp_dtype = autocast_dtype(device, precision)
    for seed in range(first_seed, first_seed + seeds):
        recipe = recipe_for(epochs, **{**overrides, "seed": seed})
        report = functools.partial(print, file=sys.stderr)
        fitted = train.fit(recipe, train_images, train_labels, on_epoch=report, precision=precision)
        start = time.perf_counter()
        scored, alone = score_views(fitted.model, eval_images, eval_labels, amp_dtype, recipe.test_time_views)
        eval_seconds.append(time.perf_counter() - start)
        accuracies.append(scored.accuracy)
        one_view.append(alone.accuracy)
        train_seconds.append(fitted.train_seconds / epochs)
        corruptions.append(
            corruption_accuracies(fitted.model, eval_images, eval_labels, amp_dtype, recipe.test_time_views)
        )
        suite_mean = statistics.mean(corruptions[-1].values())
        print(
            f"seed {seed}: {split} accuracy {accuracies[-1]:.2f}% ({one_view[-1]:.2f}% one view), "
            f"corruption mean {suite_mean:.2f}%, training loop {fitted.train_seconds:.2f} s",
            file=sys.stderr,
        )
    per_corruption = {name: statistics.mean(seed_figures[name] for seed_figures in corruptions) for name in SUITE}
    worst = min(per_corruption, key=per_corruption.get)
    conventional = conventional_epoch_seconds(data_dir, len(train_images), device, recipe)
    epoch_seconds = statistics.median(train_seconds)
    return {
        "quick": quick,
        "seeds": seeds,
        "first_seed": first_seed,
        "epochs": epochs,
        "recipe": asdict(recipe_for(epochs, **overrides)),
        "split": split,
        "train_images": len(train_images),
        "eval_images": len(eval_images),
        "parameters": count_parameters(fitted.model),
        "views": recipe.test_time_views,
        "accuracy_mean": statistics.mean(accuracies),
        "accuracy_std": statistics.stdev(accuracies) if seeds > 1 else 0.0,
        "accuracy_min": min(accuracies),
        "accuracy_max": max(accuracies),
        "accuracies": accuracies,
        "accuracy_one_view_mean": statistics.mean(one_view),
        "accuracy_one_view_min": min(one_view),
        "accuracy_one_view_max": max(one_view),
        "accuracies_one_view": one_view,
        "corruption_accuracies": per_corruption,
        "corruption_mean": statistics.mean(per_corruption.values()),
        "corruption_worst": per_corruption[worst],
        "corruption_worst_name": worst,
        "epoch_seconds_median": epoch_seconds,
        "images_per_second": len(train_images) / epoch_seconds,
        "eval_seconds_median": statistics.median(eval_seconds),
        "conventional_epoch_seconds": conventional,
        "speedup_over_conventional": conventional / epoch_seconds,
        "peak_rss_mb": peak_memory_mb(),
        "torch": str(torch.__version__),
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "device": str(device),
        "precision": precision,
        "autocast": str(amp_dtype).removeprefix("torch."),
    }


def markdown_table(figures: dict) -> str:
    """Return the figures as a two-column markdown table."""
    seeds, first, split = figures["seeds"], figures["first_seed"], figures["split"].capitalize()
    rows = [
        ("Parameters", f"{figures['parameters']:,}"),
        (
            f"{split} accuracy with {figures['views']} views, mean ± std over seeds {first} to {first + seeds - 1}",
            f"{figures['accuracy_mean']:.2f}% ± {figures['accuracy_std']:.2f}",
        ),
        (f"{split} accuracy, min / max", f"{figures['accuracy_min']:.2f}% / {figures['accuracy_max']:.2f}%"),
        (
            f"{split} accuracy with one view, mean (min / max)",
            f"{figures['accuracy_one_view_mean']:.2f}% ({figures['accuracy_one_view_min']:.2f}% / "
            f"{figures['accuracy_one_view_max']:.2f}%)",
        ),
        (f"Corruption suite ({len(SUITE)} corruptions), mean accuracy", f"{figures['corruption_mean']:.2f}%"),
        (
            "Worst corruption, mean over seeds",
            f"{figures['corruption_worst']:.2f}% ({figures['corruption_worst_name']})",
        ),
        ("Epochs", str(figures["epochs"])),
        ("Training loop, one epoch (median)", f"{figures['epoch_seconds_median']:.2f} s"),
        ("Training images per second", f"{figures['images_per_second']:,.0f}"),
        (
            f"Scoring {figures['eval_images']:,} {figures['split']} images with {figures['views']} views (median)",
            f"{figures['eval_seconds_median']:.3f} s",
        ),
        ("Conventional input path, one epoch", f"{figures['conventional_epoch_seconds']:.2f} s"),
        ("Speed-up over the conventional path", f"{figures['speedup_over_conventional']:.1f}x"),
        (
            "Peak resident memory of the benchmark",
            PEAK_UNKNOWN if figures["peak_rss_mb"] is None else f"{figures['peak_rss_mb']:,.0f} MB",
        ),
        ("torch, threads", f"{figures['torch']}, {figures['threads']}"),
        ("CPU", figures["cpu"]),
        ("Device, autocast", f"{figures['device']}, {figures['autocast']}"),
    ]
    if figures["quick"]:
        rows.append(("Mode", f"quick: {figures['train_images']:,} training images"))
    lines = ["| Measure | Value |", "| --- | --- |"] + [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


@reports_errors()
def main(argv: list[str] | None = None) -> int:
    """Run bench.py with argv; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=positive_int, help="seeds to train (default: 5, or 2 with --quick)")
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed; the others follow (default: 0)")
    parser.add_argument("--quick", action="store_true", help="a reduced run of seconds on a slice of the data")
    parser.add_argument(
        "--epochs", type=positive_int, default=1, help="epochs per run, with the recipe for them (default: 1)"
    )
    add_validation_option(parser)
    add_recipe_override_option(parser)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    add_data_option(parser)
    add_device_option(parser)
    add_precision_option(parser)
    args = parser.parse_args(argv)
    seeds = args.seeds or (QUICK_SEEDS if args.quick else 5)
    keep_freed_memory()
    if args.json:
        check_writable_folder(args.json.parent)
    device = pick_device(args.device)
    overrides = dict(args.overrides)
    figures = run_benchmark(
        seeds,
        args.quick,
        args.data_dir,
        device,
        args.epochs,
        args.validation,
        overrides,
        args.precision,
        args.first_seed,
    )
    print(markdown_table(figures))
    if args.json:
        write_file(args.json, strict_json(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
