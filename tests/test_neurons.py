"""Per-neuron numerics against brute-force numpy (repwidgets.engines.neurons)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from repwidgets.engines import neurons


def _acts(n: int = 60, c: int = 7, seed: int = 0, ties: bool = True) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, generator=g)
    if ties:  # rounded values make ties, as ReLU zeros do
        x = torch.round(x * 2) / 2
    return x


def _quantile_rank_brute(values: np.ndarray) -> np.ndarray:
    """(average rank - 1) / (n - 1), ranks counted pair by pair."""
    n = len(values)
    out = np.empty(n)
    for i, v in enumerate(values):
        below = sum(1 for w in values if w < v)
        equal = sum(1 for w in values if w == v)
        out[i] = (below + (equal + 1) / 2 - 1) / (n - 1)
    return out


def test_top_activating_matches_sort():
    acts = _acts(ties=False)
    for unit in (0, 3, -1):
        got = neurons.top_activating(acts, unit, k=10)
        col = acts[:, unit].numpy()
        want = sorted(range(len(col)), key=lambda i: -col[i])[:10]
        assert got.dtype == torch.long
        assert got.tolist() == want


def test_top_activating_ties_keep_index_order_and_k_is_capped():
    acts = torch.tensor([[1.0], [2.0], [2.0], [0.0]])
    assert neurons.top_activating(acts, 0, k=3).tolist() == [1, 2, 0]
    assert neurons.top_activating(acts, 0, k=100).tolist() == [1, 2, 0, 3]


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((torch.zeros(5), 0), ValueError, "2-D"),
        ((torch.zeros(5, 3), 3), IndexError, "out of range"),
        ((torch.zeros(5, 3), 1.5), TypeError, "integer"),
        ((torch.zeros(5, 3), 0, 0), ValueError, "positive"),
    ],
)
def test_top_activating_errors(args, error, match):
    with pytest.raises(error, match=match):
        neurons.top_activating(*args)


def test_quantile_ranks_and_band_match_brute_force():
    values = _acts(n=41, c=1, seed=3)[:, 0]
    q = _quantile_rank_brute(values.numpy())
    assert np.allclose(neurons.quantile_ranks(values).numpy(), q)
    for band in [(0.0, 1.0), (0.4, 0.6), (0.9, 1.0), (0.0, 0.1), (0.25, 0.25)]:
        got = neurons.quantile_band(values, band)
        inside = [i for i in range(len(q)) if band[0] - 1e-12 <= q[i] <= band[1] + 1e-12]
        want = sorted(inside, key=lambda i: (values[i].item(), i))
        assert got.tolist() == want, band
        if len(got) > 1:  # ordered by value
            assert torch.all(values[got][1:] >= values[got][:-1])


def test_quantile_band_whole_range_returns_all_sorted():
    values = torch.tensor([0.5, 0.1, 0.9, 0.3, 0.7])
    assert neurons.quantile_band(values, (0.0, 1.0)).tolist() == [1, 3, 0, 4, 2]
    assert neurons.quantile_band(values, (0.25, 0.75)).tolist() == [3, 0, 4]


@pytest.mark.parametrize(
    ("band", "match"),
    [
        ((0.6, 0.4), "lo <= hi"),
        ((-0.1, 0.5), "lo <= hi"),
        ((0.5, 1.5), "lo <= hi"),
        ((0.5,), "pair"),
        ("ab", "pair"),
        (("a", "b"), "two numbers"),
    ],
)
def test_quantile_band_errors(band, match):
    with pytest.raises(ValueError, match=match):
        neurons.quantile_band(torch.arange(10.0), band)


def test_quantile_band_needs_one_dimension():
    with pytest.raises(ValueError, match="1-D"):
        neurons.quantile_band(torch.zeros(4, 2), (0.0, 1.0))


def _hypergeom_tail(a: int, n: int, k: int, m: int) -> float:
    """P(X >= a) for X hypergeometric: m draws from n items of which k are marked."""
    total = math.comb(n, m)
    return sum(math.comb(k, x) * math.comb(n - k, m - x) for x in range(a, min(k, m) + 1)) / total


def test_enrichment_matches_exact_hypergeometric():
    g = torch.Generator().manual_seed(1)
    n, k = 80, 5
    concepts = torch.rand(n, k, generator=g) < torch.tensor([0.1, 0.3, 0.5, 0.02, 0.0])
    members = torch.randperm(n, generator=g)[:20]
    concepts[members[:12], 0] = True  # concept 0 enriched among the members
    names = [f"c{j}" for j in range(k)]
    df = neurons.enrichment(concepts, members, names)
    assert list(df.columns) == ["concept", "n_in", "rate_in", "rate_out", "ratio", "p_value"]
    c = concepts.numpy()
    inside = np.zeros(n, bool)
    inside[members.numpy()] = True
    for _, row in df.iterrows():
        j = names.index(row.concept)
        a, total = int(c[inside, j].sum()), int(c[:, j].sum())
        assert row.n_in == a
        assert row.rate_in == pytest.approx(a / 20)
        assert row.rate_out == pytest.approx((total - a) / 60)
        assert row.p_value == pytest.approx(_hypergeom_tail(a, n, total, 20), rel=1e-9, abs=1e-15)
    assert df.concept.iloc[0] == "c0"
    assert df.p_value.is_monotonic_increasing
    nobody = df[df.concept == "c4"].iloc[0]
    assert np.isnan(nobody.ratio) and nobody.p_value == pytest.approx(1.0)


def test_enrichment_ratio_is_inf_when_only_members_carry_it_and_ties_sort_by_ratio():
    concepts = torch.tensor([[1, 1], [1, 0], [0, 1], [0, 0], [0, 0]], dtype=torch.bool)
    df = neurons.enrichment(concepts, torch.tensor([0, 1]), ["a", "b"])
    a = df[df.concept == "a"].iloc[0]
    assert math.isinf(a.ratio) and a.rate_out == 0.0
    assert df.concept.tolist() == ["a", "b"]


@pytest.mark.parametrize(
    ("members", "names", "error", "match"),
    [
        (torch.tensor([0, 0]), ["a"], ValueError, "repeated"),
        (torch.tensor([5]), ["a"], IndexError, "lie in"),
        (torch.tensor([0.0]), ["a"], TypeError, "integer"),
        (torch.tensor([0]), ["a", "b"], ValueError, "2 entries for 1"),
    ],
)
def test_enrichment_errors(members, names, error, match):
    with pytest.raises(error, match=match):
        neurons.enrichment(torch.zeros(3, 1, dtype=torch.bool), members, names)


def test_strongest_neurons_matches_brute_force():
    acts = _acts(n=50, c=9, seed=2)
    index = 17
    df = neurons.strongest_neurons(acts, index, k=9)
    x = acts.numpy().astype(float)
    pct = np.array([_quantile_rank_brute(x[:, j])[index] * 100 for j in range(9)])
    z = np.array([(x[index, j] - x[:, j].mean()) / x[:, j].std() for j in range(9)])
    want = sorted(range(9), key=lambda j: (-pct[j], -z[j]))
    assert df.neuron.tolist() == want
    assert np.allclose(df.percentile.to_numpy(), pct[want])
    assert np.allclose(df.z.to_numpy(), z[want])
    assert np.allclose(df.activation.to_numpy(), x[index, want])
    assert len(neurons.strongest_neurons(acts, index, k=3)) == 3


def test_strongest_neurons_constant_neuron_has_zero_z_and_errors():
    acts = torch.tensor([[1.0, 0.0], [1.0, 5.0], [1.0, 2.0]])
    df = neurons.strongest_neurons(acts, 1, k=2)
    assert df.neuron.tolist() == [1, 0]
    assert df.z.iloc[1] == 0.0 and df.percentile.iloc[1] == pytest.approx(50.0)
    with pytest.raises(IndexError, match="out of range"):
        neurons.strongest_neurons(acts, 3)


def test_concept_loadings_matches_brute_force():
    g = torch.Generator().manual_seed(4)
    vectors = torch.randn(6, 5, generator=g)
    vectors[2] = 0.0
    df = neurons.concept_loadings(vectors, 3)
    v = vectors.numpy().astype(float)
    want = sorted(range(6), key=lambda i: -abs(v[i, 3]))
    assert df.vector.tolist() == want
    assert np.allclose(df.loading.to_numpy(), v[want, 3])
    norms = np.linalg.norm(v, axis=1)
    share = np.where(norms > 0, np.abs(v[:, 3]) / np.where(norms > 0, norms, 1), 0.0)
    assert np.allclose(df.share.to_numpy(), share[want])
    with pytest.raises(IndexError, match="out of range"):
        neurons.concept_loadings(vectors, 5)
