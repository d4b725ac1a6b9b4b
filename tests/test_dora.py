"""Oracle tests of DORA (repwidgets.engines.dora)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from repwidgets.engines import dora


# ----------------------------------------------------------------------- EA distance
def _ea_reference(A: np.ndarray) -> np.ndarray:
    """The METHODS.md formula, written out pair by pair in float64."""
    k = A.shape[0]
    D = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            ni, nj = np.linalg.norm(A[i]), np.linalg.norm(A[j])
            cos = A[i] @ A[j] / (ni * nj) if ni > 0 and nj > 0 else np.nan
            D[i, j] = np.sqrt((1 - np.clip(cos, -1, 1)) / 2)
    np.fill_diagonal(D, 0)
    D = np.nan_to_num(D, nan=0.0)
    return (D + D.T) / 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ea_distance_equals_formula(seed):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(40, 40))
    A[3] = 0.0  # a row of zeros gives NaN cosines, which become 0
    D = dora.ea_distance(torch.from_numpy(A))
    assert isinstance(D, torch.Tensor) and D.dtype == torch.float64
    np.testing.assert_allclose(D.numpy(), _ea_reference(A), atol=1e-6)
    # float32 and NumPy input agree too
    D32 = dora.ea_distance(A.astype(np.float32))
    assert isinstance(D32, np.ndarray)
    np.testing.assert_allclose(D32, _ea_reference(A), atol=1e-5)


def test_ea_distance_properties():
    A = torch.rand(25, 25)  # non-negative activations: distances in [0, 1/sqrt(2)]
    D = dora.ea_distance(A)
    assert torch.equal(D, D.T)
    assert D.diagonal().abs().max() == 0
    assert D.min() >= 0 and D.max() <= 2**-0.5 + 1e-6
    # scaling a row does not move it; an opposite row is at distance 1
    B = torch.stack([torch.ones(3), 5 * torch.ones(3), -torch.ones(3)]).double()
    DB = dora.ea_distance(B)
    assert DB[0, 1].item() == pytest.approx(0.0, abs=1e-6)
    assert DB[0, 2].item() == pytest.approx(1.0, abs=1e-6)
    # in float32, sqrt(1 - cos) turns rounding of cos into distances up to ~3e-4
    assert dora.ea_distance(B.float())[0, 1].item() == pytest.approx(0.0, abs=5e-4)


def test_centred_distance_ignores_a_neurons_offset():
    """Adding a constant to a neuron's responses changes the plain cosine (the
    default), not the centred (Pearson) distance."""
    A = torch.rand(12, 12, generator=torch.Generator().manual_seed(2))
    shifted = A.clone()
    shifted[:, 3] += 5.0
    plain = [dora.analyze_activations(M, embedding=None) for M in (A, shifted)]
    centred = [dora.analyze_activations(M, embedding=None, center=True) for M in (A, shifted)]
    assert not torch.allclose(plain[0].distances, plain[1].distances, atol=1e-3)
    torch.testing.assert_close(centred[0].distances, centred[1].distances, atol=1e-5, rtol=0)


def test_ea_distance_rejects_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        dora.ea_distance(torch.rand(3, 3, 3))
    with pytest.raises(TypeError):
        dora.ea_distance([[1.0, 0.0], [0.0, 1.0]])


# --------------------------------------------------------------- analysis of A
def _planted_activations(seed: int = 0):
    """Three groups of 10 neurons, one odd neuron, one dead neuron.

    Neurons of a group excite each other's signals (block structure), so both rows (the
    layer's response to a neuron's signals) and columns (a neuron's responses to all
    signals) are alike within a group. The odd neuron's signals excite only itself and a
    few scattered neurons, and it barely responds to the other signals; the dead neuron's
    signals excite nothing and it responds to nothing.
    """
    g = torch.Generator().manual_seed(seed)
    k = 32
    group = torch.arange(k) // 10
    levels = torch.rand(3, 3, generator=g) * 0.3 + 0.1
    levels += torch.eye(3)  # a group's signals excite the group most
    A = levels[group.clamp(max=2)][:, group.clamp(max=2)].clone()
    A += 0.05 * torch.rand(k, k, generator=g)
    A[30] = torch.rand(k, generator=g) * 3 * (torch.arange(k) % 7 == 0)  # odd one's signals
    A[:30, 30] = 0.02 * torch.rand(30, generator=g)  # ... and its responses
    A[30, 30] = 4.0
    A[31, :] = 0.0
    A[:, 31] = 0.0
    return A


@pytest.mark.parametrize("representation", ["responses", "signals"])
def test_analyze_activations_flags_planted_outlier_and_dead_neuron(representation):
    A = _planted_activations()
    # the odd neuron is planted in the plain cosine geometry (its responses are small
    # everywhere), so compare without centring
    r = dora.analyze_activations(
        A, contamination=0.05, embedding="mds", representation=representation, center=False
    )
    assert r.is_dead.tolist() == [False] * 31 + [True]
    assert r.dead() == [31]
    scores = r.lof_scores.numpy()
    assert np.isnan(scores[31])
    assert int(np.nanargmax(scores)) == 30
    assert r.outliers()[0] == 30
    assert 31 not in r.outliers()
    frame = r.to_frame()
    assert list(frame.columns[:5]) == [
        "neuron",
        "lof_score",
        "outlier_rank",
        "is_outlier",
        "is_dead",
    ]
    assert frame.loc[30, "outlier_rank"] == 1
    # nearest neighbours stay inside a neuron's planted group (and skip the dead neuron)
    for i in (0, 12, 25):
        assert all(j // 10 == i // 10 for j in frame.loc[i, "neighbours"])
    assert np.isfinite(frame.loc[:30, ["umap_x", "umap_y"]].to_numpy()).all()
    assert np.isnan(frame.loc[31, "umap_x"])


@pytest.mark.slow
def test_umap_map_keeps_planted_groups_apart():
    r = dora.analyze_activations(_planted_activations(), embedding="umap")
    assert r.params["embedding"] == "umap"
    emb = r.embedding.numpy()[:30]
    groups = np.arange(30) // 10
    d = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
    same = d[groups[:, None] == groups[None]].mean()
    other = d[groups[:, None] != groups[None]].mean()
    assert same < 0.5 * other


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("representation", ["responses", "signals"])
def test_lof_scores_match_sklearn(representation, center):
    from sklearn.neighbors import LocalOutlierFactor

    A = torch.rand(20, 20, generator=torch.Generator().manual_seed(5))
    r = dora.analyze_activations(
        A, n_neighbors=6, embedding=None, representation=representation, center=center
    )
    assert r.params["center"] is center
    # "responses" compares columns of A (a neuron's responses to every s-AMS), "signals"
    # rows (the layer's response to a neuron's s-AMS); centring removes each neuron's
    # mean response over the signals (its column mean) first
    B = A - A.mean(dim=0, keepdim=True) if center else A
    D = dora.ea_distance(B.T if representation == "responses" else B).double().numpy()
    np.testing.assert_allclose(r.distances.double().numpy(), D, atol=1e-6)
    ref = LocalOutlierFactor(n_neighbors=6, metric="precomputed").fit(D)
    np.testing.assert_allclose(r.lof_scores.numpy(), -ref.negative_outlier_factor_, rtol=1e-5)


def test_small_layers_use_mds_map():
    A = torch.eye(5) + 0.1
    r = dora.analyze_activations(A)
    assert r.params["embedding"] == "mds"
    assert torch.isfinite(r.embedding).all()


def test_analyze_activations_rejects_bad_input():
    with pytest.raises(ValueError, match="k >= 2"):
        dora.analyze_activations(torch.ones(1, 1))
    with pytest.raises(ValueError, match="square"):
        dora.analyze_activations(torch.ones(3, 4))
    A = torch.rand(4, 4)
    A[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"neurons \[2\]"):
        dora.analyze_activations(A)
    with pytest.raises(ValueError, match="contamination"):
        dora.analyze_activations(torch.rand(4, 4), contamination=0.9)


def test_result_save_load_roundtrip(tmp_path):
    r = dora.analyze_activations(_planted_activations(), embedding=None, layer="conv")
    path = r.save(tmp_path / "dora.safetensors")
    back = dora.DoraResult.load(path)
    assert back.layer == "conv"
    assert torch.equal(back.distances, r.distances)
    assert torch.equal(back.is_dead, r.is_dead)
    assert back.params == r.params
    assert back.to_frame()["neuron"].tolist() == r.to_frame()["neuron"].tolist()


# -------------------------------------------------------- models with known neurons
class DetectorNet(nn.Module):
    """Fixed filters: 0 red, 1 green, 2 horizontal stripes, 3 = 2 x red, 4 dead.

    Every filter sums to zero over its window, so a flat grey or white image excites
    none of them: what drives a neuron is its colour or its pattern.
    """

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 7, padding=3)
        w = torch.zeros(5, 3, 7, 7)
        w[0, 0], w[0, 1], w[0, 2] = 1.0, -0.5, -0.5
        w[1, 1], w[1, 0], w[1, 2] = 1.0, -0.5, -0.5
        rows = torch.cos(torch.arange(7.0) * 2 * torch.pi / 6)
        rows = (rows - rows.mean())[:, None].expand(7, 7)
        w[2] = rows  # horizontal stripes with a period of 6 pixels, any colour
        w[3] = 2 * w[0]
        with torch.no_grad():
            self.conv.weight.copy_(w / 49)
            self.conv.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, -1.0]))
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(5, 2)

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


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
    fn = dora._layer_fn(model, "relu")
    with torch.no_grad():
        own = dora._unit_responses(fn(sig.flatten(0, 1))).view(5, 2, 5)
        rand = dora._unit_responses(fn(torch.rand(64, 3, 32, 32)))
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


class _Block(nn.Module):
    """conv -> in-place ReLU, as the last op of a block (a ResNet stage)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.conv(x))


