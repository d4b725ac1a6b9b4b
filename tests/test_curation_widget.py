"""CurationSelector's band in Python: moving one end keeps the other exactly, and marks
outside the band stay in the file and are counted, never dropped."""

from __future__ import annotations

import json

import pytest
import torch
from test_midrange import synthetic_session

from repwidgets.engines import midrange as mr
from repwidgets.curation_store import Curation


@pytest.fixture(scope="module")
def synth():
    torch.set_num_threads(1)
    return synthetic_session(n_train=600, n_val=60, n_test=600)


@pytest.fixture(autouse=True)
def _fresh_registry():
    Curation._forget()
    yield
    Curation._forget()


def file_marks(path) -> dict[int, str]:
    return {e["sample"]: e["mark"] for e in json.loads(path.read_text())["marks"]}


def test_moving_one_end_keeps_the_other_exactly(synth, tmp_path):
    w = mr.select(synth, 0, band=(0.5, 0.9), within="all").curate(tmp_path / "c.json")
    # the browser's copy of the high end drifted to 0.899: the widget keeps its own 0.9
    reply, _ = w._handle_band({"band": [0.3, 0.899], "moved": "low"}, [])
    assert w.band == [0.3, 0.9]
    expected = mr.select(synth, 0, band=(0.3, 0.9), within="all").indices.tolist()
    assert w.result.indices.tolist() == expected
    assert reply["n"] == len(expected)
    w._handle_band({"band": [0.2999, 0.95], "moved": "high"}, [])
    assert w.band == [0.3, 0.95]
    # a moved end that would cross the other stops there
    w.move_band_end("low", 0.99)
    assert w.band == [0.95, 0.95]
    with pytest.raises(ValueError, match="'low' or 'high'"):
        w.move_band_end("middle", 0.5)


def test_marks_outside_the_band_are_kept_and_counted(synth, tmp_path):
    path = tmp_path / "c.json"
    w = mr.select(synth, 0, band=(0.5, 0.9), within="all").curate(path)
    top, second = int(w.result.indices[0]), int(w.result.indices[1])
    w.mark(top, "keep")
    w.mark(second, "spurious")
    assert w.marked_outside_band() == []
    reply, _ = w._handle_band({"band": [0.05, 0.3]}, [])
    shown = set(w.result.indices.tolist())
    assert top not in shown and second not in shown
    assert reply["outside"] == 2
    assert w.marked_outside_band() == sorted([top, second])
    assert file_marks(path) == {top: "keep", second: "spurious"}
    assert w.selected == {"keep": [top], "spurious": [second], "exclude": []}
    assert dict(w.marks) == {str(top): "keep", str(second): "spurious"}


def test_both_ends_moved_in_the_browser_are_both_taken(synth, tmp_path):
    w = mr.select(synth, 0, band=(0.5, 0.9), within="all").curate(tmp_path / "c.json")
    w._handle_band({"band": [0.2, 0.6], "moved": ["low", "high"]}, [])
    assert w.band == [0.2, 0.6]
    with pytest.raises(ValueError, match="'low' and/or 'high'"):
        w._handle_band({"band": [0.2, 0.6], "moved": ["left"]}, [])
