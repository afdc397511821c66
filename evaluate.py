"""Evaluate a checkpoint on the 10,000 MNIST test images: accuracy, loss, per-class accuracy, confusion matrix."""

import argparse
import io
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import nn
from tqdm import tqdm

from checkpoint import CheckpointError, load_checkpoint, newest_checkpoint, provenance
from corruptions import SUITE, corrupted
from data import MNIST_MEAN, MNIST_STD, DataError, add_data_option, load_mnist
from device import DeviceError, add_device_option, autocast_dtype, pick_device
from files import WriteError, check_writable_folder, strict_json, write_file
from model import NUM_CLASSES

EVAL_BATCH_SIZE = 200  # images a forward pass; the model in eval mode reads five views of each
CELL_PIXELS = 44
MISCLASSIFIED_SCALE = 2
MISCLASSIFIED_COLUMNS = 16
MAX_MISCLASSIFIED = 128


@torch.inference_mode()
def score(
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


def corruption_accuracies(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, amp_dtype: torch.dtype | None
) -> dict[str, float]:
    """Return the accuracy in % of model on normalised images under each corruption of the suite."""
    pixels = images.float() * MNIST_STD + MNIST_MEAN
    accuracies = {}
    for name in SUITE:
        inputs = ((corrupted(pixels, name) - MNIST_MEAN) / MNIST_STD).contiguous(memory_format=torch.channels_last)
        accuracies[name] = score(model, inputs, labels, amp_dtype, progress=False)[1]
    return accuracies


def format_corruptions(accuracies: dict[str, float]) -> str:
    """Return the printed table of accuracy per corruption with the mean and the worst."""
    width = max(map(len, accuracies))
    lines = ["accuracy under corruption (the suite of corruptions.py)"]
    lines += [f"  {name:<{width}}  {accuracy:6.2f}%" for name, accuracy in accuracies.items()]
    lines.append(f"  {'mean':<{width}}  {sum(accuracies.values()) / len(accuracies):6.2f}%")
    lines.append(f"  {'worst':<{width}}  {min(accuracies.values()):6.2f}%")
    return "\n".join(lines)


def confusion_matrix(labels: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
    """Return the 10x10 matrix of counts: rows are true digits, columns predicted digits."""
    pairs = labels.cpu() * NUM_CLASSES + predicted.cpu()
    return torch.bincount(pairs, minlength=NUM_CLASSES**2).view(NUM_CLASSES, NUM_CLASSES)


def per_class_accuracy(matrix: torch.Tensor) -> list[float]:
    """Return the accuracy in % for each digit from a confusion matrix."""
    return (100 * matrix.diagonal() / matrix.sum(1)).tolist()


def format_report(metrics: dict) -> str:
    """Return the printed report: accuracy, loss, per-class accuracy and the aligned confusion matrix."""
    lines = [
        f"checkpoint     {metrics['checkpoint']}",
        f"test accuracy  {metrics['test_accuracy']:.2f}%  ({metrics['errors']} of {metrics['images']} wrong)",
        f"test loss      {metrics['test_loss']:.4f}",
        "",
        "per-class accuracy",
    ]
    lines += [f"  {digit}  {accuracy:6.2f}%" for digit, accuracy in enumerate(metrics["per_class_accuracy"])]
    lines += ["", "confusion matrix (rows: true digit, columns: predicted)"]
    lines.append("true " + "".join(f"{digit:>6}" for digit in range(NUM_CLASSES)))
    lines += [
        f"{digit:>4} " + "".join(f"{count:>6}" for count in row)
        for digit, row in enumerate(metrics["confusion_matrix"])
    ]
    return "\n".join(lines)


def draw_confusion_matrix(matrix: torch.Tensor) -> Image.Image:
    """Return a picture of the matrix: one shaded cell per count, the count written in it, digits on both axes."""
    font = ImageFont.load_default()
    size = CELL_PIXELS * (NUM_CLASSES + 1)
    image = Image.new("RGB", (size, size + CELL_PIXELS // 2), "white")
    draw = ImageDraw.Draw(image)
    draw.text((size // 2, 2), "predicted digit", fill="black", font=font, anchor="ma")
    draw.text((CELL_PIXELS // 2, CELL_PIXELS), "true", fill="black", font=font, anchor="mm")
    top = CELL_PIXELS // 2
    scale = torch.log1p(matrix.float()) / torch.log1p(matrix.float().max()).clamp(min=1e-6)
    for digit in range(NUM_CLASSES):
        centre = CELL_PIXELS * (digit + 1) + CELL_PIXELS // 2
        draw.text((centre, top + CELL_PIXELS // 2), str(digit), fill="black", font=font, anchor="mm")
        draw.text((CELL_PIXELS // 2, top + centre), str(digit), fill="black", font=font, anchor="mm")
    for row in range(NUM_CLASSES):
        for column in range(NUM_CLASSES):
            left, upper = CELL_PIXELS * (column + 1), top + CELL_PIXELS * (row + 1)
            shade = int(255 * (1 - scale[row, column].item()))
            fill = (shade, shade, 255) if row == column else (255, shade, shade)
            draw.rectangle([left, upper, left + CELL_PIXELS - 1, upper + CELL_PIXELS - 1], fill=fill, outline="grey")
            text_colour = "white" if shade < 110 else "black"
            centre = (left + CELL_PIXELS // 2, upper + CELL_PIXELS // 2)
            draw.text(centre, str(matrix[row, column].item()), fill=text_colour, font=font, anchor="mm")
    return image


def draw_misclassified(images: torch.Tensor, labels: torch.Tensor, predicted: torch.Tensor) -> Image.Image:
    """Return a grid of the misclassified images, each captioned '<true digit> as <predicted digit>'."""
    wrong = (labels != predicted).nonzero().flatten()[:MAX_MISCLASSIFIED].cpu()
    font = ImageFont.load_default()
    tile = 28 * MISCLASSIFIED_SCALE
    caption = 14
    columns = max(1, min(MISCLASSIFIED_COLUMNS, len(wrong)))
    rows = max(1, -(-len(wrong) // columns))
    sheet = Image.new("L", (columns * (tile + 4), rows * (tile + caption + 4)), 255)
    draw = ImageDraw.Draw(sheet)
    pixels = (images[wrong].float().cpu() * MNIST_STD + MNIST_MEAN).clamp(0, 1)
    for position, (index, picture) in enumerate(zip(wrong.tolist(), pixels, strict=True)):
        left, upper = (position % columns) * (tile + 4) + 2, (position // columns) * (tile + caption + 4) + 2
        digit = Image.fromarray((255 * (1 - picture[0])).byte().numpy(), mode="L").resize((tile, tile))
        sheet.paste(digit, (left, upper))
        text = f"{labels[index].item()} as {predicted[index].item()}"
        draw.text((left + tile // 2, upper + tile + 1), text, fill=0, font=font, anchor="ma")
    return sheet


def write_report(
    folder: Path, metrics: dict, images: torch.Tensor, labels: torch.Tensor, predicted: torch.Tensor
) -> None:
    """Write metrics.json (strict JSON), confusion_matrix.png and misclassified.png into folder, each whole."""
    pictures = {
        "confusion_matrix.png": draw_confusion_matrix(torch.tensor(metrics["confusion_matrix"])),
        "misclassified.png": draw_misclassified(images, labels, predicted),
    }
    write_file(folder / "metrics.json", strict_json(metrics))
    for name, picture in pictures.items():
        encoded = io.BytesIO()
        picture.save(encoded, format="PNG")
        write_file(folder / name, encoded.getvalue())


def evaluate_checkpoint(
    path: Path, data_dir: str, device: torch.device, progress: bool, with_corruptions: bool = False
) -> tuple[dict, tuple]:
    """Return the metrics of the checkpoint at path on the test set, and the (images, labels, predicted) behind them.

    with_corruptions adds the accuracy under each corruption of the suite, their mean and the worst.
    """
    model, _ = load_checkpoint(path, device)
    images, labels = load_mnist(data_dir, train=False, device=device)
    loss, accuracy, predicted = score(model, images, labels, autocast_dtype(device), progress)
    matrix = confusion_matrix(labels, predicted)
    metrics = {
        "checkpoint": str(path),
        "images": len(labels),
        "errors": int((labels != predicted).sum()),
        "test_accuracy": accuracy,
        "test_loss": loss,
        "per_class_accuracy": per_class_accuracy(matrix),
        "confusion_matrix": matrix.tolist(),
        "torchvision": provenance()["versions"]["torchvision"],
    }
    if with_corruptions:
        corruptions = corruption_accuracies(model, images, labels, autocast_dtype(device))
        metrics |= {
            "corruptions": corruptions,
            "corruption_mean": sum(corruptions.values()) / len(corruptions),
            "corruption_worst": min(corruptions.values()),
        }
    return metrics, (images, labels, predicted)


def main(argv: list[str] | None = None) -> int:
    """Run evaluate.py with argv; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", type=Path, help="checkpoint to evaluate (default: the newest in models/)")
    add_data_option(parser)
    add_device_option(parser)
    parser.add_argument(
        "--report", type=Path, help="write metrics.json, confusion_matrix.png and misclassified.png here"
    )
    parser.add_argument(
        "--corruptions", action="store_true", help="also measure accuracy under each corruption of the suite"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        if args.report:
            check_writable_folder(args.report)
        device = pick_device(args.device)
        path = args.checkpoint or newest_checkpoint(Path("models"))
        progress = not args.no_progress and sys.stderr.isatty()
        metrics, tensors = evaluate_checkpoint(path, args.data_dir, device, progress, args.corruptions)
        print(format_report(metrics))
        if args.corruptions:
            print("\n" + format_corruptions(metrics["corruptions"]))
        if args.report:
            write_report(args.report, metrics, *tensors)
            print(f"\nreport written to {args.report}/")
    except (CheckpointError, DataError, DeviceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except WriteError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
