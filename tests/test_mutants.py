"""tools/mutants.py: every mutant applies to today's code exactly once, changes it, and has a name of its own."""

import pytest

from conftest import ROOT
from tools import mutants


@pytest.mark.parametrize("mutant", mutants.MUTANTS, ids=[mutant.name for mutant in mutants.MUTANTS])
def test_each_mutant_applies_once_and_changes_the_code(mutant: mutants.Mutant) -> None:
    code = (ROOT / mutant.path).read_text()
    assert code.count(mutant.old) == 1
    assert code.replace(mutant.old, mutant.new) != code


def test_mutants_are_named_once_and_spread_over_the_code() -> None:
    names = [mutant.name for mutant in mutants.MUTANTS]
    assert len(names) == len(set(names)) >= 20
    assert len({mutant.path for mutant in mutants.MUTANTS}) >= 10


def test_an_unknown_mutant_is_refused_with_one_line(capsys: pytest.CaptureFixture) -> None:
    assert mutants.main(["--only", "no such bug"]) == 2
    assert capsys.readouterr().err == "error: --only: no mutant named no such bug\n"
