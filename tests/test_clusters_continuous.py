"""ConceptBrowser's continuous colouring (a number per point on a ramp) and its binary
state at a million points."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ipywidgets.widgets.widget import _remove_buffers

from repwidgets.widgets.clusters import STEPS, Coloring, ConceptBrowser, ContinuousColoring


def reference_codes(values, vmin, vmax):
    """Brute force: one value at a time, 0 for missing, else 1 + nearest ramp step."""
    out = []
    for v in values:
        if not np.isfinite(v):
            out.append(0)
            continue
        t = 0.0 if vmax == vmin else min(1.0, max(0.0, (v - vmin) / (vmax - vmin)))
        out.append(1 + int(np.rint(t * (STEPS - 1))))
    return out


def test_values_become_ramp_codes_like_the_reference():
    rng = np.random.default_rng(0)
    values = rng.normal(size=500)
    values[::37] = np.nan
    values[5] = np.inf
    c = ContinuousColoring("lof", values)
    finite = values[np.isfinite(values)]
    assert c.range == (finite.min(), finite.max())
    assert c.codes.dtype == np.uint8
    assert c.codes.tolist() == reference_codes(values, finite.min(), finite.max())
    # given ends clip the values beyond them
    c2 = ContinuousColoring("lof", values, vmin=-1.0, vmax=1.0, ramp="magma")
    assert c2.codes.tolist() == reference_codes(values, -1.0, 1.0)
    assert c2.meta() == {
        "name": "lof",
        "categories": [],
        "none": True,
        "range": [-1.0, 1.0],
        "ramp": "magma",
    }
    # a flat colouring sits at the ramp's start
    assert ContinuousColoring("flat", np.full(4, 2.0)).codes.tolist() == [1, 1, 1, 1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"values": np.zeros((3, 2))}, "1-D"),
        ({"values": np.array(["a", "b"])}, "numbers"),
        ({"values": np.zeros(3), "ramp": "jet"}, "ramp"),
        ({"values": np.zeros(3), "vmin": 2.0, "vmax": 1.0}, "vmin <= vmax"),
        ({"values": np.zeros(3), "vmax": np.nan}, "finite"),
    ],
)
def test_bad_continuous_colourings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ContinuousColoring("score", **kwargs)


def test_mixes_with_categories_and_reports_values():
    xy = np.arange(12, dtype=np.float32).reshape(6, 2)
    auc = np.array([0.5, 0.9, np.nan, 0.7, 0.6, 1.0])
    b = ConceptBrowser(
        xy,
        [Coloring("half", [0, 0, 0, 1, 1, 1], ["a", "b"]), ContinuousColoring("auc", auc)],
        color_by="auc",
    )
    assert b.codes.tolist() == reference_codes(auc, 0.5, 1.0)
    b.color_by = "half"
    assert b.codes.tolist() == [0, 0, 0, 1, 1, 1]
    b.selected = [1, 2, 4]
    frame = b.selected_frame()
    assert frame["half"].tolist() == ["a", "a", "b"]
    np.testing.assert_array_equal(frame["auc"].to_numpy(), auc[[1, 2, 4]])


def test_a_million_points_travel_as_buffers():
    n = 1_000_000
    rng = np.random.default_rng(1)
    xy = rng.normal(size=(n, 2)).astype(np.float32)
    member = rng.integers(-1, 40, size=n)
    b = ConceptBrowser(
        xy,
        [
            Coloring("concept", member + 1, ["none", *map(str, range(40))], none=True),
            ContinuousColoring("score", rng.random(n)),
        ],
        membership=member,
    )
    state, paths, buffers = _remove_buffers(b.get_state())
    assert sorted(map(tuple, paths)) == [
        ("codes", "buffer"),
        ("points", "membership", "buffer"),
        ("points", "xy", "buffer"),
    ]
    sizes = {tuple(p): memoryview(buf).nbytes for p, buf in zip(paths, buffers)}
    assert sizes[("points", "xy", "buffer")] == 8 * n
    assert sizes[("codes", "buffer")] == n
    assert sizes[("points", "membership", "buffer")] == 2 * n  # int16: 40 clusters fit
    # what is left as JSON (besides the module's code) is small: no list per point
    data = {k: v for k, v in state.items() if k not in ("_esm", "_css")}
    assert len(json.dumps(data)) < 10_000
    b.color_by = "score"
    _, paths, buffers = _remove_buffers(b.get_state(["codes"]))
    assert [memoryview(x).nbytes for x in buffers] == [n]


def test_membership_travels_as_int16_when_the_ids_fit():
    xy = np.zeros((4, 2), dtype=np.float32)
    small = ConceptBrowser(xy, membership=[0, 1, -1, 300])
    assert small.points["membership"].dtype == np.int16
    assert small.points["membership"].tolist() == [0, 1, -1, 300]
    big = ConceptBrowser(xy, membership=[0, 1, -1, 70_000])
    assert big.points["membership"].dtype == np.int32
    assert big.points["membership"].tolist() == [0, 1, -1, 70_000]
    b = ConceptBrowser(xy, membership=[0, 1, -1, 300])
    b.selected = [3]
    assert b.selected_frame()["cluster"].tolist() == [300]
    with pytest.raises(ValueError, match="int32"):
        ConceptBrowser(xy, membership=[0, 1, -1, 2**40])
