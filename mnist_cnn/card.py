"""The model card: Markdown with Hugging Face front matter, written beside every checkpoint from its run's figures."""

import torch
import yaml

from mnist_cnn.data import MNIST_MEAN, MNIST_STD
from model import INPUT_SHAPE, PARAMETER_BUDGET, MnistCNN, count_parameters

CARD_SECTIONS = (
    "## Model",
    "## Intended use and limits",
    "## Training",
    "## Evaluation",
    "## Files and how to load them safely",
)


def layer_rows(model: MnistCNN) -> list[tuple[str, str, int]]:
    """Return (layer, output shape, parameters) for each layer of model, found by passing one image through it."""
    rows = []
    inputs = torch.zeros((1, *INPUT_SHAPE), device=next(model.parameters()).device)
    layers = [*model.features, model.flatten, model.classifier]
    with torch.no_grad():
        for layer in layers:
            inputs = layer(inputs)
            rows.append((str(layer), " x ".join(map(str, inputs.shape[1:])), count_parameters(layer)))
    return rows


def front_matter(metadata: dict) -> str:
    """Return the card's YAML front matter in the form Hugging Face reads, with the test accuracy as a result."""
    split = metadata["metrics"]["split"]
    accuracy = metadata["metrics"][f"{split}_accuracy"]
    views = metadata["recipe"]["test_time_views"]
    fields = {
        "license": "mit",
        "library_name": "pytorch",
        "tags": ["image-classification", "mnist", "handwritten-digits", "cnn", "onnx"],
        "datasets": ["mnist"],
        "metrics": ["accuracy"],
        "model-index": [
            {
                "name": "mnist-cnn",
                "results": [
                    {
                        "task": {"type": "image-classification", "name": "Image classification"},
                        "dataset": {"name": "MNIST", "type": "mnist", "split": split},
                        "metrics": [
                            {
                                "type": "accuracy",
                                "value": round(accuracy, 4),
                                "name": f"{split.capitalize()} accuracy (%), {views} view(s)",
                            }
                        ],
                    }
                ],
            }
        ],
    }
    return "---\n" + yaml.safe_dump(fields, sort_keys=False) + "---\n"


def views_sentence(views: int) -> str:
    """Return the card's sentence on how many views of each image the project's scripts read by default."""
    if views == 1:
        return "The project's scripts read each image once by default (`--views 5` adds its four one-pixel shifts)."
    return (
        f"The project's scripts read each image {views} times by default: the image and its four one-pixel "
        "shifts, logits averaged (`--views 1` turns that off)."
    )


