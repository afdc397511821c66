"""Writing files safely: strict JSON, a check of the folder before the work, each file whole or not at all."""

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mnist_cnn.cli import RunFailed


class WriteError(RunFailed):
    """A file cannot be written where it was asked for."""


def strict_json(value: object) -> str:
    """Return value as strict JSON text with a final newline; NaN and infinities, which JSON lacks, become null."""

    def finite(item: object) -> object:
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, dict):
            return {key: finite(inner) for key, inner in item.items()}
        if isinstance(item, list | tuple):
            return [finite(inner) for inner in item]
        return item

    return json.dumps(finite(value), indent=2, allow_nan=False) + "\n"


def check_writable_folder(folder: Path) -> None:
    """Raise WriteError now, before any work, when folder cannot be created or written to."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise WriteError(f"cannot write into {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise WriteError(f"cannot write into {folder}: {existing} is not writable")


def temporary_path(path: Path) -> Path:
    """Return a hidden temporary name beside path, unique to this process."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextmanager
def staged(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside path to write to; rename it to path when the block ends without an exception.

    Whatever happens no temporary file remains, and path changes only when the block succeeds. An
    OSError becomes a WriteError that names path.
    """
    temporary = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield temporary
        os.replace(temporary, path)
    except OSError as error:
        raise WriteError(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def staged_folder(path: Path) -> Iterator[Path]:
    """Yield a new temporary folder beside path to fill; put it in path's place when the block ends without an
    exception.

    Whatever happens no temporary folder remains, nor a parent folder made for it, and the folder at path,
    if any, is replaced only when the block succeeds (and kept, should even putting it back fail). An OSError
    becomes a WriteError that names path.
    """
    path = path.absolute()
    made = [parent for parent in path.parents if not parent.exists()]
    temporary, previous, swapped = None, None, False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        yield temporary
        if path.exists():
            previous = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, previous)
        try:
            os.replace(temporary, path)
        except OSError:
            if previous is not None:
                os.replace(previous, path)
                previous = None
            raise
        swapped = True
    except OSError as error:
        raise WriteError(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
        if swapped and previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
        for parent in made if not swapped else []:
            with contextlib.suppress(OSError):
                parent.rmdir()


def write_file(path: Path, data: bytes | str) -> None:
    """Write data to path whole or not at all: a failure leaves no temporary file and path as it was."""
    with staged(path) as temporary:
        temporary.write_bytes(data.encode() if isinstance(data, str) else data)
