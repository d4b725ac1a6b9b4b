"""Oracle tests of DORA's options for groups of detectors: equalised signals
(repwidgets.engines.dora.distance.compared_vectors) and the k-th-neighbour outlier score
(repwidgets.engines.dora.outliers.knn_scores)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from dora_cases import planted_activations, planted_group

from repwidgets.engines import dora
from repwidgets.engines.dora.distance import compared_vectors
from repwidgets.engines.dora.outliers import knn_scores
from repwidgets.engines.dora.validation import _auc


def _equalised_reference(A: np.ndarray, center: bool) -> np.ndarray:
    """Neuron vectors of the "responses" representation, written out entry by entry."""
    k = A.shape[0]
    B = A - A.mean(axis=0) if center else A.copy()
    for i in range(k):  # signal i: its responses over the layer to unit norm
        norm = math.sqrt(sum(B[i, j] ** 2 for j in range(k)))
        B[i] = B[i] / norm if norm > 0 else B[i]
    if center:
        B = B - B.mean(axis=0)
    return B.T


@pytest.mark.parametrize("center", [False, True])
def test_equalised_vectors_match_reference(center):
    A = np.random.default_rng(3).normal(size=(9, 9))
    A[4] = 0.0  # a signal exciting nothing stays zero
    got = compared_vectors(torch.from_numpy(A), "responses", center=center, equalise=True)
    np.testing.assert_allclose(got.numpy(), _equalised_reference(A, center), atol=1e-12)


def test_equalised_signals_ignore_how_strongly_a_signal_excites_the_layer():
    """Scaling one signal's responses (a row of A) by 50 changes the paper's distance and
    not the equalised one; for "signals" scaling one neuron's responses does the same.
    (Centring first takes the mean over the signals, which the loud one shifts.)"""
    A = torch.rand(16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    loud = A.clone()
    loud[5] *= 50.0
    plain = [dora.ea_distance(compared_vectors(M)) for M in (A, loud)]
    equal = [dora.ea_distance(compared_vectors(M, equalise=True)) for M in (A, loud)]
    assert (plain[0] - plain[1]).abs().max() > 1e-2
    torch.testing.assert_close(equal[0], equal[1], atol=1e-12, rtol=0)
    wide = A.clone()
    wide[:, 7] *= 50.0
    rows = [dora.ea_distance(compared_vectors(M, "signals", equalise=True)) for M in (A, wide)]
    torch.testing.assert_close(rows[0], rows[1], atol=1e-12, rtol=0)


def test_knn_scores_are_the_kth_neighbour_distance():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 4))
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    scores, flags = knn_scores(D, 6, 0.1)
    k = 6
    for i in range(30):
        others = sorted(D[i, j] for j in range(30) if j != i)
        assert scores[i] == pytest.approx(others[k - 1])
    assert flags.sum() == 3 and scores[flags].min() >= scores[~flags].max()
    auto = knn_scores(D, 6, "auto")[1]
    spread = 1.4826 * np.median(np.abs(scores - np.median(scores)))
    assert (auto == (scores > np.median(scores) + 3 * spread)).all()


def test_knn_score_finds_a_tight_group_that_lof_misses():
    """Twelve neurons with one shared profile, far from a diffuse bulk of 52: LOF with
    10 neighbours scores them as ordinary, the 16th-neighbour distance ranks them first."""
    A = planted_group()
    group = np.arange(64) >= 52
    lof = dora.analyze_activations(
        A, embedding=None, n_neighbors=10, contamination=0.2, outlier="lof"
    )
    knn = dora.reanalyze(lof, outlier="knn", n_neighbors=16)
    lof16 = dora.reanalyze(lof, outlier="lof", n_neighbors=16)  # LOF is kept either way
    torch.testing.assert_close(knn.lof_scores, lof16.outlier_scores, equal_nan=True)
    assert _auc(lof.lof_scores.numpy(), group) < 0.6
    assert _auc(knn.outlier_scores.numpy(), group) == 1.0
    assert set(knn.outliers()[:12]) == set(range(52, 64))
    assert knn.is_outlier.sum() == math.ceil(0.2 * 64)
    assert knn.to_frame()["outlier_rank"].iloc[52:].max() == 12


def test_knn_results_keep_their_score_through_save_and_load(tmp_path):
    r = dora.analyze_activations(planted_activations(), embedding=None, outlier="knn")
    assert np.isnan(r.outlier_scores[31].item())  # the dead neuron
    back = dora.DoraResult.load(r.save(tmp_path / "r.safetensors"))
    torch.testing.assert_close(back.outlier_scores, r.outlier_scores, equal_nan=True)
    assert back.outliers() == r.outliers() and back.params["outlier"] == "knn"
    # a result saved before the field existed ranks by its LOF scores
    old = dora.DoraResult(**{**vars(back), "outlier_scores": None})
    assert np.array_equal(old.ranking_scores(), back.lof_scores.double().numpy(), equal_nan=True)


def test_bad_outlier_settings_are_refused():
    with pytest.raises(ValueError, match="outlier must be one of"):
        dora.DoraConfig(outlier="iforest")


# ------------------------------------------------------- one detector among the rest
def _single_detector_reference(A: np.ndarray, group: np.ndarray, k: int) -> float:
    """Each group member alone among the non-members, written out with numpy and
    sklearn: plain cosine EA distance of the responses (columns), LOF, share below."""
    from sklearn.neighbors import LocalOutlierFactor

    others = np.nonzero(~group)[0]
    shares = []
    for d in np.nonzero(group)[0]:
        keep = np.r_[others, d]
        V = A[np.ix_(keep, keep)].T  # row = one neuron's responses to the kept signals
        unit = V / np.linalg.norm(V, axis=1, keepdims=True)
        D = np.sqrt(np.clip((1 - np.clip(unit @ unit.T, -1, 1)) / 2, 0, None))
        np.fill_diagonal(D, 0)
        lof = LocalOutlierFactor(n_neighbors=k, metric="precomputed").fit(D)
        s = -lof.negative_outlier_factor_
        shares.append((s[:-1] < s[-1]).mean() + 0.5 * (s[:-1] == s[-1]).mean())
    return float(np.mean(shares))


def test_single_detector_auc_matches_reference():
    """The share of non-members below each member alone, averaged, equals the one
    computed by hand on the layer without the other members."""
    from repwidgets.engines.dora.config import DoraConfig
    from repwidgets.engines.dora.validation import _ea_of, _single_detector_auc

    A = torch.rand(40, 40, generator=torch.Generator().manual_seed(3)).double()
    group = np.zeros(40, dtype=bool)
    group[[4, 11, 30]] = True
    cfg = DoraConfig(n_neighbors=8)
    ours = _single_detector_auc(lambda keep: _ea_of(A[keep][:, keep], cfg), group, cfg)
    assert ours == pytest.approx(_single_detector_reference(A.numpy(), group, 8), abs=1e-6)


def test_lof_finds_each_member_of_the_group_it_misses_when_alone():
    """The tight group of twelve that LOF takes for ordinary neurons: each member alone
    among the bulk is LOF's top outlier, and the k-th neighbour's too."""
    from repwidgets.engines.dora.config import DoraConfig
    from repwidgets.engines.dora.validation import _ea_of, _single_detector_auc

    A = planted_group().double()
    group = np.arange(64) >= 52
    for outlier in ("lof", "knn"):
        cfg = DoraConfig(n_neighbors=10, outlier=outlier)
        single = _single_detector_auc(
            lambda keep, cfg=cfg: _ea_of(A[keep][:, keep], cfg), group, cfg
        )
        assert single == 1.0, outlier
    lof = dora.analyze_activations(A, embedding=None, n_neighbors=10)
    assert _auc(lof.lof_scores.numpy(), group) < 0.6
    assert math.isnan(_single_detector_auc(lambda keep: None, np.zeros(64, bool), cfg))
