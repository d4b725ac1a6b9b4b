"""Economy SVD of pooled activations: the top right singular vectors, oriented.

For ``n >= 2 C`` the right singular vectors come from the eigendecomposition of the
C x C Gram matrix ``X^T X``, accumulated in float64 over row batches (partial sums
combine exactly, so the data never needs to be in one piece); otherwise from
``torch.linalg.svd(X, full_matrices=False)``. The n x n left factor is never formed.
A singular vector is defined up to sign: :func:`orient` puts each one's tail of extreme
samples on the positive side (the side the clustering looks at).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from repwidgets.engines import _checks

from .inputs import as_float_matrix

__all__ = ["decompose", "orient"]


def decompose(
    X: Tensor,
    n_components: int | float = 32,
    center: bool = False,
    batch_rows: int | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Economy SVD of ``X`` [n, C]: the top right singular vectors, never the left factor.

    Args:
        X: activations [n, C] (any device; the work stays there).
        n_components: number of directions m, or a float in (0, 1): the fewest
            directions whose explained variance adds up to at least that share.
        center: decompose ``X - X.mean(0)`` instead of ``X``.
        batch_rows: rows per batch when accumulating the Gram matrix (bounds memory).

    Returns:
        ``(V [m, C], singular values [m], explained variance share [m], mean [C])``,
        float32 on X's device, singular values descending. Signs are as the
        eigensolver returns them (see :func:`discover_activations` for orientation).

    Example:
        >>> V, S, ev, mu = decompose(torch.rand(100, 8), n_components=3)
        >>> V.shape, bool((S[:-1] >= S[1:]).all())
        (torch.Size([3, 8]), True)
    """
    X = as_float_matrix(X)
    n, C = X.shape
    _checks.n_components(n_components, n, C)
    if n > 1 and bool((X[:1] == X).all()):
        raise ValueError(
            "X has no variation: every sample has the same activation vector, so there is "
            "nothing to discover. Check that the layer is not dead (e.g. all zeros after a "
            "ReLU) and that the samples differ."
        )
    mean = X.mean(dim=0, dtype=torch.float64)
    if n >= 2 * C:
        rows = batch_rows or max(1, (64 * 2**20) // (8 * C))
        gram = torch.zeros(C, C, dtype=torch.float64, device=X.device)
        for start in range(0, n, rows):
            block = X[start : start + rows].to(torch.float64)
            gram.addmm_(block.T, block)
        if center:
            gram -= n * torch.outer(mean, mean)
        gram = (gram + gram.T) / 2
        evals, evecs = torch.linalg.eigh(gram)
        evals = evals.flip(0).clamp_min(0)
        S = evals.sqrt()
        V = evecs.flip(1).T
        total = gram.diagonal().sum()
    else:
        Xd = X.to(torch.float64)
        if center:
            Xd = Xd - mean
        _, S, V = torch.linalg.svd(Xd, full_matrices=False)
        total = (Xd * Xd).sum()
    if float(total) <= 0 or float(S[0]) <= 1e-12 * math.sqrt(max(float(total), 1e-300)):
        raise ValueError(
            "X has no variation to decompose: every sample has the same activation vector"
            + (" (after centering)" if center else "")
            + ". Check that the layer is not dead (all zeros) and that the samples differ."
        )
    share = (S * S) / total
    m = _n_kept(n_components, share)
    rank = int((1e-6 * S[0] < S).sum())
    if rank < m:
        warnings.warn(
            f"X has rank {rank} (numerically), fewer than the {m} directions asked for: "
            f"keeping {rank}.",
            stacklevel=2,
        )
        m = rank
    return (
        V[:m].to(torch.float32).contiguous(),
        S[:m].to(torch.float32),
        share[:m].to(torch.float32),
        mean.to(torch.float32),
    )


def _n_kept(n_components: int | float, share: Tensor) -> int:
    if isinstance(n_components, float) and not float(n_components).is_integer():
        cum = share.cumsum(0)
        return int(min(int((cum < n_components).sum()) + 1, share.shape[0]))
    return int(n_components)


def orient(P: Tensor, top_t: int) -> Tensor:
    """Signs [m] that put each column's extreme tail (top_t largest |P|) on the positive side."""
    t = min(top_t, P.shape[0])
    idx = P.abs().topk(t, dim=0).indices
    tail = P.gather(0, idx).sum(dim=0)
    return torch.where(tail < 0, -1.0, 1.0).to(P.dtype)
