"""NeuronGallery (Python side) and link()."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import traitlets

from repwidgets.widgets import Link, NeuronGallery, link
from repwidgets.widgets._transport import decode_array, decode_image_batch
from repwidgets.widgets.gallery import histogram_rows


def png_bytes(value: int, size: int = 8) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (size, size), color=int(value) % 256).save(buf, format="PNG")
    return buf.getvalue()


class FakeSession:
    """Implements the Session methods the gallery uses, with planted activations.

    Neuron j responds to class j % 3 (value 2 + noise) and to nothing else (noise);
    neuron 5 responds to concept 1 only.
    """

    def __init__(self, n=60, channels=6, seed=0):
        g = np.random.default_rng(seed)
        self.class_names = ["circle", "square", "<img src=x onerror=alert(1)>"]
        self.concept_names = ["red", "striped"]
        self._targets = np.arange(n) % 3
        self._concepts = np.stack([self._targets == 0, g.random(n) < 0.3], axis=1)
        acts = g.normal(0, 0.1, size=(n, channels)).astype(np.float32)
        for j in range(5):
            acts[self._targets == j % 3, j] += 2 + g.random((self._targets == j % 3).sum())
        acts[self._concepts[:, 1], 5] += 3
        self._acts = torch.from_numpy(acts)
        self.thumb_calls = []

    def layers(self):
        return ["features.conv1", "fc"]

    def layer_shapes(self):
        return {"features.conv1": (6, 8, 8), "fc": (3,)}

    def activations(self, layer, split="test", pool="mean"):
        if layer not in self.layers():
            raise ValueError(f"Unknown layer {layer!r}. Available layers: {self.layers()}")
        assert pool == "mean"
        return self._acts

    def targets(self, split="test"):
        return torch.from_numpy(self._targets)

    def concepts(self, split="test"):
        return torch.from_numpy(self._concepts)

    def n(self, split="test"):
        return len(self._targets)

    def thumbnails(self, indices, split="test", size=64, fmt="png"):
        self.thumb_calls.append((list(indices), size))
        return [png_bytes(i, size=8 if size == 64 else 16) for i in indices]


class Recorder:
    """Capture what a widget sends to the front end."""

    def __init__(self, widget):
        self.sent = []
        widget.send = lambda content, buffers=None: self.sent.append((content, buffers or []))


def request(widget, content):
    rec = Recorder(widget)
    widget._router.handle(content, [])
    (reply,) = rec.sent
    return reply


CARDS = [
    {"id": 10, "label": "stripes", "scores": {"auc": 0.9, "dora": 1.5}, "images": [0, 1]},
    {"id": 11, "label": "dots", "scores": {"auc": float("nan")}, "images": [2]},
    {"id": 12, "label": "<b>bold</b>", "scores": {"dora": np.float32(0.25)}, "images": ["x", "y"]},
]


def make_gallery(**kwargs):
    store = {
        0: png_bytes(0),
        1: png_bytes(1),
        2: png_bytes(2),
        "x": png_bytes(3),
        "y": png_bytes(4),
    }
    return NeuronGallery(CARDS, image_source=store, **kwargs)


def test_cards_are_normalised():
    g = make_gallery()
    assert g.ids == [10, 11, 12]
    assert g.score_names == ["auc", "dora"]
    assert g.cards[1]["scores"] == {"auc": None}  # NaN is not valid JSON: sent as null
    assert g.cards[2]["scores"]["dora"] == pytest.approx(0.25)
    assert g.cards[2]["label"] == "<b>bold</b>"  # kept verbatim: the front end shows text
    assert g.histograms is None
    assert g.noun == "neurons"


@pytest.mark.parametrize(
    ("cards", "error", "match"),
    [
        ([{"label": "no id"}], ValueError, "no 'id'"),
        ([{"id": 1}, {"id": 1}], ValueError, "more than once"),
        ([{"id": "a"}], TypeError, "must be an int"),
        ([{"id": 1, "scores": {"s": "high"}}], TypeError, "must be a number"),
        ([{"id": 1, "images": [1.5]}], TypeError, "ints or strings"),
        ({"id": 1}, TypeError, "list of dicts"),
    ],
)
def test_bad_cards_get_clear_errors(cards, error, match):
    with pytest.raises(error, match=match):
        NeuronGallery(cards, image_source={})


def test_unknown_sort_key_lists_the_scores():
    with pytest.raises(ValueError, match="auc"):
        make_gallery(sort_by="accuracy")


def test_fetch_returns_the_requested_images_in_order():
    g = make_gallery()
    content, buffers = request(g, {"type": "fetch", "request_id": "q1", "keys": ["y", 0, 2]})
    assert content["ok"] and content["request_id"] == "q1"
    assert decode_image_batch(content, buffers[0]) == [png_bytes(4), png_bytes(0), png_bytes(2)]


def test_fetch_of_unknown_key_is_an_error_reply_not_an_exception():
    g = make_gallery()
    content, buffers = request(g, {"type": "fetch", "request_id": "q2", "keys": [999]})
    assert content["ok"] is False and "999" in content["error"]


def test_selection_trait_validates_and_dedupes():
    g = make_gallery()
    g.selected = [12, 10, 12]
    assert g.selected == [12, 10]
    assert [c["id"] for c in g.selected_cards()] == [12, 10]
    with pytest.raises(traitlets.TraitError, match="not cards of this gallery"):
        g.selected = [10, 77]
    with pytest.raises(traitlets.TraitError, match="must hold ints; got bool True"):
        g.selected = [True]
    assert g.selected == [12, 10]
    frame = g.to_frame()
    assert frame.set_index("id")["selected"].to_dict() == {10: True, 11: False, 12: True}
    assert np.isnan(frame.set_index("id").loc[11, "dora"])


def test_selection_from_the_browser_reaches_python():
    g = make_gallery()
    seen = []
    g.observe(lambda ch: seen.append(ch["new"]), names=["selected"])
    # what ipywidgets does with an update message from the front end
    g.set_state({"selected": [11, 12]})
    assert g.selected == [11, 12]
    assert seen == [[11, 12]]


def test_histograms_are_binary_and_binned():
    values = np.array([0.0, 0.1, 0.9, 1.0, 1.0, np.nan])
    g = NeuronGallery([{"id": 0, "histogram": values}, {"id": 1}], image_source={}, bins=4)
    wire = g.get_state("histograms")["histograms"]
    counts_meta = wire["counts"]
    assert isinstance(counts_meta["buffer"], bytes)
    counts = decode_array(counts_meta["buffer"], counts_meta["dtype"], counts_meta["shape"])
    ranges_meta = wire["ranges"]
    ranges = decode_array(ranges_meta["buffer"], ranges_meta["dtype"], ranges_meta["shape"])
    # Python reads the same arrays back from the trait
    np.testing.assert_array_equal(g.histograms["counts"], counts)
    np.testing.assert_array_equal(g.histograms["ranges"], ranges)
    assert counts.tolist() == [[2, 0, 0, 3], [0, 0, 0, 0]]
    assert ranges[0].tolist() == [0.0, 1.0]
    assert np.isnan(ranges[1]).all()


def test_histogram_rows_matches_numpy():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(500, 3))
    counts, ranges = histogram_rows(a, bins=10)
    for j in range(3):
        expected, _ = np.histogram(a[:, j], bins=10, range=(a[:, j].min(), a[:, j].max()))
        np.testing.assert_array_equal(counts[j], expected)
        np.testing.assert_allclose(ranges[j], [a[:, j].min(), a[:, j].max()], rtol=1e-6)


def test_from_activations_top_k_matches_a_brute_force_sort():
    sess = FakeSession()
    g = NeuronGallery.from_activations(sess, layer="features.conv1", top_k=5)
    acts = sess._acts.numpy()
    assert g.ids == list(range(6))
    for card in g.cards:
        j = card["id"]
        expected = np.argsort(-acts[:, j], kind="stable")[:5].tolist()
        assert card["images"] == expected
        assert card["scores"]["max"] == pytest.approx(acts[:, j].max())
        assert card["scores"]["mean"] == pytest.approx(acts[:, j].mean(), rel=1e-5)
    # planted: neurons 0..4 fire for class j % 3, so their top 5 are all of that class
    for j in range(5):
        assert g.cards[j]["scores"]["purity"] == 1.0
        assert g.cards[j]["label"].startswith(sess.class_names[j % 3])
    # neuron 5 fires for concept "striped": its label names it
    assert "striped 5/5" in g.cards[5]["label"]
    table = g.histograms["counts"]
    assert table.shape == (6, 24) and (table.sum(axis=1) == sess.n()).all()


def test_label_names_a_concept_other_than_the_class():
    sess = FakeSession()
    g = NeuronGallery.from_activations(sess, layer="features.conv1", top_k=5)
    assert "· red 5/5" in g.cards[0]["label"]  # concept 0 is planted on class 0
    sess.concept_names = ["circle", "striped"]  # now the concept repeats the class name
    g = NeuronGallery.from_activations(sess, layer="features.conv1", top_k=5)
    assert g.cards[0]["label"].startswith("circle 5/5")
    assert "· circle" not in g.cards[0]["label"]


def test_from_activations_serves_session_thumbnails_and_details():
    sess = FakeSession()
    g = NeuronGallery.from_activations(sess, layer="features.conv1", top_k=3, neurons=[2, 5])
    assert g.ids == [2, 5]
    keys = g.cards[0]["images"]
    content, buffers = request(g, {"type": "fetch", "request_id": "f", "keys": keys})
    assert decode_image_batch(content, buffers[0]) == [png_bytes(i) for i in keys]
    assert sess.thumb_calls[-1] == (keys, 64)

    sample = keys[0]
    content, buffers = request(g, {"type": "details", "request_id": "d", "card": 2, "key": sample})
    assert content["ok"], content
    fields = dict(content["fields"])
    assert fields["sample"] == sample
    assert fields["class"] == sess.class_names[sess._targets[sample]]
    expected_concepts = [sess.concept_names[c] for c in np.flatnonzero(sess._concepts[sample])]
    assert fields["concepts"] == expected_concepts
    assert fields["activation of #2"] == pytest.approx(float(sess._acts[sample, 2]))
    assert fields["rank"].startswith("1 of ")  # the top image of neuron 2
    assert content["image"]["mime"] == "image/png" and len(buffers) == 1


def test_from_activations_errors():
    sess = FakeSession()
    with pytest.raises(ValueError, match="Available layers"):
        NeuronGallery.from_activations(sess, layer="nope")
    with pytest.raises(ValueError, match="out of range"):
        NeuronGallery.from_activations(sess, layer="fc", neurons=[0, 6])
    with pytest.raises(ValueError, match="top_k"):
        NeuronGallery.from_activations(sess, layer="fc", top_k=0)
    sess._acts[3, 4] = float("nan")
    with pytest.raises(ValueError, match=r"NaN for neurons \[4\]"):
        NeuronGallery.from_activations(sess, layer="fc")


def test_details_for_unknown_card_is_an_error_reply():
    g = make_gallery()
    content, _ = request(g, {"type": "details", "request_id": "d", "card": 5, "key": 0})
    assert content["ok"] is False and "no card" in content["error"]


def test_thumb_size_defaults_larger_and_is_checked():
    g = make_gallery()
    assert g.thumb_size == 96
    g.thumb_size = 140
    assert g.get_state("thumb_size") == {"thumb_size": 140}  # synced to the browser
    with pytest.raises(traitlets.TraitError, match="between 16 and 512"):
        g.thumb_size = 8
    assert make_gallery(thumb_size=48).thumb_size == 48


def test_request_patience_is_synced_and_checked():
    g = make_gallery(request_patience=2.5)
    assert g.get_state("request_patience") == {"request_patience": 2.5}
    with pytest.raises(traitlets.TraitError, match="positive number of seconds"):
        g.request_patience = 0


def test_gallery_answers_pings_so_lost_requests_are_resent():
    g = make_gallery()
    content, buffers = request(g, {"type": "ping", "request_id": "p"})
    assert content == {"type": "ping", "request_id": "p", "ok": True} and buffers == []


# --- link ---------------------------------------------------------------------------------


def test_link_keeps_selections_in_step_both_ways():
    a, b = make_gallery(), make_gallery()
    a.selected = [11]
    ln = link(a, b)
    assert isinstance(ln, Link)
    assert b.selected == [11]  # initial sync from a
    a.selected = [10, 12]
    assert b.selected == [10, 12]
    b.set_state({"selected": [12]})  # a click in b's view
    assert a.selected == [12]
    ln.unlink()
    a.selected = [11]
    assert b.selected == [12]


def test_link_does_not_loop():
    a, b = make_gallery(), make_gallery()
    changes = {"a": 0, "b": 0}
    a.observe(lambda _: changes.__setitem__("a", changes["a"] + 1), names=["selected"])
    b.observe(lambda _: changes.__setitem__("b", changes["b"] + 1), names=["selected"])
    ln = link(a, b)
    a.selected = [10]
    assert changes == {"a": 1, "b": 1}
    assert ln.updates == 1


def test_link_cycle_of_three_terminates():
    a, b, c = make_gallery(), make_gallery(), make_gallery()
    link(a, b), link(b, c), link(c, a)
    a.selected = [11, 10]
    assert a.selected == b.selected == c.selected == [11, 10]


class Other(traitlets.HasTraits):
    selected = traitlets.List()


def test_link_maps_ids_and_drops_unknown_ones():
    g = make_gallery()
    h = Other()
    link(g, h, a_to_b={10: "r0", 11: ["r1", "r2"]})
    g.selected = [11, 12]  # 12 has no image on the other side
    assert h.selected == ["r1", "r2"]
    h.selected = ["r0", "zz"]  # back through the inverted map; "zz" is dropped
    assert g.selected == [10]


def test_link_with_many_to_one_map_is_stable():
    g1, g2 = make_gallery(), make_gallery()
    link(g1, g2, a_to_b=lambda i: 10, b_to_a=lambda i: [10, 11, 12])
    g1.selected = [12]
    assert g2.selected == [10]
    assert g1.selected == [12]  # not bounced back through b_to_a


def test_link_errors():
    g = make_gallery()
    with pytest.raises(TypeError, match="no trait 'selected'"):
        link(g, object())
    with pytest.raises(ValueError, match="itself"):
        link(g, g)
    with pytest.raises(ValueError, match="b_to_a"):
        link(g, make_gallery(), a_to_b=lambda i: i)


def test_replace_cards_shows_other_cards_in_place():
    g = NeuronGallery(
        [{"id": 1, "scores": {"auc": 0.9}, "images": [1]}, {"id": 2, "images": [2]}],
        image_source=lambda keys: [bytes([k]) for k in keys],
        sort_by="auc",
    )
    g.selected = [2]
    same = g.replace_cards([{"id": 7, "label": "seven", "images": [7]}], title="other")
    assert same is g and g.ids == [7] and g.title == "other"
    assert g.selected == [] and g.sort_by == "" and g.score_names == []
    assert g.selected_cards() == [] and g.to_frame()["label"].tolist() == ["seven"]
    with pytest.raises(traitlets.TraitError):
        g.selected = [1]
    g.selected = [7]
    assert g.selected_cards()[0]["label"] == "seven"
