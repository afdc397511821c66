"""mnist_cnn/cli.py: the checked argparse types accept what they should and refuse the rest with a clear reason."""

import argparse

import pytest

from mnist_cnn.cli import percentage, positive_float, positive_int


@pytest.mark.parametrize(
    ("parse", "text", "value"),
    [(positive_int, "3", 3), (positive_float, "0.5", 0.5), (percentage, "0", 0.0), (percentage, "100", 100.0)],
)
def test_accepts_valid_values(parse: object, text: str, value: float) -> None:
    assert parse(text) == value


@pytest.mark.parametrize(
    ("parse", "text", "reason"),
    [
        (positive_int, "0", "must be greater than 0, got 0"),
        (positive_int, "1.5", "expected a whole number, got '1.5'"),
        (positive_float, "inf", "must be a finite number greater than 0, got inf"),
        (positive_float, "nan", "must be a finite number greater than 0, got nan"),
        (positive_float, "-1", "must be a finite number greater than 0, got -1"),
        (percentage, "100.5", "must be between 0 and 100, got 100.5"),
        (percentage, "x", "expected a percentage, got 'x'"),
    ],
)
def test_refuses_invalid_values(parse: object, text: str, reason: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=reason.replace(".", r"\.")):
        parse(text)
