"""The mid-range view: a CurationSelector over a band's candidates. Moving one end keeps
the other exactly, marks outside the band stay in the file and are counted, never
dropped, and a band loaded from a file needs the session to move."""

from __future__ import annotations

import json

import numpy as np
import pytest

from repwidgets.engines import midrange as mr
from repwidgets.views.midrange import midrange_view
from repwidgets.widgets import CurationSelector
from repwidgets.widgets._transport import decode_array

pytestmark = pytest.mark.usefixtures("fresh_curations")


def file_marks(path) -> dict[int, str]:
    return {e["sample"]: e["mark"] for e in json.loads(path.read_text())["marks"]}


def test_moving_one_end_keeps_the_other_exactly(synth, tmp_path):
    w = mr.select(synth, 0, band=(0.5, 0.9), within="all").curate(tmp_path / "c.json")
    # the browser's copy of the high end drifted to 0.899: the widget keeps its own 0.9
    reply, _ = w._handle_band({"band": [0.3, 0.899], "moved": "low"}, [])
    assert w.band == [0.3, 0.9]
    expected = mr.select(synth, 0, band=(0.3, 0.9), within="all").indices.tolist()
    assert w.candidates.samples.tolist() == expected
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
    top, second = int(w.candidates.samples[0]), int(w.candidates.samples[1])
    w.mark(top, "keep")
    w.mark(second, "spurious")
    assert w.marked_outside_band() == []
    reply, _ = w._handle_band({"band": [0.05, 0.3]}, [])
    shown = set(w.candidates.samples.tolist())
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


def test_the_view_shows_the_band_and_needs_the_session_to_move_it(synth, tmp_path):
    m = mr.select(synth, 0, band=(0.5, 0.9), within="all")
    w = m.widget()  # marks in memory
    assert isinstance(w, CurationSelector) and w.file == "" and w.can_move_band
    assert w.items["samples"].tolist() == m.indices.tolist()
    assert w.title == f"{m.class_name} · {m.score} over all samples · {m.split}"
    assert w.score_name == m.score and w.band == pytest.approx(m.band)
    wire = w.get_state("items")["items"]
    logits = wire["logits"]
    np.testing.assert_allclose(
        decode_array(logits["buffer"], logits["dtype"], logits["shape"]), m.logits.numpy()
    )
    assert w._thumbnails([int(m.indices[0])]) == synth.thumbnails(
        [int(m.indices[0])], split=m.split, size=64
    )
    frame = w.to_frame()
    assert list(frame.columns[:2]) == ["sample", "mark"]
    # a band loaded from a file has no session: no images, a fixed band
    back = mr.MidrangeResult.load(m.save(tmp_path / "m.safetensors"))
    fixed = midrange_view(back)
    assert not fixed.can_move_band
    with pytest.raises(ValueError, match="session=sess"):
        fixed.set_band(0.1, 0.2)
    with pytest.raises(ValueError, match="session="):
        fixed._thumbnails([1])
    moved = midrange_view(back, path=tmp_path / "c.json", session=synth)
    assert moved.can_move_band and moved.file == str(tmp_path / "c.json")
    moved.set_band(0.3, 0.9)
    expected = mr.select(synth, 0, band=(0.3, 0.9), within="all").indices.tolist()
    assert moved.candidates.samples.tolist() == expected
