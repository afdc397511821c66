"""Turn the JSON that train.py writes beside a checkpoint into a markdown summary and a shields.io badge."""

import argparse
import json
import math
import sys
from pathlib import Path

from files import WriteError, strict_json, write_file
from model import PARAMETER_BUDGET

BADGE_COLORS = ((99.0, "brightgreen"), (98.0, "green"), (95.0, "yellow"))
BADGE_FALLBACK_COLOR = "red"


class ReportError(Exception):
    """The metadata file is missing or is not what train.py writes."""


def read_metadata(path: Path) -> dict:
    """Return the metadata in path, checking that it holds the fields a report needs."""
    try:
        metadata = json.loads(path.read_text())
        metrics = metadata["metrics"]
        for key in ("test_accuracy", "train_accuracy", "test_loss", "train_seconds"):
            if not math.isfinite(float(metrics[key])):
                raise ValueError(f"{key} is {metrics[key]}, not a finite number")
        int(metadata["num_parameters"])
        metadata["versions"]["torch"]
    except OSError as error:
        raise ReportError(f"cannot read {path}: {error.strerror}") from None
    except (ValueError, KeyError, TypeError) as error:
        raise ReportError(
            f"{path} is not the metadata JSON of a train.py run ({type(error).__name__}: {error})"
        ) from None
    return metadata


def summary_markdown(metadata: dict) -> str:
    """Return a markdown section with a table of the run's accuracy, loss, size, time, commit and torch version."""
    metrics = metadata["metrics"]
    commit = metadata.get("git_commit") or "unknown"
    rows = [
        ("Test accuracy", f"{metrics['test_accuracy']:.2f}%"),
        ("Train accuracy", f"{metrics['train_accuracy']:.2f}%"),
        ("Test loss", f"{metrics['test_loss']:.4f}"),
        ("Parameters", f"{metadata['num_parameters']:,} / {PARAMETER_BUDGET:,}"),
        ("Training time", f"{metrics['train_seconds']:.1f} s"),
        ("Commit", f"`{commit[:12]}`"),
        ("torch", metadata["versions"]["torch"]),
    ]
    lines = ["## MNIST training", "", "| Metric | Value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines) + "\n"


def accuracy_badge(metadata: dict) -> dict:
    """Return a shields.io endpoint badge for the run's test accuracy."""
    accuracy = metadata["metrics"]["test_accuracy"]
    color = next((color for floor, color in BADGE_COLORS if accuracy >= floor), BADGE_FALLBACK_COLOR)
    return {"schemaVersion": 1, "label": "accuracy", "message": f"{accuracy:.2f}%", "color": color}


def main(argv: list[str] | None = None) -> int:
    """Run report.py with argv; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("metadata", type=Path, help="the .json file that train.py wrote beside the checkpoint")
    parser.add_argument("--summary", type=Path, help="append the markdown summary to this file (else print it)")
    parser.add_argument("--badge", type=Path, help="write the shields.io endpoint JSON to this file")
    args = parser.parse_args(argv)
    try:
        metadata = read_metadata(args.metadata)
        markdown = summary_markdown(metadata)
        if args.summary:
            with args.summary.open("a") as summary:
                summary.write(markdown)
        else:
            print(markdown, end="")
        if args.badge:
            write_file(args.badge, strict_json(accuracy_badge(metadata)))
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except WriteError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: cannot write {args.summary}: {error.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
