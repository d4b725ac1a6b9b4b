"""Where a class's mid-range band lies: scores, proportion tests and the automatic band.

The automatic band (``band="auto"`` in :func:`repwidgets.engines.midrange.selection`) is
placed from the class's scores and the class labels alone, never from group labels.
Over every sample of the split, the scores of output neuron k form a mixture: the
non-members of class k (low scores) and the members (high scores). A shortcut moves
two kinds of sample towards the other side: members *without* the spurious feature
lose score, non-members *with* it gain score. So the confounders are the samples that
are atypical for their own label: the upper tail of the non-members and the lower tail
of the members. The band is the score range between those two tails,

    [ the (1 - tail) quantile of the non-members,  the tail quantile of the members ]

(the two ends swapped where the tails overlap): every non-member in it scores higher
than ``1 - tail`` of its kind, and every member lower than ``1 - tail`` of its kind.
When the two mixtures are well separated the band is the gap between their bulks;
when they overlap it is the region where the score cannot tell the label.

Two choices follow from the same picture. The score is the logit *margin* (the class's
logit minus the largest other one): a sample of another class that carries the
shortcut gains logit for k while keeping its own class's logit, so its margin lands
near zero, at the decision boundary, whereas the raw logit leaves it among the other
classes' own spread. And ``tail`` must exceed the share of a side that the shortcut
displaces into the other side's bulk (there a tail quantile would land inside the
wrong bulk); the default 0.2 tolerates minorities of up to about a fifth of a class,
at the price of a wider band than a smaller tail gives when the minority is small.

Besides the band this module holds the numerics that band and association analysis
share: :func:`class_scores`, :func:`two_proportion_ztest` and
:func:`benjamini_hochberg`; and the checks of a band given by hand (:func:`check_band`,
:func:`band_options`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "AUTO",
    "AUTO_SCORE",
    "AUTO_TAIL",
    "SCORES",
    "auto_band",
    "band_options",
    "benjamini_hochberg",
    "check_band",
    "class_scores",
    "quantiles_of_limits",
    "two_proportion_ztest",
]

SCORES = ("logit", "margin")

#: The value of ``band`` that asks for the automatic band.
AUTO = "auto"

#: The fraction of each side (members, non-members) that counts as its atypical tail.
AUTO_TAIL = 0.2

#: The score the automatic band uses unless told otherwise.
AUTO_SCORE = "margin"


def class_scores(logits: torch.Tensor, class_index: int, score: str = "logit") -> torch.Tensor:
    """The score of output neuron ``class_index`` per sample, [n].

    ``"logit"`` is the raw logit; ``"margin"`` is the logit minus the largest other
    logit (positive where the class wins).

    Example:
        >>> class_scores(torch.tensor([[2.0, 1.0, 0.5]]), 0, "margin")
        tensor([1.], dtype=torch.float64)
    """
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}.")
    logits = torch.as_tensor(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape [n, n_classes]; got {tuple(logits.shape)}.")
    k = int(class_index)
    if not 0 <= k < logits.shape[1]:
        raise ValueError(
            f"class_index {class_index} is out of range for {logits.shape[1]} output neurons "
            f"(0..{logits.shape[1] - 1})."
        )
    logits = logits.detach().double()
    own = logits[:, k]
    if score == "logit":
        return own
    if logits.shape[1] < 2:
        raise ValueError("score='margin' needs at least two output neurons; use score='logit'.")
    others = torch.cat([logits[:, :k], logits[:, k + 1 :]], dim=1)
    return own - others.max(dim=1).values


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values of the p-values ``p`` (same order).

    Example:
        >>> benjamini_hochberg(np.array([0.01, 0.04, 0.03])).round(3).tolist()
        [0.03, 0.04, 0.04]
    """
    p = np.asarray(p, dtype=float)
    n = p.size
    if n == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * n / np.arange(1, n + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.clip(ranked, 0, 1)
    return out


def two_proportion_ztest(x1, n1, x2, n2) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided two-proportion z test with pooled variance.

    z = (x1/n1 - x2/n2) / sqrt(p (1 - p) (1/n1 + 1/n2)), p = (x1 + x2) / (n1 + n2);
    p-value = erfc(|z| / sqrt(2)). Where both samples are all-0 or all-1 (no variance)
    z = 0 and p = 1. Arguments broadcast (arrays of counts, one per concept).

    Returns:
        (z, p_value) as float arrays.

    Example:
        >>> z, p = two_proportion_ztest(30, 100, 10, 100)
        >>> round(float(z), 3), round(float(p), 4)
        (3.536, 0.0004)
    """
    from scipy.special import erfc

    x1, x2 = np.asarray(x1, dtype=float), np.asarray(x2, dtype=float)
    n1, n2 = float(n1), float(n2)
    if n1 <= 0 or n2 <= 0:
        raise ValueError(f"Both samples need at least one member; got n1={n1:g}, n2={n2:g}.")
    if np.any((x1 < 0) | (x1 > n1)) or np.any((x2 < 0) | (x2 > n2)):
        raise ValueError("Counts must lie between 0 and their sample size.")
    pooled = (x1 + x2) / (n1 + n2)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    diff = x1 / n1 - x2 / n2
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, diff / np.where(se > 0, se, 1.0), 0.0)
    p = erfc(np.abs(z) / math.sqrt(2.0))
    return np.asarray(z, dtype=float), np.asarray(p, dtype=float)


def _check_tail(tail: float) -> float:
    try:
        tail = float(tail)
    except (TypeError, ValueError):
        raise ValueError(f"tail must be a number in (0, 0.5]; got {tail!r}.") from None
    if not 0.0 < tail <= 0.5:
        raise ValueError(
            f"tail must lie in (0, 0.5] (the atypical fraction of each side); got {tail!r}. "
            f"The default is {AUTO_TAIL}."
        )
    return tail


def _tail_limits(values: np.ndarray, members: np.ndarray, tail: float) -> tuple[float, float]:
    """The upper ``tail`` quantile of the non-members and the lower one of the members,
    as ``(low, high)`` (sorted)."""
    upper_others = float(np.quantile(values[~members], 1.0 - tail))
    lower_members = float(np.quantile(values[members], tail))
    return min(upper_others, lower_members), max(upper_others, lower_members)


def auto_band(
    values: torch.Tensor | np.ndarray,
    targets: torch.Tensor | np.ndarray,
    class_index: int,
    *,
    tail: float = AUTO_TAIL,
    score: str = AUTO_SCORE,
    class_name: str | None = None,
) -> dict[str, Any]:
    """The automatic mid-range band of one class: score limits and why (tensor core).

    Over every sample, the band runs between the upper ``tail`` quantile of the
    non-members' scores and the lower ``tail`` quantile of the members' scores (the two
    swapped where they cross; see the module docstring for the reasoning). Only the
    scores and the class labels are used.

    Args:
        values: the class's score per sample [n] (see :func:`class_scores`).
        targets: class labels [n].
        class_index: the class k whose members are ``targets == k``.
        tail: the atypical fraction of each side, in (0, 0.5].
        score: the name of the score (recorded only).
        class_name: the class's name (recorded only).

    Returns:
        A JSON-able dict: ``rule`` ("auto"), ``score``, ``tail``, ``limits`` [low, high]
        (score values, inclusive), ``others_upper_quantile`` and
        ``members_lower_quantile`` (the two tail quantiles), ``overlap`` (True where the
        tails cross), ``members_in_band``, ``others_in_band``, ``reason`` (a sentence).
        A split where every sample or no sample belongs to the class has no mixture to
        split; the band is then the lower ``tail`` of the population (``rule``
        "auto (one side)").

    Example:
        >>> v = torch.tensor([-3.0, -2.5, -2.0, 0.1, 0.2, 2.0, 2.5, 3.0])
        >>> y = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0])
        >>> [round(x, 3) for x in auto_band(v, y, 0, tail=0.25)["limits"]]
        [-1.475, 1.55]
    """
    tail = _check_tail(tail)
    v = torch.as_tensor(values).detach().double().cpu().numpy().reshape(-1)
    y = torch.as_tensor(targets).detach().long().cpu().numpy().reshape(-1)
    if v.shape[0] != y.shape[0]:
        raise ValueError(
            f"values and targets have different lengths: {v.shape[0]} scores, "
            f"{y.shape[0]} labels. Pass one label per sample."
        )
    if v.size == 0:
        raise ValueError("There are no samples to place a band on; the split is empty.")
    members = y == int(class_index)
    name = class_name if class_name is not None else f"class {int(class_index)}"
    if members.all() or not members.any():
        low, high = float(np.min(v)), float(np.quantile(v, tail))
        side = "every sample" if members.all() else "no sample"
        reason = (
            f"{side} of the split belongs to {name}, so there is no mixture of members and "
            f"other classes to split; the band is the lowest {tail:.0%} of the {score}."
        )
        rule, upper_others, lower_members, overlap = "auto (one side)", None, None, False
    else:
        upper_others = float(np.quantile(v[~members], 1.0 - tail))
        lower_members = float(np.quantile(v[members], tail))
        low, high = _tail_limits(v, members, tail)
        overlap = upper_others > lower_members
        rule = "auto"
        reason = (
            f"over all samples, the {score} of {name} between the top {tail:.0%} of the other "
            f"classes ({upper_others:.3g}) and the bottom {tail:.0%} of {name} "
            f"({lower_members:.3g})"
            + (": the two tails overlap there" if overlap else ": between the two bulks")
        )
    inside = (v >= low) & (v <= high)
    return {
        "rule": rule,
        "score": score,
        "tail": tail,
        "limits": [low, high],
        "others_upper_quantile": upper_others,
        "members_lower_quantile": lower_members,
        "overlap": bool(overlap),
        "members_in_band": int((inside & members).sum()),
        "others_in_band": int((inside & ~members).sum()),
        "reason": reason,
    }


def quantiles_of_limits(population: torch.Tensor | np.ndarray, low: float, high: float) -> list:
    """Quantiles ``[q_low, q_high]`` of ``population`` that select exactly the samples
    whose value lies in ``[low, high]``, under ``torch.quantile``'s linear interpolation.

    Each end is placed half-way between the last value left out and the first value
    taken, so the same samples are selected again from the quantiles (and a slider
    starting from them starts on this band).

    Example:
        >>> quantiles_of_limits(torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0]), 1.0, 3.0)
        [0.125, 0.875]
    """
    v = np.sort(torch.as_tensor(population).detach().double().cpu().numpy().reshape(-1))
    n = v.size
    if n < 2:
        return [0.0, 1.0]
    first = int(np.searchsorted(v, low, side="left"))  # first index with v >= low
    last = int(np.searchsorted(v, high, side="right")) - 1  # last index with v <= high
    if last < first:  # no sample inside: an empty band at the position of ``low``
        q = min(max((first - 0.5) / (n - 1), 0.0), 1.0)
        return [q, q]
    q_low = 0.0 if first == 0 else (first - 0.5) / (n - 1)
    q_high = 1.0 if last == n - 1 else (last + 0.5) / (n - 1)
    return [float(q_low), float(q_high)]


def check_band(band: Sequence[float], absolute: bool) -> tuple[float, float]:
    """``band`` as ``(low, high)`` floats; a ValueError saying what is wrong with it."""
    try:
        lo, hi = (float(band[0]), float(band[1]))
        if len(band) != 2:
            raise ValueError
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"band must be a pair (low, high); got {band!r}.") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) and not absolute:
        raise ValueError(f"band quantiles must be finite numbers in [0, 1]; got {band!r}.")
    if lo > hi:
        raise ValueError(f"band must have low <= high; got {band!r}. Swap the two values.")
    if not absolute and not (0.0 <= lo <= hi <= 1.0):
        raise ValueError(
            f"band {band!r} holds quantiles, which must lie in [0, 1]. For a range of score "
            "values pass absolute=True."
        )
    return lo, hi


def band_options(band: Any, within: str | None, score: str | None) -> tuple[bool, str, str]:
    """(automatic?, within, score) with the defaults of an automatic or an explicit band."""
    auto = isinstance(band, str)
    if auto and band != AUTO:
        raise ValueError(f"band must be {AUTO!r} or a pair (low, high); got {band!r}.")
    within = within if within is not None else "all" if auto else "class"
    score = score if score is not None else AUTO_SCORE if auto else "logit"
    return auto, within, score
