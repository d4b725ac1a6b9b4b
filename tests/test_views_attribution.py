"""The attribution views: the gallery of attributed training samples and its hand-over to
curation, and the tables of TRAK scores, LDS and the removal experiment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from test_gallery import FakeSession

from repwidgets.views import AttributionGallery
from repwidgets.views.attribution import attribution_view, lds_view, removal_view, trak_view

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_session():
    import repwidgets as rw
    from repwidgets.models.cnn import SmallCNN
    from repwidgets.models.train import train_model

    torch.set_num_threads(1)
    data = rw.datasets.shapes(n_train=240, n_test=120, n_val=120, image_size=16, seed=0)
    model = SmallCNN(4, widths=(4, 8, 8, 8))
    train_model(model, data, epochs=2, lr=5e-3, batch_size=32, seed=0, progress=False)
    return rw.Session(model, data, device="cpu", progress=False)


class FakeAttribution:
    """The parts of a concept attribution result that its gallery reads."""

    concept = "watermark"
    layer = "features.relu2"
    class_names = ["circle", "square"]

    def __init__(self, n=10):
        self.train_indices = torch.arange(100, 100 + n)
        self.scores = torch.linspace(1.0, -1.0, n)
        self.concept_labels = torch.arange(n) % 2 == 0
        self.classes = torch.arange(n) % 2

    def _order(self):
        return np.argsort(-self.scores.numpy(), kind="stable")

    def top(self, k):
        return self.train_indices.numpy()[self._order()[:k]]


def test_attribution_gallery_thumb_size():
    from repwidgets.views.attribution import attribution_view as attribution_gallery

    sess = FakeSession(n=200)
    w = attribution_gallery(FakeAttribution(), k=3, session=sess)
    assert w.gallery.thumb_size == 96 and w.thumb_size == 96
    assert [c["id"] for c in w.gallery.cards] == [100, 101, 102, 109, 108, 107]
    w.thumb_size = 128
    assert w.gallery.thumb_size == 128
    big = attribution_gallery(FakeAttribution(), k=3, session=sess, thumb_size=72, height=300)
    assert (big.gallery.thumb_size, big.gallery.height) == (72, 300)


def test_attribution_widget_gallery_and_handover(tiny_session, tmp_path):
    from repwidgets.engines import attribution as A

    sess = tiny_session
    r = A.concept_attribution(
        sess, "watermark", layer="features.relu2", n_models=1, proj_dim=32, n_targets=8
    )
    w = r.widget(k=5)
    assert isinstance(w, AttributionGallery)
    ids = [c["id"] for c in w.gallery.cards]
    assert ids[:5] == list(r.top(5)) and ids[5:] == list(r.bottom(5))
    assert w.gallery.sort_by == "score"
    assert w.chosen() == list(r.top(5))  # nothing selected: the top k
    w.gallery.selected = [ids[7], ids[1]]
    assert w.selected == [ids[7], ids[1]]
    made = w.send_to_curation()
    assert made is w.curation
    assert sorted(made.candidates.samples.tolist()) == sorted([ids[7], ids[1]])
    # highest score first, as in the gallery
    assert made.candidates.samples.tolist() == sorted(
        [ids[7], ids[1]], key=lambda i: -float(r.scores[r.train_indices == i])
    )
    made.mark(ids[1], "spurious")
    assert made.selected["spurious"] == [ids[1]]
    assert made.can_move_band
    made.set_band(0.9, 1.0)  # the band of the top 10% of scores
    n_top = len(made.candidates)
    assert abs(n_top - 0.1 * len(r.scores)) <= 2
    assert set(made.candidates.samples.tolist()) == set(r.top(n_top).tolist())
    back = A.ConceptAttributionResult.load(r.save(tmp_path / "r.safetensors"))
    with pytest.raises(ValueError, match="session="):
        back.widget()
    assert back.widget(k=2, session=sess).chosen() == list(r.top(2))
    assert attribution_view(back, k=2, session=sess).chosen() == list(r.top(2))


class _Table:
    def __init__(self, frame, groups=None, **fields):
        self._frame, self._groups = frame, groups
        self.__dict__.update(fields)

    def to_frame(self):
        return self._frame

    def groups_frame(self):
        return self._groups if self._groups is not None else pd.DataFrame()


def test_trak_lds_and_removal_show_as_tables():
    frame = pd.DataFrame(
        {"sample": np.arange(60), "score": np.arange(60.0), "rank": 60 - np.arange(60)}
    )
    html = trak_view(_Table(frame)).value
    assert html.count("<tr>") == 50 and "<td>59</td>" in html  # the 50 top-ranked rows
    assert lds_view(_Table(None, lds=0.25, per_target=[0.1, 0.4], n_subsets=8)).value == (
        "<b>LDS</b> 0.2500 over 2 targets, 8 subsets"
    )
    table = pd.DataFrame({"condition": ["<i>top</i>"], "accuracy": [0.5]})
    groups = pd.DataFrame({"group": ["a"], "top": [0.25]})
    html = removal_view(_Table(table, groups)).value
    assert html.count("<table") == 2 and "&lt;i&gt;top&lt;/i&gt;" in html
    assert removal_view(_Table(table)).value.count("<table") == 1
