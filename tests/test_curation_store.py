"""The curation file (repwidgets.curation_store): saved on every change, atomic, safe
against corrupted, foreign and concurrently changed files."""

from __future__ import annotations

import json
import os
import threading

import pandas as pd
import pytest

from repwidgets.curation_store import Curation, CurationFileError, CurationWriteError

pytestmark = pytest.mark.usefixtures("fresh_curations")


def test_curation_roundtrip_and_csv(tmp_path):
    path = tmp_path / "cur.json"
    cur = Curation.open(path, split="train", n_samples=100)
    cur.mark(3, "keep")
    cur.mark(7, "spurious")
    cur.mark(9, "exclude")
    cur.mark(3, "spurious")
    assert cur.undo() == (3, "keep")
    doc = json.loads(path.read_text())
    assert doc["format"] == "repwidgets.curation" and doc["schema_version"] == 1
    assert {e["sample"]: e["mark"] for e in doc["marks"]} == {
        3: "keep",
        7: "spurious",
        9: "exclude",
    }
    Curation._forget()  # as after a kernel restart
    again = Curation.load(path)
    assert again is not cur
    assert again.selected == {"keep": [3], "spurious": [7], "exclude": [9]}
    out = again.to_csv(tmp_path / "marks.csv")
    table = pd.read_csv(out)
    assert table["sample"].tolist() == [3, 7, 9]
    assert table["mark"].tolist() == ["keep", "spurious", "exclude"]
    with pytest.raises(ValueError, match="Unknown mark"):
        again.mark(1, "maybe")
    with pytest.raises(ValueError, match="out of range"):
        again.mark(100, "keep")


def test_same_path_gives_live_object(tmp_path):
    a = Curation.open(tmp_path / "c.json")
    a.mark(1, "keep")
    b = Curation.open(tmp_path / "c.json")
    assert b is a and b.selected["keep"] == [1]


def test_concurrent_marks_lose_none(tmp_path):
    path = tmp_path / "cur.json"
    cur = Curation.open(path, split="train")
    n_threads, per_thread = 8, 25
    barrier = threading.Barrier(n_threads)
    errors = []

    def worker(t):
        try:
            barrier.wait()
            for j in range(per_thread):
                cur.mark(t * per_thread + j, ("keep", "spurious", "exclude")[j % 3])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    expected = {i: ("keep", "spurious", "exclude")[(i % per_thread) % 3] for i in range(200)}
    assert cur.marks == expected
    on_disk = {e["sample"]: e["mark"] for e in json.loads(path.read_text())["marks"]}
    assert on_disk == expected
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"format": "repwidgets.curation", "schema_version": 1, "marks": [', "not valid JSON"),
        (b'{"name": "some other tool", "items": [1, 2]}', "not a repwidgets curation file"),
        (b"[1, 2, 3]", "not a repwidgets curation file"),
        (b'{"format": "repwidgets.curation", "schema_version": 99, "marks": []}', "newer"),
        (
            b'{"format": "repwidgets.curation", "schema_version": 1, '
            b'"marks": [{"sample": 1, "mark": "maybe"}]}',
            "malformed mark",
        ),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
    ],
)
def test_bad_file_gives_clear_error_and_stays_untouched(tmp_path, content, message):
    path = tmp_path / "cur.json"
    path.write_bytes(content)
    before = os.stat(path).st_mtime_ns
    with pytest.raises(CurationFileError, match=message) as info:
        Curation.open(path, split="train")
    assert "untouched" in str(info.value) or "left" in str(info.value)
    assert path.read_bytes() == content
    assert os.stat(path).st_mtime_ns == before


def test_file_changed_on_disk_is_not_overwritten(tmp_path):
    path = tmp_path / "cur.json"
    cur = Curation.open(path)
    cur.mark(1, "keep")
    path.write_text("I am somebody else's notes now")
    with pytest.raises(CurationFileError, match="not overwritten"):
        cur.mark(2, "keep")
    assert path.read_text() == "I am somebody else's notes now"
    assert cur.marks == {1: "keep"}  # the refused change is rolled back


def test_split_mismatch_is_refused(tmp_path):
    Curation.open(tmp_path / "c.json", split="train").mark(1, "keep")
    Curation._forget()
    with pytest.raises(CurationFileError, match="split 'train'"):
        Curation.open(tmp_path / "c.json", split="test")


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_crash_mid_write_leaves_old_file(tmp_path, monkeypatch, failing):
    path = tmp_path / "cur.json"
    cur = Curation.open(path)
    cur.mark(1, "keep")
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk on fire")

    import repwidgets.curation_store as store

    monkeypatch.setattr(store.os, failing, boom)
    with pytest.raises(CurationWriteError, match="previous file is intact"):
        cur.mark(2, "spurious")
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert cur.marks == {1: "keep"}  # memory agrees with the file
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    cur.mark(2, "spurious")  # and it works again afterwards
    assert Curation.load(path).marks == {1: "keep", 2: "spurious"}
