"""The DORA view: a heatmap of EA distances linked to a gallery of s-AMS."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repwidgets.views import DoraWidget
from repwidgets.views.dora import dora_view


def test_dora_widget_links_heatmap_and_gallery():
    import ipywidgets

    from repwidgets.engines import dora

    torch.manual_seed(0)
    k = 16
    A = torch.rand(k, k) + 3 * torch.eye(k)
    r = dora.analyze_activations(A, neurons=list(range(40, 40 + k)), embedding=None)
    r.signals = torch.rand(k, 2, 3, 6, 6)
    w = r.widget()
    assert isinstance(w, ipywidgets.VBox)
    hm, g = w.heatmap, w.gallery
    assert hm.ids == list(range(40, 40 + k)) == sorted(g.ids)
    D = r.distances.double().numpy()
    assert np.allclose(hm.matrix, D)
    flagged = set(r.outliers())
    for p, nid in enumerate(hm.ids):
        assert ("outlier" in hm.labels[p]) == (nid in flagged)
    card = next(c for c in g.cards if c["id"] == 45)
    assert card["scores"]["LOF"] == pytest.approx(float(r.lof_scores[5]))
    assert card["images"] == [45]
    hm.selected = [41, 47]
    assert g.selected == [41, 47] == w.selected
    images = hm._images([41])
    assert images[0].startswith(b"\x89PNG")
    import io

    from PIL import Image

    im = Image.open(io.BytesIO(images[0]))
    assert im.size == (2 * 48, 48)  # two s-AMS side by side, 48 px high
    assert g._image_source([41]) == images


def test_dora_widget_ranks_and_names_the_results_own_outlier_score():
    """A result analysed with the k-th-neighbour score shows, labels, sorts and ranks by
    that score (its ``outlier_scores``), not by LOF; the default result by LOF."""
    from repwidgets.engines import dora

    A = torch.rand(20, 20, generator=torch.Generator().manual_seed(3)) + 2 * torch.eye(20)
    lof = dora.analyze_activations(A, embedding=None, n_neighbors=5, contamination=0.1)
    knn = dora.reanalyze(lof, outlier="knn")
    assert lof.outlier_score_name == "LOF" and knn.outlier_score_name == "k-th-neighbour distance"
    for r in (lof, knn):
        w = dora_view(r)
        name, score = r.outlier_score_name, r.outlier_scores.double().numpy()
        assert w.gallery.sort_by == name
        for p, card in enumerate(w.gallery.cards):
            assert card["scores"][name] == pytest.approx(score[p])
            assert w.heatmap.labels[p].endswith(f"{name} {score[p]:.2f}")
        ranks = [card["scores"]["outlier rank"] for card in w.gallery.cards]
        by_score = np.asarray(ranks)[np.argsort(-score, kind="stable")]
        assert by_score.tolist() == list(range(1, 21))  # rank 1: the highest score
    assert not np.allclose(knn.outlier_scores, knn.lof_scores)  # a different ranking score
    assert "LOF" not in dora_view(knn).gallery.cards[0]["scores"]


def test_dora_widget_without_signals():
    from repwidgets.engines import dora

    r = dora.analyze_activations(torch.rand(6, 6) + torch.eye(6), embedding=None)
    w = dora_view(r, gallery=False, order="none")
    assert w.gallery is None and not w.heatmap.has_thumbnails
    assert w.heatmap.order_ids == list(range(6))


def test_dora_view_is_registered_and_exported():
    from repwidgets.engines import dora
    from repwidgets.views import VIEWS, widget_for

    assert VIEWS["DoraResult"] == "repwidgets.views.dora:dora_view"
    r = dora.analyze_activations(torch.rand(5, 5) + torch.eye(5), embedding=None)
    w = widget_for(r, gallery=False)
    assert isinstance(w, DoraWidget) and w.heatmap.k == 5
    w.selected = [1, 3]
    assert w.heatmap.selected == [1, 3]
    with pytest.raises(ValueError, match="signals must be"):
        from repwidgets.views.dora import signal_thumbnails

        signal_thumbnails(torch.rand(2, 3), [0, 1], 48)
    assert np.allclose(w.heatmap.matrix, r.distances.double().numpy())
