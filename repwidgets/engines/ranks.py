"""Rank statistics shared by the engines: average ranks, AUROC of many masks, Mann-Whitney p.

The AUROC of a score vector ``a`` [n] for a boolean mask ``m`` [n] (positives = ``m``) is
the Mann-Whitney statistic ``U`` divided by ``n+ * n-``. With average ranks ``r`` (ties get
the mean of the ranks they span) it is

    AUC(m) = (sum(r[m]) - n+ (n+ + 1) / 2) / (n+ n-),

so once the ranks of a neuron are known, the AUC of *any* mask is one dot product, and
the AUCs of M masks for N neurons are one matrix product ``R^T M`` ([N, n] x [n, M]).

We work with *doubled, centred* ranks ``q = 2 r - (n + 1)``: integers (ties give
half-ranks, doubled they are whole), symmetric around 0, summing to 0 over all samples.
Then ``AUC(m) = 1/2 + sum(q[m]) / (2 n+ n-)``, the complement has ``sum(q[~m]) =
-sum(q[m])`` (so ``AUC(~m) = 1 - AUC(m)`` exactly), and the sums stay small enough to be
exact in float64 for n up to tens of millions, and accurate in float32 (each term is at
most n in magnitude, with no large offset to cancel).

Example:
    >>> import torch
    >>> from repwidgets.engines.ranks import auc_matrix
    >>> acts = torch.tensor([[0.1], [0.4], [0.35], [0.8]])       # 4 samples, 1 neuron
    >>> masks = torch.tensor([[False], [True], [False], [True]])  # 1 mask
    >>> auc_matrix(acts, masks)
    tensor([[1.]], dtype=torch.float64)
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "ranks_of_rows",
    "average_ranks",
    "centered_ranks",
    "tie_term",
    "auc_from_ranksum",
    "auc_matrix",
    "mann_whitney_log10_p",
    "mann_whitney_p",
]

_LN10 = math.log(10.0)


def _as_2d(scores: torch.Tensor, name: str = "scores") -> tuple[torch.Tensor, bool]:
    if not isinstance(scores, torch.Tensor):
        scores = torch.as_tensor(scores)
    if scores.ndim == 1:
        return scores[:, None], True
    if scores.ndim != 2:
        raise ValueError(
            f"{name} must be a 1-D [n] or 2-D [n, N] tensor (samples x neurons); "
            f"got shape {tuple(scores.shape)}. Pool spatial maps first (e.g. mean over H, W)."
        )
    return scores, False


def ranks_of_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Doubled centred average ranks of each *row* of ``rows`` [N, n], and tie terms [N].

    The row layout keeps every sort contiguous in memory (fast); see
    :func:`centered_ranks` for the column layout used elsewhere.
    """
    if rows.dtype == torch.bool:
        rows = rows.to(torch.uint8)
    if torch.is_complex(rows):
        raise TypeError("scores must be real numbers, not complex.")
    N, n = rows.shape
    if rows.device.type == "cpu" and rows.dtype != torch.bfloat16 and not rows.requires_grad:
        # numpy's argsort is about twice as fast as torch.sort on the CPU
        order = torch.from_numpy(np.argsort(rows.numpy(), axis=1))
        values = rows.gather(1, order)
    else:
        values, order = torch.sort(rows, dim=1)
    pos = torch.arange(n, device=rows.device).expand(N, n)
    new = torch.ones_like(values, dtype=torch.bool)
    new[:, 1:] = values[:, 1:] != values[:, :-1]
    del values
    last = torch.ones_like(new)
    last[:, :-1] = new[:, 1:]
    start = torch.where(new, pos, 0).cummax(dim=1).values
    end = torch.where(last, pos, n - 1).flip(1).cummin(dim=1).values.flip(1)
    del new, last
    q_sorted = start + end + (1 - n)  # 2 * ((start+1 + end+1) / 2) - (n + 1)
    q = torch.empty_like(q_sorted).scatter_(1, order, q_sorted)
    t = (end - start + 1).to(torch.float64)
    ties = (t * t - 1.0).sum(1)  # each group of size t contributes t * (t^2 - 1) = t^3 - t
    return q, ties


