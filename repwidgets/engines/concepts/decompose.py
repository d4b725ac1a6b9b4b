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

__all__ = ["decompose", "decompose_gram", "gram_matrix", "orient"]


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
        return decompose_gram(gram_matrix(X, batch_rows), mean, n, n_components, center)
    Xd = X.to(torch.float64)
    if center:
        Xd = Xd - mean
    _, S, V = torch.linalg.svd(Xd, full_matrices=False)
    total = (Xd * Xd).sum()
    return _kept(n_components, S, V, total, mean, center)


def gram_matrix(X: Tensor, batch_rows: int | None = None) -> Tensor:
    """``X^T X`` [C, C] in float64 for ``X`` [n, C], accumulated over row batches.

    Sums over disjoint row blocks add up to the whole matrix, so shards of the rows
    (on several processes) can each compute theirs and the sums be added.

    Example:
        >>> X = torch.rand(10, 3)
        >>> bool(torch.allclose(gram_matrix(X[:4]) + gram_matrix(X[4:]), gram_matrix(X)))
        True
    """
    X = as_float_matrix(X)
    C = X.shape[1]
    rows = batch_rows or max(1, (64 * 2**20) // (8 * C))
    gram = torch.zeros(C, C, dtype=torch.float64, device=X.device)
    for start in range(0, X.shape[0], rows):
        block = X[start : start + rows].to(torch.float64)
        gram.addmm_(block.T, block)
    return gram


def decompose_gram(
    gram: Tensor,
    mean: Tensor,
    n: int,
    n_components: int | float = 32,
    center: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`decompose` from a precomputed Gram matrix ``X^T X`` and column mean of X.

    Args:
        gram: ``X^T X`` [C, C] (float64 recommended; e.g. summed over row shards with
            :func:`gram_matrix`).
        mean: the column mean of X [C].
        n: the number of rows of X.
        n_components, center: as in :func:`decompose`.

    Returns:
        ``(V [m, C], singular values [m], explained variance share [m], mean [C])`` as
        :func:`decompose` returns them.

    Example:
        >>> X = torch.rand(100, 4)
        >>> V, S, ev, mu = decompose_gram(gram_matrix(X), X.double().mean(0), 100, 2)
        >>> bool(torch.allclose(S, decompose(X, 2)[1]))
        True
    """
    C = int(gram.shape[0])
    if gram.shape != (C, C) or tuple(mean.shape) != (C,):
        raise ValueError(
            f"gram must be [C, C] and mean [C]; got {tuple(gram.shape)} and {tuple(mean.shape)}."
        )
    _checks.n_components(n_components, n, C)
    gram = gram.to(torch.float64)
    mean = mean.to(device=gram.device, dtype=torch.float64)
    if center:
        gram = gram - n * torch.outer(mean, mean)
    gram = (gram + gram.T) / 2
    evals, evecs = torch.linalg.eigh(gram)
    S = evals.flip(0).clamp_min(0).sqrt()
    V = evecs.flip(1).T
    return _kept(n_components, S, V, gram.diagonal().sum(), mean, center)


def _kept(
    n_components: int | float, S: Tensor, V: Tensor, total: Tensor, mean: Tensor, center: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The directions kept from a full decomposition (S descending, V's rows), checked."""
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
            stacklevel=3,
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
