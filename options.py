"""Checked argparse value types that the scripts share: whole numbers, numbers and percentages."""

import argparse
import math
from collections.abc import Callable


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