def centered_ranks(scores: torch.Tensor, return_tie_term: bool = False):
    """Doubled centred average ranks ``q = 2 r - (n + 1)`` of each column, exact under ties.

    Args:
        scores: [n] or [n, N] real tensor (NaN not allowed: it has no rank).
        return_tie_term: also return ``sum over tie groups of (t^3 - t)`` per column
            (float64 [N]), the tie correction of the Mann-Whitney variance.

    Returns:
        int64 tensor of the same shape as ``scores`` (values in [-(n-1), n-1], same
        parity as n-1), and optionally the tie term.

    Example:
        >>> centered_ranks(torch.tensor([3.0, 1.0, 3.0]))   # ranks 2.5, 1, 2.5
        tensor([ 1, -2,  1])
    """
    x, squeeze = _as_2d(scores)
    q, ties = ranks_of_rows(x.T.contiguous())
    q = q.T
    if squeeze:
        q, ties = q[:, 0], ties[0]
    return (q, ties) if return_tie_term else q


def average_ranks(scores: torch.Tensor) -> torch.Tensor:
    """Average ranks (1..n, ties share the mean of their ranks) of each column, float64.

    Same as ``scipy.stats.rankdata(scores, axis=0)``.

    Example:
        >>> average_ranks(torch.tensor([3.0, 1.0, 3.0]))
        tensor([2.5000, 1.0000, 2.5000], dtype=torch.float64)
    """
    x, _ = _as_2d(scores)
    q = centered_ranks(scores).to(torch.float64)
    return (q + (x.shape[0] + 1)) / 2.0


def tie_term(scores: torch.Tensor) -> torch.Tensor:
    """Sum over tie groups of ``t^3 - t`` for each column of ``scores`` (float64 [N] or scalar)."""
    return centered_ranks(scores, return_tie_term=True)[1]


def auc_from_ranksum(q_sum: torch.Tensor, n_pos: torch.Tensor, n: int) -> torch.Tensor:
    """AUROC from the sum of doubled centred ranks over a mask with ``n_pos`` members.

    ``AUC = 1/2 + q_sum / (2 n+ (n - n+))``; NaN where the mask is empty or full.
    """
    q_sum = q_sum.to(torch.float64)
    n_pos = torch.as_tensor(n_pos, device=q_sum.device).to(torch.float64)
    denom = 2.0 * n_pos * (n - n_pos)
    ok = denom > 0
    return torch.where(ok, 0.5 + q_sum / torch.where(ok, denom, 1.0), torch.nan)


def auc_matrix(
    scores: torch.Tensor,
    masks: torch.Tensor,
    *,
    q: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float64,
    batch_size: int | None = None,
) -> torch.Tensor:
    """AUROC of every score column for every boolean mask, as one matrix product.

    Args:
        scores: [n, N] (or [n]) activations of N neurons on n samples.
        masks: [n, M] (or [n]) booleans: the positive samples of each of M masks
            (concepts, formulas, classes). 0/1 integers are accepted.
        q: precomputed ``centered_ranks(scores)`` (to reuse across calls).
        dtype: dtype of the product. float64 (default) is exact (integer sums); float32
            is faster and accurate to about 1e-6.
        batch_size: neurons per product, to bound memory (default: all).

    Returns:
        float64 [N, M]: AUC[j, k] = P(score_j of a positive > of a negative) + 0.5 P(tie),
        equal to ``sklearn.metrics.roc_auc_score(masks[:, k], scores[:, j])``. NaN for a
        mask that is empty or contains every sample.

    Example:
        >>> acts = torch.randn(1000, 64)                # 64 neurons
        >>> concepts = torch.rand(1000, 10) < 0.2       # 10 concepts
        >>> auc_matrix(acts, concepts).shape
        torch.Size([64, 10])
    """
    x, _ = _as_2d(scores)
    m, _ = _as_2d(masks, "masks")
    if m.shape[0] != x.shape[0]:
        raise ValueError(
            f"scores have {x.shape[0]} samples but masks have {m.shape[0]}; "
            "both must be indexed by the same samples (first dimension)."
        )
    if m.dtype != torch.bool:
        if torch.is_floating_point(m) or not bool(((m == 0) | (m == 1)).all()):
            raise TypeError("masks must be boolean (or 0/1 integers).")
        m = m.bool()
    if bool(torch.isnan(x).any()) if torch.is_floating_point(x) else False:
        bad = torch.nonzero(torch.isnan(x).any(0)).flatten().tolist()
        raise ValueError(f"scores contain NaN for columns {bad[:20]}; remove or fill them first.")
    n, N = x.shape
    if q is None:
        q = centered_ranks(x)
    mf = m.to(device=x.device, dtype=dtype)
    n_pos = m.sum(0).to(x.device)
    step = N if batch_size is None else max(1, int(batch_size))
    out = []
    for lo in range(0, N, step):
        sums = q[:, lo : lo + step].to(dtype).T @ mf  # [b, M]
        out.append(auc_from_ranksum(sums, n_pos[None, :], n))
    return torch.cat(out, 0) if out else torch.empty(0, m.shape[1], dtype=torch.float64)


