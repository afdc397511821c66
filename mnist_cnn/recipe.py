"""The training recipe: every setting of a run in one frozen object, and what changes with the number of epochs."""

import math
from dataclasses import asdict, dataclass, field, fields, replace

from mnist_cnn.inference import VIEW_CHOICES
from model import CHANNELS, FIRST_PADDING, FIRST_PADDINGS, MnistCNN, is_channel_counts, is_first_padding


@dataclass(frozen=True)
class Augmentation:
    """How strongly each training batch is distorted on the device (mnist_cnn/augment.py does it).

    With rotation, scale or shear every image gets its own random affine map; with a shift alone the
    whole batch moves by one random whole-pixel offset. Blur and thickness are the shares of images
    blurred, and thickened or thinned; noise is the largest standard deviation of added noise.
    """

    rotation_degrees: float = 0.0
    scale: float = 0.0
    shear: float = 0.0
    shift_pixels: float = 2.0
    noise: float = 0.0
    blur_fraction: float = 0.0
    thickness_fraction: float = 0.0


WHOLE_BATCH_SHIFT = Augmentation()
EVERY_DISTORTION = Augmentation(
    rotation_degrees=5.0,
    scale=0.05,
    shear=0.05,
    shift_pixels=1.5,
    noise=0.1,
    blur_fraction=0.05,
    thickness_fraction=0.05,
)


def finite_between(low: float, high: float, low_open: bool = False, high_open: bool = False) -> tuple:
    """Return a check that a number is finite and within [low, high] (or open at either end) and its wording."""

    def is_valid(value: float) -> bool:
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        return math.isfinite(value) and above and below

    return is_valid, f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


VALID_SETTINGS = {
    "epochs": (lambda value: value >= 1, "at least 1"),
    "batch_size": (lambda value: value >= 1, "at least 1"),
    "adamw_lr": finite_between(0, math.inf, low_open=True, high_open=True),
    "muon_lr": finite_between(0, math.inf, low_open=True, high_open=True),
    "muon_momentum": finite_between(0, 1, high_open=True),
    "weight_decay": finite_between(0, math.inf, high_open=True),
    "warmup_fraction": finite_between(0, 1, low_open=True, high_open=True),
    "label_smoothing": finite_between(0, 1, high_open=True),
    "width": finite_between(0, 4, low_open=True),
    "channels": (is_channel_counts, "three counts >= 1"),
    "first_padding": (is_first_padding, f"one of {FIRST_PADDINGS}"),
    "hard_example_share": finite_between(0, 1),
    "hard_examples_from": finite_between(0, 1),
    "test_time_views": (lambda value: value in VIEW_CHOICES, f"one of {VIEW_CHOICES}"),
}


@dataclass(frozen=True)
class Recipe:
    """Every setting of a training run. train.py prints it and stores it whole beside the weights.

    Muon trains the convolutions that batch norm follows; AdamW trains the rest (the first layer, the
    batch norms, the classifier). Both follow one-cycle schedules that warm up over warmup_fraction
    of the steps. From hard_examples_from (a share of the run, see train.hard_example_start) the
    images are drawn with replacement: hard_example_share of the chance in proportion to each
    image's loss over its batch's mean loss when last trained on (relative_losses; false: the loss
    itself), the rest evenly (mnist_cnn/hard_examples.py). test_time_views is how many views of
    each image inference averages by default: 1, or 5 (the image and its four one-pixel shifts).
    channels are the widths of the model's three convolutions at width 1.0; width scales them.
    first_padding is the strided first layer's zero padding (unused at full resolution).
    """

    epochs: int = 1
    seed: int = 0
    batch_size: int = 192
    adamw_lr: float = 0.04
    muon_lr: float = 0.11
    muon_momentum: float = 0.75
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.25
    label_smoothing: float = 0.1
    full_resolution: bool = False
    width: float = 1.0
    channels: tuple[int, int, int] = CHANNELS
    first_padding: int = FIRST_PADDING
    augmentation: Augmentation = field(default=WHOLE_BATCH_SHIFT)
    hard_example_share: float = 0.5
    hard_examples_from: float = 0.5
    relative_losses: bool = True
    test_time_views: int = 5

    def __post_init__(self) -> None:
        """Raise ValueError for a setting no run can train with, naming the field and what it must be."""
        for name, (is_valid, requirement) in VALID_SETTINGS.items():
            value = getattr(self, name)
            if not is_valid(value):
                raise ValueError(f"{name} must be {requirement}, got {value}")

    @property
    def model_channels(self) -> tuple[int, int, int]:
        """Return the widths of the model's three convolutions: channels scaled by width."""
        first, second, third = (max(1, round(count * self.width)) for count in self.channels)
        return first, second, third

    def describe(self) -> str:
        """Return the recipe as two short lines for a run's log."""
        first_layer = "full-resolution 3x3" if self.full_resolution else f"strided 5x5, padding {self.first_padding}"
        distortions = ", ".join(f"{key} {value:g}" for key, value in asdict(self.augmentation).items() if value)
        return (
            f"recipe: {self.epochs} epoch(s), seed {self.seed}, batch {self.batch_size}, AdamW lr {self.adamw_lr:g}, "
            f"Muon lr {self.muon_lr:g} (momentum {self.muon_momentum:g}), weight decay {self.weight_decay:g}, "
            f"warm-up {self.warmup_fraction:g}, label smoothing {self.label_smoothing:g}\n"
            f"        first layer {first_layer}, channels {self.model_channels}; "
            f"augmentation: {distortions or 'none'}; "
            f"hard examples from {self.hard_examples_from:g} of the run at share {self.hard_example_share:g} "
            f"by {'relative' if self.relative_losses else 'raw'} loss; "
            f"{self.test_time_views} test-time view(s)"
        )


