"""Oracle tests of s-AMS generation and the activation matrix
(repwidgets.engines.dora.signals), on networks whose neurons are known."""

from __future__ import annotations

import pytest
import torch
from dora_cases import DetectorNet
from torch import nn

from repwidgets.engines import dora
from repwidgets.engines.dora.layer import layer_fn, unit_responses


@pytest.fixture(scope="module")
def detector_signals():
    torch.manual_seed(0)
    model = DetectorNet()
    sig = dora.generate_signals(
        model, "relu", None, n_signals=2, steps=80, input_shape=(3, 32, 32), progress=False
    )
    return model, sig


def test_signals_trigger_their_known_detector(detector_signals):
    model, sig = detector_signals
    assert sig.shape == (5, 2, 3, 32, 32)
    assert sig.min() >= 0 and sig.max() <= 1
    colour = sig.mean(dim=(1, 3, 4))  # [5, 3] mean RGB per neuron's s-AMS
    assert colour[0].argmax() == 0 and colour[3].argmax() == 0  # red detectors -> red
    assert colour[1].argmax() == 1  # green detector -> green
    stripes = sig[2].mean(dim=1)  # [2, H, W] grey level of the stripe detector's signals
    dy = (stripes[:, 1:, :] - stripes[:, :-1, :]).abs().mean()
    dx = (stripes[:, :, 1:] - stripes[:, :, :-1]).abs().mean()
    assert dy > 2 * dx  # horizontal stripes: intensity changes along y, not along x


def test_optimisation_beats_random_images_by_far(detector_signals):
    model, sig = detector_signals
    fn = layer_fn(model, "relu")
    with torch.no_grad():
        own = unit_responses(fn(sig.flatten(0, 1))).view(5, 2, 5)
        rand = unit_responses(fn(torch.rand(64, 3, 32, 32)))
    for j in range(4):
        assert own[j, :, j].min() > rand[:, j].mean() + 10 * rand[:, j].std() + 1e-3


def test_ea_distances_and_dead_neuron_on_known_detectors(detector_signals):
    model, sig = detector_signals
    r = dora.analyze_signals(model, "relu", sig, layer_name="relu", embedding=None)
    assert r.is_dead.tolist() == [False, False, False, False, True]
    D = r.distances
    # the red detector and its double respond alike; both are far from green and stripes
    assert D[0, 3] < 0.05
    assert D[0, 1] > 0.3 and D[0, 2] > 0.15 and D[1, 2] > 0.15
    assert r.signals is not None and r.signals.shape == sig.shape
    # A[i, j] is the response of neuron j to neuron i's signals: each neuron's own
    # signals excite it more than the other detectors' signals do (ignore the double)
    A = r.activations
    for i, others in ((0, [1, 2]), (1, [0, 2, 3]), (2, [0, 1, 3])):
        assert all(A[i, i] > A[o, i] for o in others)


def test_generation_is_reproducible():
    model = DetectorNet()
    kwargs = dict(n_signals=1, steps=5, input_shape=(3, 16, 16), progress=False)
    a = dora.generate_signals(model, "conv", [0, 1], seed=1, **kwargs)
    b = dora.generate_signals(model, "conv", [0, 1], seed=1, **kwargs)
    c = dora.generate_signals(model, "conv", [0, 1], seed=2, **kwargs)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert all(p.requires_grad for p in model.parameters())  # the model is left as it was
    # a config gives the same signals as the same settings one by one
    config = dora.DoraConfig(n_signals=1, steps=5, input_shape=(3, 16, 16), seed=1)
    d = dora.generate_signals(model, "conv", [0, 1], config, progress=False)
    assert torch.equal(a, d)


def test_linear_layers_and_functions_work():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 6), nn.ReLU(), nn.Linear(6, 2))
    sig = dora.generate_signals(
        mlp, "1", [0, 2, 5], n_signals=2, steps=20, input_shape=(3, 8, 8), progress=False
    )
    assert sig.shape == (3, 2, 3, 8, 8)
    r = dora.analyze_signals(mlp, mlp[1], sig, neurons=[0, 2, 5], embedding=None)
    assert r.neurons.tolist() == [0, 2, 5]
    # each unit responds more to its own signals than to the other units' signals
    A = r.activations
    for i in range(3):
        assert all(A[i, i] > A[j, i] for j in range(3) if j != i)
    # a plain function images -> activations is a layer too
    sig2 = dora.generate_signals(
        mlp,
        lambda x: mlp[1](mlp[0](x)),
        [1, 3],
        n_signals=1,
        steps=3,
        input_shape=(3, 8, 8),
        progress=False,
    )
    assert sig2.shape == (2, 1, 3, 8, 8)


