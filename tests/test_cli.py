"""mnist_cnn/cli.py: one line and one exit status for each error; checked argparse types with a clear reason."""

import argparse

import pytest

from conftest import ROOT
from mnist_cnn import cli
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


@pytest.mark.parametrize(
    ("raised", "status", "line"),
    [
        (cli.BadInput("no such checkpoint"), 2, "error: no such checkpoint"),
        (cli.RunFailed("the disk is full"), 1, "error: the disk is full"),
        (KeyboardInterrupt(), 130, "interrupted: nothing written"),
        (cli.Interrupted("3 trials kept"), 130, "interrupted: 3 trials kept"),
    ],
)
def test_each_error_ends_with_one_line_and_its_status(
    raised: BaseException, status: int, line: str, capsys: pytest.CaptureFixture
) -> None:
    @cli.reports_errors(interrupted="nothing written")
    def main(argv: list[str]) -> int:
        raise raised

    assert main(["--anything"]) == status
    assert capsys.readouterr().err == line + "\n"


def test_a_bug_keeps_its_traceback() -> None:
    @cli.reports_errors()
    def main() -> int:
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        main()


def test_the_documented_bad_input_table_shows_the_exit_statuses_of_the_code() -> None:
    page = (ROOT / "docs" / "scripts.md").read_text()
    table = page[page.index("## Bad input") :].split("\n\n")[2]
    statuses = {int(row.rsplit("|", 2)[1]) for row in table.splitlines()[2:]}
    assert statuses == set(cli.EXIT_STATUSES.values())