def test_units_off_at_the_start_still_get_signals_inside_a_block():
    """Channels of a block that ends in an (in-place) ReLU and are off everywhere on the
    initial grey image are switched on by their s-AMS."""
    torch.manual_seed(0)
    model = nn.Sequential(_Block())
    with torch.no_grad():
        model[0].conv.bias.fill_(-0.2)  # all units but one start off on grey images
        start = model(torch.full((1, 3, 16, 16), 0.5)).flatten(2).amax(dim=2)
    assert int((start > 0).sum()) <= 1
    sig = dora.generate_signals(
        model, "0", None, n_signals=1, steps=40, input_shape=(3, 16, 16), progress=False
    )
    with torch.no_grad():
        out = model(sig.flatten(0, 1)).flatten(2).amax(dim=2)  # [6 signals, 6 channels]
    assert int((out.diagonal() > 0).sum()) >= 4


def test_generation_is_reproducible():
    model = DetectorNet()
    kwargs = dict(n_signals=1, steps=5, input_shape=(3, 16, 16), progress=False)
    a = dora.generate_signals(model, "conv", [0, 1], seed=1, **kwargs)
    b = dora.generate_signals(model, "conv", [0, 1], seed=1, **kwargs)
    c = dora.generate_signals(model, "conv", [0, 1], seed=2, **kwargs)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert all(p.requires_grad for p in model.parameters())  # the model is left as it was


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


