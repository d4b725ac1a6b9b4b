"""Oracle tests of DORA's analysis of the activation matrix
(repwidgets.engines.dora.outliers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dora_cases import planted_activations

from repwidgets.engines import dora


def test_centred_distance_ignores_a_neurons_offset():
    """Adding a constant to a neuron's responses changes the plain cosine (the
    default), not the centred (Pearson) distance."""
    A = torch.rand(12, 12, generator=torch.Generator().manual_seed(2))
    shifted = A.clone()
    shifted[:, 3] += 5.0
    plain = [dora.analyze_activations(M, embedding=None, center=False) for M in (A, shifted)]
    centred = [dora.analyze_activations(M, embedding=None, center=True) for M in (A, shifted)]
    assert not torch.allclose(plain[0].distances, plain[1].distances, atol=1e-3)
    torch.testing.assert_close(centred[0].distances, centred[1].distances, atol=1e-5, rtol=0)


@pytest.mark.parametrize("representation", ["responses", "signals"])
def test_analyze_activations_flags_planted_outlier_and_dead_neuron(representation):
    A = planted_activations()
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


def test_config_and_overrides_give_the_same_result():
    A = planted_activations()
    config = dora.DoraConfig(contamination=0.05, embedding=None)
    a = dora.analyze_activations(A, config=config)
    b = dora.analyze_activations(A, contamination=0.05, embedding=None)
    c = dora.analyze_activations(A, None, config, n_neighbors=5)
    assert torch.equal(a.is_outlier, b.is_outlier) and a.params == b.params
    assert c.params["n_neighbors"] == 5 and c.params["contamination"] == 0.05
    assert not torch.equal(torch.nan_to_num(a.lof_scores), torch.nan_to_num(c.lof_scores))
    with pytest.raises(TypeError, match="pass the settings as config="):
        dora.analyze_activations(A, config)


@pytest.mark.slow
def test_umap_map_keeps_planted_groups_apart():
    r = dora.analyze_activations(planted_activations(), embedding="umap")
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
    with pytest.raises(ValueError, match="dead has 3 entries; expected 4"):
        dora.analyze_activations(torch.rand(4, 4), dead=[True, False, False])


def test_defaults_are_the_specifications_plain_cosine_and_lof():
    """With the defaults the EA distance is the plain (uncentred) cosine formula of
    METHODS.md, the outlier score is LOF on the precomputed distances, and the flags
    are LOF's at ``contamination`` (sklearn is the oracle)."""
    from sklearn.neighbors import LocalOutlierFactor

    A = torch.rand(40, 40, generator=torch.Generator().manual_seed(11))
    r = dora.analyze_activations(A, embedding=None, contamination=0.1)
    assert r.params["center"] is False and r.params["outlier"] == "lof"
    assert r.params["transforms"] is None  # s-AMS without robustness transforms
    cos = torch.nn.functional.cosine_similarity(A.T[:, None], A.T[None, :], dim=-1)
    D = torch.sqrt((1 - cos.clamp(-1, 1)).clamp_min(0) / 2).double()
    D.fill_diagonal_(0)
    np.testing.assert_allclose(r.distances.double().numpy(), D.numpy(), atol=1e-6)
    torch.testing.assert_close(r.outlier_scores, r.lof_scores)
    est = LocalOutlierFactor(n_neighbors=20, metric="precomputed", contamination=0.1)
    flags = est.fit_predict(r.distances.double().numpy()) == -1
    np.testing.assert_allclose(r.lof_scores.numpy(), -est.negative_outlier_factor_, rtol=1e-5)
    assert flags.sum() == 4 and (r.is_outlier.numpy() == flags).all()