def mann_whitney_log10_p(
    auc: torch.Tensor,
    n_pos: torch.Tensor,
    n: int,
    ties: torch.Tensor | float = 0.0,
    continuity: bool = True,
) -> torch.Tensor:
    """log10 of the two-sided Mann-Whitney U p-value (normal approximation, tie-corrected).

    The same test as ``scipy.stats.mannwhitneyu(inside, outside, alternative="two-sided",
    method="asymptotic", use_continuity=continuity)``, computed in log space so that the
    tiny p-values of strong detectors stay finite (scipy's underflow to 0 below ~1e-308).

    Args:
        auc: AUROC values (any shape); U = AUC * n+ * n-.
        n_pos: positives per value (broadcastable to ``auc``).
        n: number of samples.
        ties: sum over tie groups of ``t^3 - t`` of the scores (broadcastable), see
            :func:`tie_term`.
        continuity: apply the 0.5 continuity correction (scipy's default).

    Returns:
        float64 tensor, <= 0. NaN where the mask is empty or full; 0 (p = 1) where all
        scores are tied.
    """
    auc = torch.as_tensor(auc, dtype=torch.float64)
    n1 = torch.as_tensor(n_pos, dtype=torch.float64, device=auc.device)
    n2 = n - n1
    ties = torch.as_tensor(ties, dtype=torch.float64, device=auc.device)
    prod = n1 * n2
    u = auc * prod
    u = torch.maximum(u, prod - u)  # two-sided: the larger of U1, U2
    mu = prod / 2.0
    var = prod / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0))) if n > 1 else torch.zeros_like(prod)
    num = u - mu - (0.5 if continuity else 0.0)
    sd = torch.sqrt(torch.clamp(var, min=0.0))
    z = num / torch.where(sd > 0, sd, 1.0)
    x = z / math.sqrt(2.0)
    # p = 2 * sf(z) = erfc(z / sqrt 2);  log erfc(x) = log erfcx(x) - x^2 (stable for x >> 1)
    log_p = torch.where(x > 0, torch.log(torch.special.erfcx(x)) - x * x, torch.log(torch.erfc(x)))
    log10 = torch.clamp(log_p / _LN10, max=0.0)
    log10 = torch.where(sd > 0, log10, torch.zeros_like(log10))
    return torch.where((n1 > 0) & (n2 > 0), log10, torch.nan)


def mann_whitney_p(
    auc: torch.Tensor,
    n_pos: torch.Tensor,
    n: int,
    ties: torch.Tensor | float = 0.0,
    continuity: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-sided Mann-Whitney U p-value and its log10 (see :func:`mann_whitney_log10_p`).

    Returns:
        (p, log10_p), float64. ``p`` may underflow to 0 for extreme separations;
        ``log10_p`` never does.

    Example:
        >>> p, lp = mann_whitney_p(torch.tensor([0.99]), torch.tensor([500]), 100000)
        >>> float(p), round(float(lp))
        (0.0, -358)
    """
    log10 = mann_whitney_log10_p(auc, n_pos, n, ties, continuity)
    return torch.pow(10.0, log10), log10
