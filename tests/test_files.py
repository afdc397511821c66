"""mnist_cnn/files.py: strict JSON, the folder check before the work, and files written whole or not at all."""

import errno
import json
import os
from pathlib import Path

import pytest

from mnist_cnn.files import WriteError, check_writable_folder, staged_folder, strict_json, write_file


def test_strict_json_turns_non_finite_numbers_into_null() -> None:
    text = strict_json({"a": float("nan"), "b": [1.5, float("inf"), -float("inf")], "c": {"d": (float("nan"),)}})
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.5, None, None], "c": {"d": [None]}}
    assert text.endswith("\n")


def test_folder_check_accepts_a_new_or_existing_folder(tmp_path: Path) -> None:
    check_writable_folder(tmp_path)
    check_writable_folder(tmp_path / "new" / "deeper")
    assert list(tmp_path.iterdir()) == []


def test_folder_check_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(WriteError, match=f"cannot write into {tmp_path / 'taken' / 'sub'}: .*taken is a file"):
        check_writable_folder(tmp_path / "taken" / "sub")


def test_folder_check_refuses_a_folder_without_write_access(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(WriteError, match="is not writable"):
        check_writable_folder(tmp_path / "out")


def test_write_file_replaces_whole(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "figures.json"
    write_file(path, "first")
    write_file(path, b"second")
    assert path.read_text() == "second"
    assert [p.name for p in path.parent.iterdir()] == ["figures.json"]


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "figures.json"
    path.write_text("old")

    def full_disk(self: Path, data: bytes) -> None:
        self.open("wb").write(data[:2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    with pytest.raises(WriteError, match=f"cannot write {path}: No space left on device"):
        write_file(path, "new content")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["figures.json"]


def test_a_staged_folder_replaces_the_old_one_whole(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "old.txt").write_text("old")
    with staged_folder(site) as folder:
        (folder / "new.txt").write_text("new")
        assert not (site / "new.txt").exists()  # nothing changes until the block succeeds
    assert [path.name for path in site.iterdir()] == ["new.txt"]
    assert [path.name for path in tmp_path.iterdir()] == ["site"]


def test_a_failed_staged_folder_leaves_the_old_one_and_no_temporary(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "old.txt").write_text("old")
    with pytest.raises(ZeroDivisionError), staged_folder(site) as folder:
        (folder / "half.txt").write_text("half")
        raise ZeroDivisionError
    assert [path.name for path in site.iterdir()] == ["old.txt"]
    assert [path.name for path in tmp_path.iterdir()] == ["site"]


def test_a_staged_folder_that_cannot_take_its_place_restores_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "old.txt").write_text("old")
    replace = os.replace

    def refuse_the_new_folder(source: Path, target: Path) -> None:
        if Path(source).name.endswith(".tmp"):
            raise OSError(errno.EACCES, "Permission denied")
        replace(source, target)

    monkeypatch.setattr(os, "replace", refuse_the_new_folder)
    with pytest.raises(WriteError, match=f"cannot write {site}: Permission denied"), staged_folder(site) as folder:
        (folder / "new.txt").write_text("new")
    assert [path.name for path in site.iterdir()] == ["old.txt"]
    assert [path.name for path in tmp_path.iterdir()] == ["site"]


def test_a_failed_staged_folder_leaves_no_parent_it_made(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError), staged_folder(tmp_path / "new" / "deeper" / "site") as folder:
        (folder / "half.txt").write_text("half")
        raise ZeroDivisionError
    assert list(tmp_path.iterdir()) == []
