"""mnist_cnn/card.py: every checkpoint gets a model card whose front matter and sections hold the run's figures."""

import json
import re

import pytest
import torch
import yaml

import train
from mnist_cnn.card import CARD_SECTIONS, layer_rows, model_card
from mnist_cnn.checkpoint import load_checkpoint
from model import MnistCNN, count_parameters


def card_parts(trained: train.TrainResult) -> tuple[dict, str]:
    """Return the session run's card as its parsed YAML front matter and its Markdown body."""
    text = trained.checkpoint_path.with_suffix(".md").read_text()
    assert text.startswith("---\n")
    header, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(header), body


def test_front_matter_holds_the_runs_test_accuracy(trained: train.TrainResult) -> None:
    front, _ = card_parts(trained)
    stored = json.loads(trained.metadata_path.read_text())
    assert front["license"] == "mit" and front["library_name"] == "pytorch"
    assert front["datasets"] == ["mnist"] and front["metrics"] == ["accuracy"] and front["tags"]
    result = front["model-index"][0]["results"][0]
    assert result["task"]["type"] == "image-classification"
    assert result["dataset"]["type"] == "mnist" and result["dataset"]["split"] == "test"
    assert result["metrics"][0]["type"] == "accuracy"
    assert result["metrics"][0]["value"] == round(stored["metrics"]["test_accuracy"], 4)


def test_body_has_every_section_with_the_runs_figures(trained: train.TrainResult) -> None:
    _, body = card_parts(trained)
    positions = [body.index(section) for section in CARD_SECTIONS]
    assert positions == sorted(positions)
    metrics, name = trained.metadata["metrics"], trained.checkpoint_path.stem
    assert f"test accuracy **{metrics['test_accuracy']:.2f}%**" in body
    assert f"{metrics['test_accuracy_one_view']:.2f}% and {metrics['test_loss_one_view']:.4f} with" in body
    assert f"{trained.metadata['num_parameters']:,} parameters" in body
    assert f"`{name}.pt`" in body and f"`{name}.onnx`" in body and "weights_only=True" in body
    rows = re.findall(r"^\| (\d) \| (\d+\.\d\d)% \|", body, re.MULTILINE)
    assert [int(digit) for digit, _ in rows] == list(range(10))
    per_digit = [float(accuracy) for _, accuracy in rows]
    assert per_digit == pytest.approx(metrics["per_class_accuracy"], abs=0.005)
    assert sum(per_digit) / 10 == pytest.approx(metrics["test_accuracy"], abs=0.5)  # ~1,000 images per digit
    assert trained.metadata["versions"]["torch"] in body
    assert "not for anything that decides about people" in body.lower()


def test_layer_table_adds_up_to_the_model() -> None:
    model = MnistCNN()
    rows = layer_rows(model)
    assert sum(count for _, _, count in rows) == count_parameters(model)
    assert rows[-1][1] == "10"


def test_a_one_view_recipe_describes_one_view(trained: train.TrainResult) -> None:
    network, _ = load_checkpoint(trained.checkpoint_path, torch.device("cpu"))
    one_view = {**trained.metadata, "recipe": {**trained.metadata["recipe"], "test_time_views": 1}}
    card = model_card(one_view, network, "one-view")
    assert "read each image once by default (`--views 5` adds its four one-pixel shifts)" in card
    assert "logits averaged" not in card and "with 1 view(s);" in card
    assert "read each image 5 times by default" in model_card(trained.metadata, network, "five")