# What changes with the length of a run, chosen on the validation split (docs/experiments.md): from
# how many epochs on, which fields differ from Recipe's defaults (the one-epoch recipe). Longer runs
# have the epochs to afford a first layer at full resolution, a wider 14x14 layer, more steps and
# harder images. One epoch takes larger batches, an unpadded strided first layer (maps of 12x12, 6x6
# and 3x3) and 16, 16 and 64 channels: as accurate on validation, for about 0.6 times the loop of
# commit 6f9322f (the CPU's kernels work in blocks of 16 channels, and each step has a fixed cost).
LENGTH_TABLE = (
    (1, {}),
    (
        3,
        {
            "full_resolution": True,
            "channels": (16, 32, 48),
            "batch_size": 160,
            "adamw_lr": 0.035,
            "muon_lr": 0.1,
            "augmentation": EVERY_DISTORTION,
        },
    ),
)


# What tune.py searches: each field with its lowest and highest value and how it is sampled
# ("log": evenly in log scale, "linear", or "int" in steps of STEP_OF_INTS' value). Narrow it with
# tune.py --fields and --range; every other field keeps recipe_for's value.
SEARCH_SPACE = {
    "adamw_lr": (0.005, 0.1, "log"),
    "muon_lr": (0.02, 0.3, "log"),
    "muon_momentum": (0.5, 0.95, "linear"),
    "warmup_fraction": (0.05, 0.5, "linear"),
    "batch_size": (64, 320, "int"),
    "weight_decay": (1e-5, 1e-2, "log"),
    "label_smoothing": (0.0, 0.2, "linear"),
    "hard_example_share": (0.0, 0.8, "linear"),
    "width": (0.25, 1.0, "linear"),
}
STEP_OF_INTS = {"batch_size": 32}


def build_model(recipe: Recipe) -> MnistCNN:
    """Return a fresh MnistCNN of the architecture that recipe trains (its first layer and channels)."""
    return MnistCNN(recipe.full_resolution, recipe.model_channels, recipe.first_padding)


def recipe_for(epochs: int, **overrides: object) -> Recipe:
    """Return the recipe for a run of epochs (LENGTH_TABLE's last row that applies), with overrides on top."""
    _, length_fields = [row for row in LENGTH_TABLE if epochs >= row[0]][-1]
    return Recipe(epochs=epochs, **(length_fields | overrides))


def default_help(name: str) -> str:
    """Return "(default: ...)" for --help: recipe field name's value at one epoch and from LENGTH_TABLE's last row."""
    long_from = LENGTH_TABLE[-1][0]
    return f"(default: {getattr(recipe_for(1), name)}; from {long_from} epochs {getattr(recipe_for(long_from), name)})"


def parse_override(text: str) -> tuple[str, object]:
    """Return (field, value) from 'field=value' for a number or true/false field of Recipe; raise ValueError.

    epochs has its own option; channels and augmentation come with the length of the run (LENGTH_TABLE).
    """
    name, _, value = text.partition("=")
    if name == "epochs":
        raise ValueError("the number of epochs is set with --epochs, which also picks the recipe for that length")
    if name in ("channels", "augmentation"):
        raise ValueError(f"{name} comes with --epochs (LENGTH_TABLE in mnist_cnn/recipe.py); --set width=W scales")
    kinds = {item.name: type(item.default) for item in fields(Recipe) if isinstance(item.default, (bool, int, float))}
    kinds.pop("epochs")
    if name not in kinds or not value:
        raise ValueError(f"expected FIELD=VALUE with FIELD one of {', '.join(kinds)}, got {text!r}")
    if kinds[name] is bool:
        if value.lower() not in ("true", "false"):
            raise ValueError(f"{name} takes true or false, got {value!r}")
        parsed = value.lower() == "true"
    else:
        parsed = kinds[name](value)
    replace(Recipe(), **{name: parsed})  # raises ValueError when no run can train with it
    return name, parsed
