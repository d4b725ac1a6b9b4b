"""Oracle tests of DORA's distances (repwidgets.engines.dora.distance)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repwidgets.engines import dora


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


def test_ea_distance_rejects_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        dora.ea_distance(torch.rand(3, 3, 3))
    with pytest.raises(TypeError):
        dora.ea_distance([[1.0, 0.0], [0.0, 1.0]])


def test_functional_distance_is_pearson_of_columns():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 6))
    X[:, 4] = 2.0  # a constant neuron has no correlation: its row and column are NaN
    D = dora.functional_distance(torch.from_numpy(X))
    live = [0, 1, 2, 3, 5]
    r = np.corrcoef(X[:, live], rowvar=False)
    expected = np.sqrt((1 - r) / 2)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(D[np.ix_(live, live)], expected, atol=1e-12)
    assert np.isnan(D[4]).all() and np.isnan(D[:, 4]).all()