class _NoChannels(nn.Module):
    def forward(self, x):
        return x.mean(dim=(1, 2, 3))


def test_bad_layers_and_neurons_get_clear_errors():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), _NoChannels())
    kwargs = dict(steps=1, input_shape=(3, 8, 8), progress=False)
    with pytest.raises(ValueError, match="no channel dimension"):
        dora.generate_signals(model, "1", **kwargs)
    with pytest.raises(ValueError, match="Unknown layer 'nope'. Available layers: 0, 1"):
        dora.generate_signals(model, "nope", **kwargs)
    with pytest.raises(ValueError, match="at least 2"):
        dora.generate_signals(model, "0", neurons=[1], **kwargs)
    with pytest.raises(ValueError, match="out of range"):
        dora.generate_signals(model, "0", neurons=[0, 7], **kwargs)
    with pytest.raises(ValueError, match="not part of the model"):
        dora.generate_signals(model, nn.Conv2d(3, 4, 3), **kwargs)
    with pytest.raises(ValueError, match="n_signals"):
        dora.generate_signals(model, "0", n_signals=0, **kwargs)
    with pytest.raises(ValueError, match=r"\[k, n, C, H, W\]"):
        dora.analyze_signals(model, "0", torch.rand(4, 3, 8, 8))
    with pytest.raises(TypeError, match="pass the settings as config="):
        dora.generate_signals(model, "0", dora.DoraConfig(), **kwargs)


def test_signal_objective_is_the_own_mean_or_its_contrast_with_the_layer():
    """Element e's value: the mean over positions of its own neuron, minus the mean over
    all neurons of their means for "contrast", negated to minimise; checked by hand."""
    from repwidgets.engines.dora.signals import signal_objective

    torch.manual_seed(1)
    conv = nn.Conv2d(3, 4, 3)
    x = torch.rand(3, 3, 10, 10)
    out = conv(x).detach()  # [3, 4, 8, 8]
    unit_of = torch.tensor([2, 0, 3, 1, 2])
    elements = torch.tensor([0, 1, 4])
    means = out.mean(dim=(2, 3))  # [3, 4]
    plain = [means[b, unit_of[e]] for b, e in enumerate(elements)]
    contrast = [means[b, unit_of[e]] - means[b].mean() for b, e in enumerate(elements)]
    for objective, expected in (("mean", plain), ("contrast", contrast)):
        for minimize, sign in ((False, 1.0), (True, -1.0)):
            fn = signal_objective(conv, unit_of, minimize, None, objective)
            got = fn(x, elements).detach()
            torch.testing.assert_close(got, sign * torch.stack(expected))


def test_contrast_signals_single_out_their_neuron():
    """With "contrast" the green and the stripe detectors' s-AMS drive them further
    above the rest of the layer than with the plain mean, and the other neurons less."""
    model = DetectorNet()
    kw = dict(n_signals=1, steps=60, input_shape=(3, 24, 24), progress=False)
    fn = layer_fn(model, "relu")
    margins, others = {}, {}
    for objective in ("mean", "contrast"):
        sig = dora.generate_signals(model, "relu", [1, 2], objective=objective, **kw)
        with torch.no_grad():
            resp = unit_responses(fn(sig.flatten(0, 1)))  # [2, 5]
        margins[objective] = torch.stack([resp[0, 1] - resp[0].mean(), resp[1, 2] - resp[1].mean()])
        others[objective] = resp.sum() - resp[0, 1] - resp[1, 2]
    assert (margins["contrast"] > margins["mean"]).all(), margins
    assert others["contrast"] < 0.5 * others["mean"], others  # the rest stays quieter
    with pytest.raises(ValueError, match="objective must be one of"):
        dora.DoraConfig(objective="ratio")
