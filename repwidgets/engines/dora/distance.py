"""DORA's distances between neurons: the data-free EA distance and, for checking it,
the functional distance of the neurons' activations over data."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["compared_vectors", "ea_distance", "functional_distance"]


def ea_distance(A: Tensor | np.ndarray) -> Tensor | np.ndarray:
    """Extreme-activation distance between the rows of an activation matrix.

    ``D[i, j] = sqrt((1 - clamp(cos(A_i, A_j), -1, 1)) / 2)`` with the diagonal set to 0,
    NaN (rows of zeros) replaced by 0 and the result symmetrised as ``(D + D.T) / 2``.
    The cosines are one k x k matrix product of the row-normalised matrix.

    Args:
        A: activations [k, k] (or [k, m]): row i holds the layer's response to the
            signals of neuron i. A torch tensor (any device) or a NumPy array.

    Returns:
        D [k, k], same type, device and floating dtype as ``A``; values in [0, 1]
        ([0, 1/sqrt(2)] for non-negative activations). In float32, rows pointing the
        same way get distances up to ~3e-4 instead of 0 (rounding of the cosine under
        the square root); pass float64 for exact values.

    Example:
        >>> ea_distance(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        tensor([[0.0000, 0.7071],
                [0.7071, 0.0000]])
    """
    if isinstance(A, np.ndarray):
        return ea_distance(torch.from_numpy(A)).numpy()
    if not isinstance(A, Tensor):
        raise TypeError(f"A must be a torch.Tensor or numpy array, got {type(A).__name__}.")
    if A.ndim != 2:
        raise ValueError(f"A must be a 2-D matrix [k, k], got shape {tuple(A.shape)}.")
    if not A.is_floating_point():
        A = A.float()
    with torch.no_grad():
        norms = A.norm(dim=1, keepdim=True)
        unit = A / norms  # rows of zeros become NaN and end as distance 0
        cos = unit @ unit.T
        D = torch.sqrt((1 - cos.clamp(-1.0, 1.0)) / 2)
        D.fill_diagonal_(0.0)
        D = torch.nan_to_num(D, nan=0.0)
        return (D + D.T) / 2


def compared_vectors(
    A: Tensor, representation: str = "responses", center: bool = False, equalise: bool = False
) -> Tensor:
    """The vectors whose EA distance DORA takes, one row per neuron.

    Args:
        A: [k, k], ``A[i, j]`` = activation of neuron j on the signals of neuron i.
        representation: "responses" gives the columns of A (a neuron's responses to
            every s-AMS), "signals" the rows (the layer's response to its s-AMS).
        center: first remove each neuron's mean response over the signals (the mean of
            its column), so that the cosine becomes a Pearson correlation.
        equalise: give every coordinate of the compared vectors the same weight. For
            "responses" a coordinate is one s-AMS: each row of A (after centring) is
            scaled to unit norm, so a signal that excites the whole layer strongly
            counts no more than one that excites it weakly (only the pattern of its
            responses over the neurons is kept); with ``center`` the columns are then
            centred again. For "signals" a coordinate is one responding neuron: each
            column is scaled to unit norm. Rows or columns of zeros stay zero.

    Returns:
        [k, k], row i describing neuron i.

    Example:
        >>> A = torch.tensor([[10.0, 0.0, 10.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
        >>> V = compared_vectors(A, equalise=True)  # every signal (row of A) weighs the same
        >>> torch.allclose(V.norm(dim=0), torch.ones(3))
        True
    """
    B = A - A.mean(dim=0, keepdim=True) if center else A
    if equalise:
        dim = 1 if representation == "responses" else 0
        norms = B.norm(dim=dim, keepdim=True)
        tiny = torch.finfo(B.dtype).tiny if B.is_floating_point() else 1e-30
        B = B / norms.clamp_min(tiny)
        if center and representation == "responses":
            B = B - B.mean(dim=0, keepdim=True)
    return B.T.contiguous() if representation == "responses" else B


def functional_distance(X: Tensor | np.ndarray) -> np.ndarray:
    """Distance between neurons' activation profiles over data: ``sqrt((1 - r) / 2)``.

    Args:
        X: activations [n_samples, k] (for example ``sess.activations(layer)``).

    Returns:
        NumPy array [k, k]; r is the Pearson correlation of two columns; constant
        columns get NaN rows.
    """
    x = X.detach().double().cpu().numpy() if isinstance(X, Tensor) else np.asarray(X, float)
    x = x - x.mean(axis=0, keepdims=True)
    norm = np.linalg.norm(x, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = x / norm
        r = np.clip(z.T @ z, -1.0, 1.0)
    D = np.sqrt((1.0 - r) / 2.0)
    np.fill_diagonal(D, 0.0)
    D[norm == 0, :] = np.nan
    D[:, norm == 0] = np.nan
    return D
