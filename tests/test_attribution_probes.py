"""Tests of the linear concept probes (repwidgets.engines.attribution.probes).

``make_tiny_session`` is shared with the other attribution test modules.
"""

from __future__ import annotations

import functools

import pytest
import torch

from repwidgets.engines import attribution as A
from repwidgets.engines.attribution.probes import default_probe_layers, fit_probe

pytestmark = pytest.mark.usefixtures("one_thread")


def test_fit_probe_recovers_planted_direction():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(600, 8, generator=g) * torch.linspace(0.1, 10, 8) + 5
    direction = torch.zeros(8)
    direction[2] = 1.0
    y = (X - 5) @ direction > 0
    probe = fit_probe(X[:400], y[:400], X[400:], y[400:])
    assert probe.accuracy > 0.95
    cos = torch.nn.functional.cosine_similarity(probe.weight * X.std(0), direction, dim=0)
    assert cos > 0.9
    torch.testing.assert_close(
        probe.predict(X[400:]).float().mean(), y[400:].float().mean(), atol=0.05, rtol=0
    )


def test_default_probe_layers_follow_activations():
    from repwidgets.models.cnn import SmallCNN

    assert default_probe_layers(SmallCNN(4)) == [
        "features.relu1",
        "features.relu2",
        "features.relu3",
        "features.relu4",
    ]


def test_fit_probe_needs_both_labels():
    with pytest.raises(ValueError, match="both positive and negative"):
        fit_probe(torch.randn(10, 3), torch.zeros(10, dtype=torch.bool))


@functools.lru_cache(maxsize=1)
def make_tiny_session():
    """A small session (240 training images of 16 x 16, a narrow CNN trained 2 epochs),
    built once per test process and shared by the attribution test modules."""
    import repwidgets as rw
    from repwidgets.models.cnn import SmallCNN
    from repwidgets.models.train import train_model

    torch.set_num_threads(1)
    data = rw.datasets.shapes(n_train=240, n_test=120, n_val=120, image_size=16, seed=0)
    model = SmallCNN(4, widths=(4, 8, 8, 8))
    train_model(model, data, epochs=2, lr=5e-3, batch_size=32, seed=0, progress=False)
    return rw.Session(model, data, device="cpu", progress=False)


def test_probe_layers_and_explicit_ensemble(attribution_session):
    import copy

    sess = attribution_session
    other = copy.deepcopy(sess.model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.01 * torch.randn_like(p))
    p = A.probe_layers(sess, "watermark", models=[sess.model, other])
    df = p.to_frame()
    assert list(df["layer"]) == default_probe_layers(sess.model)
    assert (df["n_models"] == 2).all()
    assert ((df["balanced_accuracy"] >= 0) & (df["balanced_accuracy"] <= 1)).all()
    assert p.best_layer() in p.layers
