"""mnist_cnn/recipe.py: one recipe per run length, differing only where the length table says, and overrides."""

import re
from dataclasses import asdict

import pytest

from mnist_cnn.recipe import EVERY_DISTORTION, SEARCH_SPACE, WHOLE_BATCH_SHIFT, Recipe, parse_override, recipe_for


@pytest.mark.parametrize(("epochs", "full_resolution"), [(1, False), (2, False), (3, True), (10, True), (15, True)])
def test_runs_of_three_epochs_or_more_get_the_long_settings(epochs: int, full_resolution: bool) -> None:
    recipe = recipe_for(epochs)
    assert recipe.epochs == epochs
    assert recipe.full_resolution is full_resolution
    assert recipe.augmentation == (EVERY_DISTORTION if full_resolution else WHOLE_BATCH_SHIFT)


def test_lengths_differ_only_in_the_fields_of_the_length_table() -> None:
    short, long = asdict(recipe_for(1)), asdict(recipe_for(10))
    differing = {name for name in short if short[name] != long[name]}
    assert differing == {"epochs", "full_resolution", "augmentation"}


def test_overrides_replace_fields_and_unknown_ones_are_refused() -> None:
    assert recipe_for(10, seed=3, batch_size=64) == Recipe(
        epochs=10, seed=3, batch_size=64, full_resolution=True, augmentation=EVERY_DISTORTION
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
    assert Recipe(width=width).channels == channels


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
