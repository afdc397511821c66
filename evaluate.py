"""Evaluate a checkpoint on the 10,000 MNIST test images: accuracy, loss, per-class accuracy, confusion matrix."""

import argparse
import io
import sys
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from mnist_cnn.checkpoint import load_checkpoint, newest_checkpoint, provenance, views_to_read
from mnist_cnn.cli import add_views_option, reports_errors, wants_progress
from mnist_cnn.data import MNIST_MEAN, MNIST_STD, add_data_option, load_mnist
from mnist_cnn.device import add_device_option, autocast_dtype, pick_device
from mnist_cnn.files import check_writable_folder, strict_json, write_file
from mnist_cnn.scoring import confusion_matrix, corruption_accuracies, per_class_accuracy, score
from model import IMAGE_SIDE, NUM_CLASSES

CELL_PIXELS = 44
MISCLASSIFIED_SCALE = 2
MISCLASSIFIED_COLUMNS = 16
MAX_MISCLASSIFIED = 128


def format_corruptions(accuracies: dict[str, float]) -> str:
    """Return the printed table of accuracy per corruption with the mean and the worst."""
    width = max(map(len, accuracies))
    lines = ["accuracy under corruption (the suite of mnist_cnn/corruptions.py)"]
    lines += [f"  {name:<{width}}  {accuracy:6.2f}%" for name, accuracy in accuracies.items()]
    lines.append(f"  {'mean':<{width}}  {sum(accuracies.values()) / len(accuracies):6.2f}%")
    lines.append(f"  {'worst':<{width}}  {min(accuracies.values()):6.2f}%")
    return "\n".join(lines)


def format_report(metrics: dict) -> str:
    """Return the printed report: accuracy, loss, per-class accuracy and the aligned confusion matrix."""
    lines = [
        f"checkpoint     {metrics['checkpoint']}",
        f"test accuracy  {metrics['test_accuracy']:.2f}%  ({metrics['errors']} of {metrics['images']} wrong, "
        f"{metrics['views']} view(s) of each image)",
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
    tile = IMAGE_SIDE * MISCLASSIFIED_SCALE
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
    path: Path, data_dir: str, device: torch.device, views: int | None, progress: bool, with_corruptions: bool = False
) -> tuple[dict, tuple]:
    """Return the metrics of the checkpoint at path on the test set, and the (images, labels, predicted) behind them.

    Each image is read through views views (1, or 5 with the test-time shifts; None: as the checkpoint's
    recipe says). with_corruptions adds the accuracy under each corruption of the suite, their mean and the worst.
    """
    model, metadata = load_checkpoint(path, device)
    views = views_to_read(views, metadata)
    images, labels = load_mnist(data_dir, train=False, device=device)
    tested = score(model, images, labels, autocast_dtype(device), views, progress)
    matrix = confusion_matrix(labels, tested.predicted)
    metrics = {
        "checkpoint": str(path),
        "views": views,
        "images": len(labels),
        "errors": int((labels != tested.predicted).sum()),
        "test_accuracy": tested.accuracy,
        "test_loss": tested.loss,
        "per_class_accuracy": per_class_accuracy(matrix),
        "confusion_matrix": matrix.tolist(),
        "torchvision": provenance()["versions"]["torchvision"],
    }
    if with_corruptions:
        corruptions = corruption_accuracies(model, images, labels, autocast_dtype(device), views)
        metrics |= {
            "corruptions": corruptions,
            "corruption_mean": sum(corruptions.values()) / len(corruptions),
            "corruption_worst": min(corruptions.values()),
        }
    return metrics, (images, labels, tested.predicted)


@reports_errors()
def main(argv: list[str] | None = None) -> int:
    """Run evaluate.py with argv; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="checkpoint to evaluate (default: the newest in models/)")
    add_data_option(parser)
    add_device_option(parser)
    add_views_option(parser)
    parser.add_argument(
        "--report", type=Path, help="write metrics.json, confusion_matrix.png and misclassified.png here"
    )
    parser.add_argument(
        "--corruptions", action="store_true", help="also measure accuracy under each corruption of the suite"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.report:
        check_writable_folder(args.report)
    device = pick_device(args.device)
    path = args.checkpoint or newest_checkpoint()
    progress = wants_progress(args.no_progress)
    metrics, tensors = evaluate_checkpoint(path, args.data_dir, device, args.views, progress, args.corruptions)
    print(format_report(metrics))
    if args.corruptions:
        print("\n" + format_corruptions(metrics["corruptions"]))
    if args.report:
        write_report(args.report, metrics, *tensors)
        print(f"\nreport written to {args.report}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
