"""README.md and docs/: rendered as GitHub renders them, no paragraph falls into a table; links resolve."""

import re
from html.parser import HTMLParser
from pathlib import Path

import cmarkgfm
import pytest
from cmarkgfm.cmark import Options

from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_LINES = 250


class TableRows(HTMLParser):
    """Counts the rows of each table in an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[int] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self.rows.append(0)
        elif tag == "tr":
            self.rows[-1] += 1


def source_tables(markdown: str) -> list[int]:
    """Return the number of lines of each table in markdown (runs of lines starting with |, outside code blocks)."""
    tables, inside_code, run = [], False, 0
    for line in [*markdown.splitlines(), ""]:
        inside_code ^= line.startswith("```")
        if not inside_code and line.startswith("|"):
            run += 1
        elif run:
            tables.append(run)
            run = 0
    return tables


def rendered_tables(markdown: str) -> list[int]:
    """Return the number of rows of each table GitHub's own renderer (cmark-gfm) makes of markdown."""
    parser = TableRows()
    parser.feed(cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE))
    return parser.rows


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_no_paragraph_falls_into_a_table(page: Path) -> None:
    markdown = page.read_text()
    assert [lines - 1 for lines in source_tables(markdown)] == rendered_tables(markdown)  # less the delimiter row


def test_a_line_right_after_a_table_is_caught() -> None:
    swallowed = "| a | b |\n| --- | --- |\n| 1 | 2 |\nOne seed varies\nby 0.06 points.\n"
    assert [lines - 1 for lines in source_tables(swallowed)] != rendered_tables(swallowed)
    assert [lines - 1 for lines in source_tables(swallowed.replace("One", "\nOne"))] == rendered_tables(
        swallowed.replace("One", "\nOne")
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page: Path) -> None:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if not re.match(r"[a-z]+:", target):
            assert (page.parent / target).exists(), f"{page.name} links {target}, which is missing"


def test_the_readme_is_a_front_door() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= README_LINES
