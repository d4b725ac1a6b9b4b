"""Atomic writes: a failed write leaves the old file whole and no temporary behind."""

from __future__ import annotations

import os
import stat

import pytest

from repwidgets.atomic import atomic_write, atomic_write_bytes, atomic_write_text


def test_write_replaces_the_file_and_creates_folders(tmp_path):
    target = tmp_path / "a" / "b" / "marks.json"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second ✓")
    assert target.read_text(encoding="utf-8") == "second ✓"
    assert sorted(os.listdir(target.parent)) == ["marks.json"]


def test_a_failing_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "result.bin"
    atomic_write_bytes(target, b"old")

    def half_then_crash(handle):
        handle.write(b"ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_then_crash)
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["result.bin"]


def test_new_files_get_ordinary_permissions_and_old_files_keep_theirs(tmp_path):
    old = os.umask(0o022)
    try:
        fresh = atomic_write_bytes(tmp_path / "fresh.html", b"x")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
        kept = tmp_path / "kept.json"
        kept.write_text("{}")
        kept.chmod(0o600)
        atomic_write_text(kept, "{}")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    finally:
        os.umask(old)
