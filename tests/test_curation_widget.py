"""CurationSelector on its own: it reads Candidates (no engine), sends them as binary
arrays, marks through the browser's requests and moves the band through ``reselect``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repwidgets.candidates import Candidates
from repwidgets.widgets import CurationSelector
from repwidgets.widgets._transport import decode_array, encode_array

pytestmark = pytest.mark.usefixtures("fresh_curations")

POPULATION = torch.linspace(-2.0, 2.0, 41)


def band_of(band=(0.5, 1.0), movable=True) -> Candidates:
    """Candidates of a band of quantiles of POPULATION (sample i has score POPULATION[i])."""
    qs = torch.quantile(POPULATION.double(), torch.tensor(band, dtype=torch.float64))
    keep = (qs[0] <= POPULATION) & (qs[1] >= POPULATION)
    samples = torch.nonzero(keep).flatten().flip(0)  # highest score first
    n = len(samples)
    return Candidates(
        samples=samples,
        scores=POPULATION[samples],
        labels=samples % 2,
        predictions=torch.zeros(n, dtype=torch.long),
        groups=torch.full((n,), -1),
        population=POPULATION,
        band=band,
        limits=(float(POPULATION[samples].min()), float(POPULATION[samples].max())),
        class_names=["even", "odd"],
        split="train",
        title="planted band",
        score_name="score",
        n_split=41,
        reselect=(lambda b: band_of(b)) if movable else None,
    )


def image_of(i: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + bytes([i])


def test_candidates_cross_the_wire_as_binary_arrays():
    c = band_of()
    w = CurationSelector(c, images=lambda keys: [image_of(k) for k in keys])
    assert (
        w.title == "planted band" and w.score_name == "score" and w.class_names == ["even", "odd"]
    )
    assert w.items["samples"].tolist() == c.samples.tolist()  # Python reads arrays back
    wire = w.get_state(["items", "histogram"])
    for name, expected in (
        ("samples", c.samples),
        ("scores", c.scores),
        ("logits", c.scores),  # no "logit" column: the scores stand in
        ("labels", c.labels),
        ("predictions", c.predictions),
        ("groups", c.groups),
    ):
        assert wire["items"][name] == encode_array(expected.numpy())
    counts = wire["histogram"]["counts"]
    assert decode_array(counts["buffer"], counts["dtype"], counts["shape"]).sum() == 41
    assert wire["histogram"]["range"] == [-2.0, 2.0]
    assert w.file == "" and w.curation.path is None  # in memory by default
    assert w._thumbnails([3, 40]) == [image_of(3), image_of(40)]
    assert repr(w).startswith(f"CurationSelector({len(c)} samples in band")


def test_marks_come_from_the_browser_and_python():
    w = CurationSelector(band_of())
    sent = []
    w.send = lambda content, buffers=None: sent.append(content)
    first = int(w.candidates.samples[0])
    w._router.handle({"type": "mark", "request_id": "1", "sample": first, "mark": "keep"})
    assert sent[-1]["ok"] and w.selected["keep"] == [first] and w.marks == {str(first): "keep"}
    w.mark(7, "exclude")
    assert w.counts() == {"keep": 1, "spurious": 0, "exclude": 1}
    w._router.handle({"type": "undo", "request_id": "2"})
    assert sent[-1]["sample"] == 7 and w.selected["exclude"] == []
    w._router.handle({"type": "mark", "request_id": "3", "sample": first, "mark": "maybe"})
    assert not sent[-1]["ok"] and "unknown mark" in sent[-1]["error"]
    assert w.to_frame()["mark"].tolist()[0] == "keep"
    with pytest.raises(ValueError, match="No images"):
        w._thumbnails([1])


def test_the_band_moves_through_reselect_or_not_at_all():
    w = CurationSelector(band_of((0.5, 1.0)))
    assert w.can_move_band
    version = w.version
    w.mark(40, "keep")
    w.set_band(0.0, 0.25)
    assert w.band == [0.0, 0.25] and w.version == version + 1
    assert w.candidates.samples.tolist() == band_of((0.0, 0.25)).samples.tolist()
    assert w.marked_outside_band() == [40] and w.selected["keep"] == [40]
    fixed = CurationSelector(band_of(movable=False))
    assert not fixed.can_move_band
    with pytest.raises(ValueError, match="fixed band"):
        fixed.set_band(0.0, 0.5)


def test_images_from_a_session_follow_the_candidates_split():
    class Thumbs:
        def __init__(self):
            self.calls = []

        def thumbnails(self, keys, split="test", size=64):
            self.calls.append((list(keys), split, size))
            return [image_of(k) for k in keys]

    sess = Thumbs()
    w = CurationSelector(band_of(), images=sess, image_size=32)
    assert w._thumbnails([5]) == [image_of(5)]
    assert sess.calls == [([5], "train", 32)]
    assert CurationSelector(band_of(), images={5: image_of(5)})._thumbnails([5]) == [image_of(5)]


def test_bad_input_names_the_problem():
    with pytest.raises(TypeError, match="Candidates"):
        CurationSelector(object())
    w = CurationSelector(band_of())
    with pytest.raises(ValueError, match="missing the array"):
        w.items = {"samples": [1, 2]}
    with pytest.raises(ValueError, match=r"CurationSelector.items\['samples'\]"):
        w.items = {**w.items, "samples": np.array([2**40])}
    np.testing.assert_array_equal(w.items["scores"], band_of().scores.numpy())
