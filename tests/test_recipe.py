"""mnist_cnn/recipe.py: one recipe per run length, differing only where the length table says, and overrides."""

import re
from dataclasses import asdict

import pytest

from mnist_cnn.recipe import (
    EVERY_DISTORTION,
    LENGTH_TABLE,
    SEARCH_SPACE,
    VALID_SETTINGS,
    WHOLE_BATCH_SHIFT,
    Recipe,
    parse_override,
    recipe_for,
)


@pytest.mark.parametrize(("epochs", "full_resolution"), [(1, False), (2, False), (3, True), (10, True), (15, True)])
def test_runs_of_three_epochs_or_more_get_the_long_settings(epochs: int, full_resolution: bool) -> None:
    recipe = recipe_for(epochs)
    assert recipe.epochs == epochs
    assert recipe.full_resolution is full_resolution
    assert recipe.augmentation == (EVERY_DISTORTION if full_resolution else WHOLE_BATCH_SHIFT)
    assert recipe.model_channels == ((16, 32, 48) if full_resolution else (16, 16, 64))
    assert recipe.batch_size == (160 if full_resolution else 192)
    assert (recipe.adamw_lr, recipe.muon_lr) == ((0.035, 0.1) if full_resolution else (0.04, 0.11))


def test_lengths_differ_only_in_the_fields_of_the_length_table() -> None:
    short, long = asdict(recipe_for(1)), asdict(recipe_for(10))
    differing = {name for name in short if short[name] != long[name]}
    assert differing == {"epochs", *LENGTH_TABLE[-1][1]}
    long_fields = {"full_resolution", "channels", "batch_size", "adamw_lr", "muon_lr", "augmentation"}
    assert set(LENGTH_TABLE[-1][1]) == long_fields


def test_overrides_replace_fields_and_unknown_ones_are_refused() -> None:
    assert recipe_for(10, seed=3, batch_size=64) == Recipe(
        epochs=10,
        seed=3,
        batch_size=64,
        adamw_lr=0.035,
        muon_lr=0.1,
        full_resolution=True,
        channels=(16, 32, 48),
        augmentation=EVERY_DISTORTION,
    )
    with pytest.raises(TypeError):
        recipe_for(1, learning_rate=0.1)


def test_the_description_names_every_setting() -> None:
    text = recipe_for(10).describe()
    assert text.count("\n") == 1
    for name in ("epoch", "seed", "batch", "AdamW", "Muon", "weight decay", "warm-up", "smoothing", "first layer"):
        assert name in text
    assert "rotation_degrees 5" in text and "5 test-time view(s)" in text and "channels (16, 32, 48)" in text


@pytest.mark.parametrize(("width", "channels"), [(1.0, (16, 32, 48)), (0.5, (8, 16, 24)), (0.25, (4, 8, 12))])
def test_width_scales_the_channels(width: float, channels: tuple[int, int, int]) -> None:
    assert Recipe(width=width, channels=(16, 32, 48)).model_channels == channels


def test_width_scales_the_channels_of_the_length_table() -> None:
    assert recipe_for(1, width=0.5).model_channels == (8, 8, 32)


@pytest.mark.parametrize("channels", [(16, 16), (16, 16, 64, 8), (16, 16.5, 64), [16, 16, 64], (True, True, True), 16])
def test_channels_must_be_a_tuple_of_three_whole_counts(channels: object) -> None:
    with pytest.raises(ValueError, match="channels must be three counts >= 1"):
        Recipe(channels=channels)


@pytest.mark.parametrize(
    ("text", "message"),
    [("channels=16", "channels comes with --epochs"), ("augmentation=none", "augmentation comes with --epochs"),
     ("epochs=3", "the number of epochs is set with --epochs")],
)  # fmt: skip
def test_what_the_length_sets_is_refused_on_the_command_line_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_override(text)


def test_every_searched_field_is_a_recipe_field_inside_its_range() -> None:
    defaults = asdict(recipe_for(1))
    for name, (low, high, scale) in SEARCH_SPACE.items():
        assert name in defaults and low < high and scale in ("log", "linear", "int"), name
        assert low <= defaults[name] <= high, f"{name}: the default {defaults[name]} is outside the searched range"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("label_smoothing=0.05", ("label_smoothing", 0.05)), ("batch_size=64", ("batch_size", 64)),
     ("full_resolution=True", ("full_resolution", True))],
)  # fmt: skip
def test_overrides_are_read_with_the_fields_type(text: str, expected: tuple) -> None:
    assert parse_override(text) == expected


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"warmup_fraction": 1.0}, "warmup_fraction must be in (0, 1)"),
        ({"width": -1.0}, "width must be in (0, 4]"),
        ({"adamw_lr": float("inf")}, "adamw_lr must be in (0, inf)"),
    ],
)
def test_a_recipe_no_run_can_train_is_refused(setting: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Recipe(**setting)


# Each check of VALID_SETTINGS with a value just inside its line and one just outside.
LINES = [
    ("epochs", 1, 0),
    ("batch_size", 1, 0),
    ("adamw_lr", 1e-9, 0.0),
    ("adamw_lr", 1e9, float("inf")),
    ("muon_lr", 1e-9, 0.0),
    ("muon_lr", 1e9, float("nan")),
    ("muon_momentum", 0.0, -1e-9),
    ("muon_momentum", 0.999, 1.0),
    ("weight_decay", 0.0, -1e-9),
    ("weight_decay", 1e9, float("inf")),
    ("warmup_fraction", 1e-9, 0.0),
    ("warmup_fraction", 0.999, 1.0),
    ("label_smoothing", 0.0, -1e-9),
    ("label_smoothing", 0.999, 1.0),
    ("width", 1e-3, 0.0),
    ("width", 4.0, 4.001),
    ("channels", (1, 1, 1), (1, 0, 1)),
    ("first_padding", 0, -1),
    ("first_padding", 2, 3),
    ("first_padding", 1, True),
    ("hard_example_share", 0.0, -1e-9),
    ("hard_example_share", 1.0, 1.001),
    ("hard_examples_from", 0.0, -1e-9),
    ("hard_examples_from", 1.0, 1.001),
    ("test_time_views", 1, 2),
    ("test_time_views", 5, 4),
]


@pytest.mark.parametrize(("name", "inside", "outside"), LINES)
def test_every_setting_is_checked_at_its_line(name: str, inside: float, outside: float) -> None:
    assert getattr(Recipe(**{name: inside}), name) == inside
    with pytest.raises(ValueError, match=f"^{name} must be "):
        Recipe(**{name: outside})


def test_every_checked_setting_is_tried_at_its_line() -> None:
    assert {name for name, _, _ in LINES} == set(VALID_SETTINGS)
