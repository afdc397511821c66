"""What the command lines share: one way to fail, checked value types, --views, --validation, --set, progress bars."""

import argparse
import functools
import math
import sys
from collections.abc import Callable

from mnist_cnn.inference import VIEW_CHOICES
from mnist_cnn.recipe import parse_override

# Every script's exit status, by what went wrong (the README's "Bad input" table shows these).
EXIT_STATUSES = {"bad input or bad data": 2, "a failed run or write": 1, "interrupted (Ctrl-C)": 130}


class BadInput(Exception):
    """The user's options, data, checkpoint or storage cannot be used: exit status 2."""

    exit_status = EXIT_STATUSES["bad input or bad data"]


class RunFailed(Exception):
    """The run or a write failed on the way (divergence, a full disk, a failed check): exit status 1."""

    exit_status = EXIT_STATUSES["a failed run or write"]


class Interrupted(Exception):
    """Ctrl-C, with what was kept: exit status 130."""

    exit_status = EXIT_STATUSES["interrupted (Ctrl-C)"]


def reports_errors(interrupted: str = "stopped") -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Wrap a script's main so that each project error ends it with one line on stderr and its exit status.

    BadInput and RunFailed print 'error: <message>'; Ctrl-C prints 'interrupted: <interrupted>' (or an
    Interrupted error's own message) and gives 130. Anything else is a bug and keeps its traceback.
    """

    def wrap(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def run(*args: object, **kwargs: object) -> int:
            try:
                return main(*args, **kwargs)
            except (BadInput, RunFailed) as error:
                print(f"error: {error}", file=sys.stderr)
                return error.exit_status
            except Interrupted as error:
                print(f"interrupted: {error}", file=sys.stderr)
                return error.exit_status
            except KeyboardInterrupt:
                print(f"interrupted: {interrupted}", file=sys.stderr)
                return Interrupted.exit_status

        return run

    return wrap


def checked_number(
    convert: Callable[[str], float], is_valid: Callable[[float], bool], requirement: str, kind: str
) -> Callable[[str], float]:
    """Return an argparse type that converts text and refuses values for which is_valid is false."""

    def parse(text: str) -> float:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        if not is_valid(value):
            raise argparse.ArgumentTypeError(f"{requirement}, got {text}")
        return value

    return parse


positive_int = checked_number(int, lambda value: value > 0, "must be greater than 0", "a whole number")
positive_float = checked_number(
    float, lambda value: math.isfinite(value) and value > 0, "must be a finite number greater than 0", "a number"
)
percentage = checked_number(float, lambda value: 0 <= value <= 100, "must be between 0 and 100", "a percentage")
port_number = checked_number(int, lambda value: 0 <= value <= 65535, "must be between 0 and 65535", "a port number")


def add_views_option(parser: argparse.ArgumentParser) -> None:
    """Add --views, which every script that runs a trained model shares; unset, the checkpoint's recipe decides."""
    parser.add_argument(
        "--views",
        type=int,
        choices=VIEW_CHOICES,
        help="views of each image whose logits are averaged: 1 (the image alone) or 5 (with its four one-pixel "
        "shifts) (default: the test_time_views of the checkpoint's recipe)",
    )


def wants_progress(no_progress: bool) -> bool:
    """Return whether to draw progress bars: unless --no-progress, and only when stderr is a terminal."""
    return not no_progress and sys.stderr.isatty()


def add_validation_option(parser: argparse.ArgumentParser) -> None:
    """Add --validation N, which trains without the last N training images and scores on them instead."""
    parser.add_argument(
        "--validation",
        type=positive_int,
        metavar="N",
        help="hold out the last N training images, score on them and never read the test set (default: off)",
    )


def recipe_override(text: str) -> tuple[str, object]:
    """Parse FIELD=VALUE for argparse: a field of the recipe and its new value."""
    try:
        return parse_override(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_recipe_override_option(parser: argparse.ArgumentParser) -> None:
    """Add --set FIELD=VALUE, repeatable, which changes any number or true/false field of the recipe."""
    parser.add_argument(
        "--set",
        dest="overrides",
        type=recipe_override,
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="change a field of the recipe (mnist_cnn/recipe.py), e.g. --set label_smoothing=0.05; repeatable",
    )
