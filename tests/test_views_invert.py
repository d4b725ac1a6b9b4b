"""The INVERT view: a gallery whose cards carry each neuron's formula, scores and images."""

from __future__ import annotations

import pytest
import torch
from test_invert import _concepts, _FakeSession

from repwidgets.engines import invert
from repwidgets.engines.invert import explain_activations, formula_mask
from repwidgets.views.invert import invert_view
from repwidgets.widgets import NeuronGallery


def test_widget_cards_carry_formulas_scores_and_top_images():
    pytest.importorskip("anywidget")
    C, names = _concepts(n=300, K=4, seed=17)
    acts = torch.tensor(C[:, :3] * 1.0) + 0.1 * torch.randn(300, 3)
    sess = _FakeSession(acts, torch.tensor(C), names)
    r = invert.explain(sess, "layer", max_length=2, neurons=[2, 0])
    g = r.widget(images_per_card=4)
    assert isinstance(g, NeuronGallery)
    cards = {c["id"]: c for c in g.cards}
    assert sorted(cards) == [0, 2] and g.sort_by == "auc"
    for j, neuron in enumerate(r.neurons.tolist()):
        card = cards[neuron]
        assert card["label"] == r.formulas[j]["text"]
        assert card["scores"]["auc"] == pytest.approx(float(r.auc[j]))
        assert card["scores"]["neg_log10_p"] == pytest.approx(-float(r.log10_p[j]))
        expected = torch.argsort(acts[:, neuron], descending=True)[:4].tolist()
        assert [int(i) for i in card["images"]] == expected
    # clicking an image says whether the sample is inside the neuron's formula
    mask = formula_mask(r.formulas[0], torch.tensor(C))
    inside = int(torch.nonzero(mask)[0])
    outside = int(torch.nonzero(~mask)[0])
    assert g._detail_source(2, inside)["in formula"] == "yes"
    assert g._detail_source(2, outside)["in formula"] == "no"
    # without a session: cards with labels and scores, no images
    bare = explain_activations(acts, C, names, max_length=1, progress=False)
    g2 = bare.widget()
    assert [c["label"] for c in g2.cards] == [f["text"] for f in bare.formulas]
    assert all(not c.get("images") for c in g2.cards)
    # ... and with a session given to the view, the same result shows images
    g3 = invert_view(bare, images_per_card=2, session=sess)
    assert all(len(c["images"]) == 2 for c in g3.cards)
    with pytest.raises(ValueError, match="images_per_card"):
        invert_view(bare, images_per_card=-1)
