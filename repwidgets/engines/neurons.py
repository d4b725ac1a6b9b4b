"""Per-neuron numerics over activation tensors: what one neuron fires on, and why it is odd.

Pure tensor computations (no model, no session) that a neuron explorer links together:
a neuron's top-activating samples (:func:`top_activating`), a band of its activation
quantiles (:func:`quantile_band`, e.g. the mid-range), which concepts a set of samples
carries more often than the rest (:func:`enrichment`, with a one-sided hypergeometric
test), the neurons a given sample stands out on (:func:`strongest_neurons`), and how
much a neuron loads on each of a set of concept directions (:func:`concept_loadings`).

Conventions: ``acts`` is ``[n, C]`` (n samples, C neurons: a layer's pooled
activations, e.g. ``sess.activations(layer)``); sample indices are positions in it.
The quantile rank of a value among n values is ``(r - 1) / (n - 1)`` with r its
average rank (1 = smallest, ties share the mean of their ranks), so the smallest value
has rank 0, the largest 1, and tied values the same rank.

Example:
    >>> acts = torch.tensor([[0.0, 1.0], [2.0, 0.5], [1.0, 3.0]])
    >>> top_activating(acts, unit=0, k=2)
    tensor([1, 2])
    >>> quantile_band(acts[:, 1], (0.4, 1.0))
    tensor([0, 2])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from scipy.stats import hypergeom

from repwidgets.engines.ranks import average_ranks

__all__ = [
    "concept_loadings",
    "enrichment",
    "quantile_band",
    "quantile_ranks",
    "strongest_neurons",
    "top_activating",
]


def _matrix(acts: torch.Tensor, name: str = "acts") -> torch.Tensor:
    acts = torch.as_tensor(acts)
    if acts.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D tensor [n_samples, n_neurons], got shape "
            f"{tuple(acts.shape)}; pool the layer's maps first (sess.activations(layer))."
        )
    if acts.shape[0] == 0 or acts.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(acts.shape)}).")
    return acts


def _unit(unit: int, width: int) -> int:
    if isinstance(unit, bool) or not isinstance(unit, (int, np.integer)):
        if not (torch.is_tensor(unit) and unit.numel() == 1 and not unit.is_floating_point()):
            raise TypeError(f"unit must be an integer neuron index, got {unit!r}.")
        unit = int(unit)
    if not -width <= int(unit) < width:
        raise IndexError(
            f"unit {int(unit)} is out of range: there are {width} neurons (0..{width - 1})."
        )
    return int(unit) % width


def _positive(name: str, k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{name} must be a positive integer, got {k!r}.")
    return int(k)


def quantile_ranks(values: torch.Tensor) -> torch.Tensor:
    """The quantile rank in [0, 1] of every value among all of them, [n] float64.

    ``(r - 1) / (n - 1)`` with r the average rank (ties share one rank); a single value
    has rank 0.5.

    Example:
        >>> quantile_ranks(torch.tensor([3.0, 1.0, 2.0, 2.0]))
        tensor([1.0000, 0.0000, 0.5000, 0.5000], dtype=torch.float64)
    """
    values = torch.as_tensor(values).reshape(-1)
    n = values.numel()
    if n == 0:
        return torch.zeros(0, dtype=torch.float64)
    if n == 1:
        return torch.full((1,), 0.5, dtype=torch.float64)
    ranks = average_ranks(values.detach().cpu().double())
    return (ranks - 1.0) / (n - 1)


def top_activating(acts: torch.Tensor, unit: int, k: int = 16) -> torch.Tensor:
    """The samples on which neuron ``unit`` fires most, highest first.

    Args:
        acts: [n, C] activations (samples x neurons).
        unit: the neuron (column of ``acts``; negative counts from the end).
        k: how many; at most n are returned.

    Returns:
        LongTensor [min(k, n)] of sample indices (rows of ``acts``), by descending
        activation; ties keep the lower index first.

    Example:
        >>> top_activating(torch.tensor([[1.0], [5.0], [3.0]]), 0, k=2)
        tensor([1, 2])
    """
    acts = _matrix(acts)
    unit = _unit(unit, acts.shape[1])
    k = min(_positive("k", k), acts.shape[0])
    column = acts[:, unit].detach().cpu().double()
    order = torch.sort(column, descending=True, stable=True).indices
    return order[:k].long()


def quantile_band(values: torch.Tensor, band: tuple[float, float]) -> torch.Tensor:
    """Indices of the values whose quantile rank lies in ``band = (lo, hi)``, by value.

    The quantile rank is defined in the module's docstring (0 = smallest, 1 = largest,
    ties share one rank), so ``(0.9, 1.0)`` is the top tenth and ``(0.4, 0.6)`` the
    middle fifth, e.g. a neuron's mid-range samples.

    Args:
        values: [n] scores (e.g. one neuron's activations ``acts[:, unit]``).
        band: ``(lo, hi)`` with ``0 <= lo <= hi <= 1``.

    Returns:
        LongTensor [m] of indices into ``values``, in ascending order of value (ties
        by index).

    Example:
        >>> quantile_band(torch.tensor([0.5, 0.1, 0.9, 0.3, 0.7]), (0.25, 0.75))
        tensor([3, 0, 4])
    """
    values = torch.as_tensor(values)
    if values.ndim != 1:
        raise ValueError(
            f"values must be 1-D [n], got shape {tuple(values.shape)}: pass one neuron's "
            "column, e.g. acts[:, unit]."
        )
    lo, hi = _band(band)
    if values.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    q = quantile_ranks(values)
    eps = 1e-12
    keep = (q >= lo - eps) & (q <= hi + eps)
    idx = torch.nonzero(keep).flatten()
    order = torch.sort(values.detach().cpu().double()[idx], stable=True).indices
    return idx[order].long()


def _band(band: Sequence[float]) -> tuple[float, float]:
    if isinstance(band, (str, bytes)) or not hasattr(band, "__len__") or len(band) != 2:
        raise ValueError(
            f"band must be a pair (lo, hi) of quantiles, e.g. (0.4, 0.6), got {band!r}."
        )
    try:
        lo, hi = float(band[0]), float(band[1])
    except (TypeError, ValueError):
        raise ValueError(f"band must hold two numbers (lo, hi), got {band!r}.") from None
    if not (0.0 <= lo <= hi <= 1.0):
        raise ValueError(
            f"band must satisfy 0 <= lo <= hi <= 1 (quantiles, not activation values), "
            f"got {band!r}; e.g. (0.9, 1.0) is the top tenth."
        )
    return lo, hi


def enrichment(concepts: torch.Tensor, members: torch.Tensor, names: Sequence[str]) -> pd.DataFrame:
    """Which concepts a set of samples carries more often than the other samples.

    For every concept: ``rate_in`` (fraction of the members carrying it), ``rate_out``
    (fraction of the other samples), ``ratio = rate_in / rate_out`` (inf where only
    members carry it, NaN where nobody does) and the one-sided p-value of carrying it
    at least this often by chance: the hypergeometric tail ``P(X >= a)`` of drawing
    ``m`` members from ``n`` samples of which ``K`` carry the concept (the one-sided
    Fisher exact test of the 2x2 table).

    Args:
        concepts: [n, K] bool concept labels of all samples.
        members: [m] LongTensor of distinct sample indices (rows of ``concepts``), e.g. a
            neuron's top-activating samples.
        names: K concept names.

    Returns:
        DataFrame with columns concept, n_in (members carrying it), rate_in, rate_out,
        ratio, p_value; sorted by p_value (ascending), then ratio (descending).

    Example:
        >>> c = torch.tensor([[1, 0], [1, 0], [0, 1], [0, 0]], dtype=torch.bool)
        >>> enrichment(c, torch.tensor([0, 1]), ["a", "b"]).concept.tolist()
        ['a', 'b']
    """
    concepts = torch.as_tensor(concepts)
    if concepts.ndim != 2:
        raise ValueError(
            f"concepts must be a 2-D bool tensor [n_samples, n_concepts], got shape "
            f"{tuple(concepts.shape)}."
        )
    n, n_concepts = concepts.shape
    names = [str(s) for s in names]
    if len(names) != n_concepts:
        raise ValueError(f"names has {len(names)} entries for {n_concepts} concept columns.")
    members = torch.as_tensor(members).reshape(-1)
    if members.is_floating_point() or members.dtype == torch.bool:
        raise TypeError(
            f"members must be integer sample indices, got dtype {members.dtype} (for a "
            "mask use torch.nonzero(mask).flatten())."
        )
    if members.numel() and (members.min() < 0 or members.max() >= n):
        raise IndexError(f"members must lie in [0, {n}): there are {n} samples.")
    if torch.unique(members).numel() != members.numel():
        raise ValueError("members has repeated indices: pass each sample once.")
    table = concepts.detach().cpu().bool().numpy()
    mask = np.zeros(n, dtype=bool)
    mask[members.cpu().numpy()] = True
    m = int(mask.sum())
    a = table[mask].sum(axis=0).astype(np.int64)
    total = table.sum(axis=0).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate_in = a / m if m else np.full(n_concepts, np.nan)
        rate_out = (total - a) / (n - m) if n > m else np.full(n_concepts, np.nan)
        ratio = np.asarray(rate_in, dtype=float) / np.asarray(rate_out, dtype=float)
    p = hypergeom.sf(a - 1, n, total, m) if m else np.ones(n_concepts)
    frame = pd.DataFrame(
        {
            "concept": names,
            "n_in": a,
            "rate_in": np.asarray(rate_in, dtype=float),
            "rate_out": np.asarray(rate_out, dtype=float),
            "ratio": ratio,
            "p_value": np.clip(np.asarray(p, dtype=float), 0.0, 1.0),
        }
    )
    return frame.sort_values(
        ["p_value", "ratio"], ascending=[True, False], na_position="last", kind="stable"
    ).reset_index(drop=True)


def strongest_neurons(acts: torch.Tensor, index: int, k: int = 8) -> pd.DataFrame:
    """The neurons that fire most on sample ``index`` relative to their own distribution.

    A neuron with large activations everywhere is not special for a sample; this ranks
    neurons by where the sample sits in each neuron's own activations: its
    ``percentile`` (the sample's quantile rank times 100, ties share one rank), ties
    broken by ``z``, the activation standardised by the neuron's mean and standard
    deviation over the samples (0 for a constant neuron).

    Args:
        acts: [n, C] activations.
        index: the sample (row of ``acts``; negative counts from the end).
        k: how many neurons; at most C.

    Returns:
        DataFrame with columns neuron, activation, percentile (0-100), z; strongest first.

    Example:
        >>> acts = torch.tensor([[0.0, 9.0], [1.0, 10.0], [2.0, 8.0]])
        >>> strongest_neurons(acts, 2, k=1).neuron.tolist()
        [0]
    """
    acts = _matrix(acts)
    n, width = acts.shape
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"index must be an integer sample index, got {index!r}.")
    if not -n <= int(index) < n:
        raise IndexError(f"index {int(index)} is out of range: there are {n} samples.")
    index = int(index) % n
    k = min(_positive("k", k), width)
    x = acts.detach().cpu().double()
    if n == 1:
        pct = torch.full((width,), 50.0, dtype=torch.float64)
    else:  # the average rank r = below + (equal + 1) / 2, as quantile_ranks counts it
        below = (x < x[index]).sum(dim=0).double()
        equal = (x == x[index]).sum(dim=0).double()
        pct = (below + (equal - 1.0) / 2.0) / (n - 1) * 100.0
    mean, std = x.mean(dim=0), x.std(dim=0, unbiased=False)
    z = torch.where(std > 0, (x[index] - mean) / std.clamp_min(1e-300), torch.zeros_like(std))
    frame = pd.DataFrame(
        {
            "neuron": np.arange(width),
            "activation": x[index].numpy(),
            "percentile": pct.numpy(),
            "z": z.numpy(),
        }
    )
    frame = frame.sort_values(["percentile", "z"], ascending=False, kind="stable")
    return frame.head(k).reset_index(drop=True)


def concept_loadings(vectors: torch.Tensor, unit: int) -> pd.DataFrame:
    """How much neuron ``unit`` loads on each concept vector (a direction in neuron space).

    ``loading`` is the vector's component on the neuron, ``vectors[v, unit]``; ``share``
    is ``|loading| / ||vectors[v]||`` (the cosine between the vector and the neuron's
    axis; 0 for a zero vector), which says how much of the direction is this neuron.

    Args:
        vectors: [V, C] concept vectors (e.g. discovered concept directions or probes'
            weights) over the layer's C neurons.
        unit: the neuron.

    Returns:
        DataFrame with columns vector (row of ``vectors``), loading, share; sorted by
        ``|loading|`` descending.

    Example:
        >>> concept_loadings(torch.tensor([[3.0, 4.0], [0.0, -6.0]]), 1).vector.tolist()
        [1, 0]
    """
    vectors = _matrix(vectors, "vectors")
    unit = _unit(unit, vectors.shape[1])
    v = vectors.detach().cpu().double()
    loading = v[:, unit]
    norm = v.norm(dim=1)
    share = torch.where(norm > 0, loading.abs() / norm.clamp_min(1e-300), torch.zeros_like(norm))
    frame = pd.DataFrame(
        {"vector": np.arange(v.shape[0]), "loading": loading.numpy(), "share": share.numpy()}
    )
    order = np.argsort(-np.abs(frame["loading"].to_numpy()), kind="stable")
    return frame.iloc[order].reset_index(drop=True)