def model_card(metadata: dict, model: MnistCNN, name: str) -> str:
    """Return the model card of the checkpoint called name, built from its metadata and weights alone."""
    metrics, config, recipe = metadata["metrics"], metadata["config"], metadata["recipe"]
    split = metrics["split"]
    evaluated_on = (
        "the 10,000 MNIST test images, which never trained the model nor chose its recipe"
        if split == "test"
        else f"the last {metrics['validation_images']:,} MNIST training images, held out (the validation split)"
    )
    versions, machine = metadata["versions"], metadata.get("machine", {})
    layers = "\n".join(f"| `{layer}` | {shape} | {count:,} |" for layer, shape, count in layer_rows(model))
    per_class = "\n".join(
        f"| {digit} | {accuracy:.2f}% |" for digit, accuracy in enumerate(metrics.get("per_class_accuracy", []))
    )
    commit = metadata.get("git_commit") or "unknown (not run from a git checkout)"
    optimisers = (
        f"Muon (orthogonalised momentum {recipe['muon_momentum']}) for the later convolutions, peak lr "
        f"{recipe['muon_lr']}; AdamW for the rest, peak lr {recipe['adamw_lr']}, weight decay "
        f"{recipe['weight_decay']}; one-cycle schedules, warm-up {recipe['warmup_fraction']}; label smoothing "
        f"{recipe['label_smoothing']}"
    )
    precision = config.get("precision", "auto")
    device = (
        f"{config.get('device')}, {config.get('autocast') or 'float32'} (--precision {precision}); "
        f"CPU {machine.get('cpu', 'unknown')}, {machine.get('threads', 'unknown')} threads"
    )
    training_rows = [
        ("optimisers", optimisers),
        ("data", f"{metrics['train_images']:,} MNIST training images, whole batches on the device"),
        ("batch size, epochs, seed", f"{recipe['batch_size']}, {recipe['epochs']}, {recipe['seed']}"),
        ("whole recipe", "under `recipe` in the JSON beside this card"),
        ("training time", f"{metrics['train_seconds']:.1f} s"),
        ("device", device),
        ("versions", f"Python {versions['python']}, torch {versions['torch']}, torchvision {versions['torchvision']}"),
        ("commit", f"`{commit}`"),
        ("written", str(metadata.get("timestamp", "unknown"))),
    ]
    training = "\n".join(["| | |", "| --- | --- |", *(f"| {item} | {value} |" for item, value in training_rows)])
    return f"""{front_matter(metadata)}
# MnistCNN: `{name}`

A small convolutional network that reads one handwritten digit, a 28x28 greyscale image, and
returns ten logits, one per digit. This card was written by `train.py` from the run's own figures.

## Model

{count_parameters(model):,} parameters (the project's budget is under {PARAMETER_BUDGET:,}). Input: a float32
tensor of shape (N, 1, 28, 28), pixels scaled to [0, 1], then normalised with MNIST's mean {MNIST_MEAN}
and standard deviation {MNIST_STD}; a light digit on a dark background, as in MNIST. Output: logits of
shape (N, 10) for the image alone. {views_sentence(recipe["test_time_views"])}

| layer | output shape | parameters |
| --- | --- | --- |
{layers}

## Intended use and limits

- Intended for centred, MNIST-like digits: one digit per image, light on dark, about 20x20 pixels
  in a 28x28 field. Teaching, demonstrations and testing pipelines are its purpose.
- `predict.py` prepares other images (photos, scans, drawings, in any file kind Pillow opens) the
  way MNIST was prepared: it finds the ink against the paper's local brightness, crops to the
  digit, brings the strokes to MNIST's thickness and centres the digit. It fails where that
  preparation fails: several digits or other writing in one image, a digit touching other marks,
  ink as faint as the paper's texture, or a shape MNIST's writers did not use.
- Trained with label smoothing {recipe["label_smoothing"]}: the softmax probabilities top out
  near 95% and are not calibrated confidences.
- Not for anything that decides about people (identity, grading, access, money): it was trained on
  one data set of digits and has not been audited for such use.

## Training

{training}

## Evaluation

On {evaluated_on}: {split} accuracy **{metrics[f"{split}_accuracy"]:.2f}%**, {split} loss
{metrics[f"{split}_loss"]:.4f} (cross-entropy) with {recipe["test_time_views"]} view(s);
{metrics[f"{split}_accuracy_one_view"]:.2f}% and {metrics[f"{split}_loss_one_view"]:.4f} with the image alone.
Train accuracy over the last epoch, while training with label smoothing: {metrics["train_accuracy"]:.2f}%.

| digit | {split} accuracy |
| --- | --- |
{per_class}

## Files and how to load them safely

- `{name}.pt`: the weights and this run's metadata. Load it with the project's
  `mnist_cnn.checkpoint.load_checkpoint(path, device)`, which calls `torch.load(path, weights_only=True)`
  (it never runs code from the file) and builds `MnistCNN(**checkpoint["architecture"])`, here
  `MnistCNN(full_resolution={model.full_resolution}, channels={model.channels}, first_padding={model.first_padding})`.
- `{name}.json`: the same metadata without the weights (strict JSON).
- `{name}.onnx`: written by `python export.py --checkpoint {name}.pt`; runs with onnxruntime, NumPy
  and Pillow alone, no PyTorch needed. Its metadata holds the test accuracy, the mean and the std.
"""
