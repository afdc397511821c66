"""model.py: parameter budget, one set of logits an image in every mode, refusal of wrong input shapes."""

import pytest
import torch

from conftest import ROOT
from mnist_cnn.recipe import build_model, recipe_for
from model import PARAMETER_BUDGET, MnistCNN, PerImageStandardize, count_parameters
from tools.gate import read_thresholds


@pytest.mark.parametrize("epochs", [1, 3])
def test_parameter_count_of_each_length_is_under_the_gates_budget(epochs: int) -> None:
    budget = read_thresholds(ROOT / "gate.toml").parameter_budget  # the one place the gate reads it
    assert count_parameters(build_model(recipe_for(epochs))) < budget
    assert PARAMETER_BUDGET == budget  # what tune.py and the model card say agrees with the gate


def test_count_parameters_counts_only_trainable_ones() -> None:
    model = MnistCNN()
    total = sum(p.numel() for p in model.parameters())
    model.classifier.weight.requires_grad_(False)
    assert count_parameters(model) == total - model.classifier.weight.numel()


@pytest.mark.parametrize("full_resolution", [False, True])
@pytest.mark.parametrize("batch", [1, 2, 7, 64])
def test_ten_logits_an_image(batch: int, full_resolution: bool) -> None:
    model = MnistCNN(full_resolution).eval()
    assert model(torch.randn(batch, 1, 28, 28)).shape == (batch, 10)


@pytest.mark.parametrize("shape", [(1, 28, 28), (2, 3, 28, 28), (2, 1, 32, 32), (0, 1, 28, 28), (4, 784)])
def test_wrong_input_shape_raises_value_error(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)") as raised:
        MnistCNN()(torch.randn(shape))
    assert str(tuple(shape)) in str(raised.value)


def test_brightness_and_contrast_cannot_move_the_input() -> None:
    model = MnistCNN().eval()
    images = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(0.5 * images + 0.3), model(images), rtol=1e-2, atol=5e-3)


def test_a_checkpoint_of_the_model_without_standardisation_does_not_load() -> None:
    state = {name: tensor for name, tensor in MnistCNN().state_dict().items() if not name.endswith("eps")}
    with pytest.raises(RuntimeError, match="Missing key"):
        MnistCNN().load_state_dict(state)


@pytest.mark.parametrize("full_resolution", [False, True])
def test_eval_mode_reads_each_image_alone_as_training_mode_does(full_resolution: bool) -> None:
    model = MnistCNN(full_resolution)
    images = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        model.eval()
        alone = torch.cat([model(image[None]) for image in images])
        torch.testing.assert_close(model(images), alone, rtol=1e-4, atol=1e-5)


def test_narrower_channels_mean_fewer_parameters() -> None:
    narrow = MnistCNN(channels=(8, 16, 24))
    assert count_parameters(narrow) < count_parameters(MnistCNN(channels=(16, 32, 48))) / 3
    assert narrow(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_standardisation_gives_each_image_the_mean_and_deviation_of_torchs_formula() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(6, 1, 28, 28, generator=generator) * torch.arange(1, 7).view(6, 1, 1, 1) + 3
    layer = PerImageStandardize()
    expected = (images - images.mean((1, 2, 3), keepdim=True)) / (images.std((1, 2, 3), keepdim=True) + layer.eps)
    torch.testing.assert_close(layer(images), expected)


@pytest.mark.parametrize(("padding", "side"), [(0, 12), (1, 13), (2, 14)])
def test_the_first_padding_sets_the_side_of_the_first_maps(padding: int, side: int) -> None:
    first_layer = MnistCNN(first_padding=padding).features[:3]  # standardisation, strided convolution, ReLU
    assert first_layer(torch.randn(2, 1, 28, 28)).shape == (2, 16, side, side)


@pytest.mark.parametrize("padding", [-1, 3, True, 1.0, "1"])
def test_a_first_padding_past_half_the_kernel_or_not_a_whole_number_is_refused(padding: object) -> None:
    with pytest.raises(ValueError, match=r"first_padding must be one of \(0, 1, 2\)"):
        MnistCNN(first_padding=padding)


@pytest.mark.parametrize("full_resolution", [False, True])
def test_the_gradient_of_channels_last_features_comes_back_channels_last(full_resolution: bool) -> None:
    model = MnistCNN(full_resolution).to(memory_format=torch.channels_last)
    features = model.features(torch.randn(4, 1, 28, 28).to(memory_format=torch.channels_last))
    layouts = []
    features.register_hook(lambda grad: layouts.append(grad.is_contiguous(memory_format=torch.channels_last)))
    model.classifier(model.flatten(features)).sum().backward()
    assert layouts == [True]


def test_the_classifier_reads_each_positions_channels_together() -> None:
    maps = torch.arange(2 * 3 * 2 * 2).view(2, 3, 2, 2)
    assert MnistCNN().flatten(maps)[0, :6].tolist() == [0, 4, 8, 1, 5, 9]  # position (0, 0), then (0, 1)


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        ({"channels": (16, 16, 0)}, "channels must be three whole numbers"),
        ({"channels": (16, 16)}, "channels must be three whole numbers"),
        ({"channels": (16, 16.0, 64)}, "channels must be three whole numbers"),
        ({"full_resolution": "no"}, "full_resolution must be True or False"),
    ],
)
def test_an_architecture_no_model_can_have_is_refused(arguments: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        MnistCNN(**arguments)


def test_channels_as_a_list_build_the_same_model() -> None:
    assert MnistCNN(channels=[8, 16, 24]).channels == (8, 16, 24)
