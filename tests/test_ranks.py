"""Rank numerics against scipy and scikit-learn: average ranks, AUROC with ties, Mann-Whitney p."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import mannwhitneyu, norm, rankdata
from sklearn.metrics import roc_auc_score

from repwidgets.engines.ranks import (
    auc_matrix,
    average_ranks,
    centered_ranks,
    mann_whitney_p,
    ranks_of_rows,
    tie_term,
)


def _tied_data(seed=0, n=300, N=6, M=5):
    rng = np.random.default_rng(seed)
    acts = rng.integers(0, 9, size=(n, N)).astype(np.float64)  # many ties
    acts[:, 0] = rng.normal(size=n)  # one column without ties
    acts[:, 1] = 3.0  # a constant column
    masks = rng.random((n, M)) < rng.uniform(0.05, 0.7, M)
    return torch.tensor(acts), torch.tensor(masks)


def test_average_ranks_equal_scipy_rankdata():
    acts, _ = _tied_data()
    ours = average_ranks(acts).numpy()
    np.testing.assert_array_equal(ours, rankdata(acts.numpy(), axis=0))
    # the row layout gives the same ranks
    q_rows, ties_rows = ranks_of_rows(acts.T.contiguous())
    np.testing.assert_array_equal(q_rows.T.numpy(), centered_ranks(acts).numpy())
    np.testing.assert_allclose(ties_rows.numpy(), tie_term(acts).numpy())


def test_tie_term_counts_groups():
    x = torch.tensor([1.0, 1.0, 2.0, 3.0, 3.0, 3.0])
    assert float(tie_term(x)) == (2**3 - 2) + (3**3 - 3)


def test_auc_matrix_equals_sklearn_with_ties():
    acts, masks = _tied_data(seed=1)
    ours = auc_matrix(acts, masks).numpy()
    ref = np.array(
        [
            [roc_auc_score(masks[:, k].numpy(), acts[:, j].numpy()) for k in range(masks.shape[1])]
            for j in range(acts.shape[1])
        ]
    )
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)
    # float32 products are close, too
    np.testing.assert_allclose(auc_matrix(acts, masks, dtype=torch.float32).numpy(), ref, atol=1e-5)


def test_auc_of_complement_is_one_minus_auc():
    acts, masks = _tied_data(seed=2)
    a = auc_matrix(acts, masks)
    b = auc_matrix(acts, ~masks)
    np.testing.assert_allclose((a + b).numpy(), 1.0, atol=1e-12)


def test_auc_of_empty_or_full_mask_is_nan():
    acts, _ = _tied_data()
    masks = torch.zeros(acts.shape[0], 2, dtype=torch.bool)
    masks[:, 1] = True
    assert torch.isnan(auc_matrix(acts, masks)).all()


@pytest.mark.parametrize("continuity", [True, False])
def test_mann_whitney_p_equals_scipy(continuity):
    acts, masks = _tied_data(seed=3)
    auc = auc_matrix(acts, masks)
    p, log10_p = mann_whitney_p(
        auc, masks.sum(0)[None, :], acts.shape[0], tie_term(acts)[:, None], continuity=continuity
    )
    for j in range(acts.shape[1]):
        for k in range(masks.shape[1]):
            inside = acts[masks[:, k], j].numpy()
            outside = acts[~masks[:, k], j].numpy()
            if np.ptp(acts[:, j].numpy()) == 0:  # all tied: scipy gives nan, we give p = 1
                assert float(p[j, k]) == 1.0
                continue
            ref = mannwhitneyu(
                inside,
                outside,
                alternative="two-sided",
                method="asymptotic",
                use_continuity=continuity,
            ).pvalue
            assert float(p[j, k]) == pytest.approx(ref, rel=1e-9, abs=1e-15)
            assert float(log10_p[j, k]) == pytest.approx(math.log10(ref), rel=1e-9, abs=1e-12)
            # argument order does not matter for a two-sided test
            assert float(p[j, k]) == pytest.approx(
                mannwhitneyu(
                    outside, inside, method="asymptotic", use_continuity=continuity
                ).pvalue,
                rel=1e-9,
                abs=1e-15,
            )


def test_log10_p_does_not_underflow():
    # a perfect detector on 100,000 samples: p far below the smallest double
    n, n_pos = 100_000, 20_000
    acts = torch.arange(n, dtype=torch.float64)
    mask = acts >= n - n_pos
    auc = auc_matrix(acts, mask)
    p, log10_p = mann_whitney_p(auc, mask.sum(), n, tie_term(acts), continuity=False)
    assert float(auc) == 1.0
    # oracle: z from the U statistic, then scipy's log survival function (no underflow)
    prod = n_pos * (n - n_pos)
    z = (prod - prod / 2) / math.sqrt(prod / 12 * (n + 1))
    expected = (math.log(2) + norm.logsf(z)) / math.log(10)
    assert math.isfinite(float(log10_p)) and float(log10_p) < -1000
    assert float(log10_p) == pytest.approx(expected, rel=1e-9)
    assert float(p) == 0.0  # underflows as a plain float, which is why log10_p exists


def test_auc_matrix_errors():
    with pytest.raises(ValueError, match="samples"):
        auc_matrix(torch.randn(10, 2), torch.zeros(9, 1, dtype=torch.bool))
    with pytest.raises(TypeError, match="boolean"):
        auc_matrix(torch.randn(10, 2), torch.full((10, 1), 0.5))
    x = torch.randn(10, 3)
    x[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"NaN for columns \[1\]"):
        auc_matrix(x, torch.rand(10, 1) < 0.5)