# ------------------------------------------------------------------- session level
@pytest.fixture(scope="module")
def tiny_session():
    from repwidgets.session import Session

    g = torch.Generator().manual_seed(0)
    X = torch.rand(24, 3, 24, 24, generator=g)
    y = torch.randint(0, 2, (24,), generator=g)
    return Session(DetectorNet(), (X, y), device="cpu", progress=False)


def test_session_analyze_plot_and_frame(tiny_session):
    from bokeh.models import HoverTool
    from bokeh.plotting import figure

    r = dora.analyze(tiny_session, "relu", n_signals=2, steps=30, embedding="mds")
    assert r.layer == "relu" and r.signals.shape == (5, 2, 3, 24, 24)
    assert r.distances.shape == (5, 5)
    assert r.dead() == [4]
    frame = r.to_frame()
    assert len(frame) == 5 and frame["is_dead"].sum() == 1
    fig = r.plot()
    assert isinstance(fig, figure)
    hover = [t for t in fig.tools if isinstance(t, HoverTool)]
    assert hover and "@img" in hover[0].tooltips
    uris = [u for rd in fig.renderers for u in rd.data_source.data["img"]]
    assert len(uris) == 5 and all(u.startswith("data:image/png;base64,") for u in uris)
    assert r.params["steps"] == 30 and r.params["n_signals"] == 2


def test_session_analyze_unknown_layer(tiny_session):
    with pytest.raises(ValueError, match="Unknown layer"):
        dora.analyze(tiny_session, "features.conv9", steps=1)


# ----------------------------------------------------------------- the demo model
@pytest.mark.demo
@pytest.mark.slow
def test_demo_distances_tell_the_truth(demo_session):
    """On the demo model, the data-free EA distances agree with what the neurons do on
    real test images, and the planted artifact's detectors stand out together."""
    section = dora.demo_section(demo_session, embedding=None)
    r, v = section["result"], section["validation"]
    assert r.params["signal_shape"] == [3, 32, 32]
    assert v["n_live"] >= 0.5 * v["n_neurons"], v
    # (1) EA distance vs functional distance sqrt((1 - r) / 2) over pairs of live neurons
    assert v["spearman"] >= 0.3, v
    # (2) the artifact detectors are closer to each other than to the other neurons
    assert v["n_detectors"] >= 2, v
    assert v["within_between_auc"] >= 0.8, v
    # (3) ... and they stand out as outliers (LOF) or as their own cluster
    assert v["passes"]["outliers"], v
    # dead neurons are set aside, never outliers
    assert not (r.is_dead & r.is_outlier).any()
    # the top outliers are printed with their INVERT labels; a detector's names the artifact
    rows = [line.split(None, 2) for line in section["summary_lines"] if line.startswith("    ")]
    assert 1 <= len(rows) <= 8
    artifact = demo_session.data.config["artifact"]
    for neuron, _, label in rows:
        if int(neuron) in set(v["detectors"]):
            assert artifact in label, rows
