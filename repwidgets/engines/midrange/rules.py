"""Curation rules: marks from a band, and training sets from marks.

:func:`auto_curate` marks a band's samples without a person (every sample "keep", or
the confounders of the class's typical concept pattern "spurious");
:func:`curated_training_set`, :func:`random_training_set` and
:func:`oracle_training_set` turn marks (or random draws, or true group labels) into
the indices and weights the last layer is retrained on; :func:`as_marks` reads marks
from whatever holds them (a widget, a Curation, a file, a band, a dict, a list).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from repwidgets.curation_store import MARKS, Curation, VanishedMarksWarning
from repwidgets.engines.midrange.selection import MidrangeResult

if TYPE_CHECKING:  # pragma: no cover
    from repwidgets.session import Session

__all__ = [
    "as_marks",
    "auto_curate",
    "curated_training_set",
    "oracle_training_set",
    "random_training_set",
    "typical_pattern",
]


def auto_curate(
    m: MidrangeResult,
    rule: str = "concepts",
    path: str | os.PathLike | None = None,
    *,
    alpha: float = 0.05,
    purity: float = 0.1,
    min_difference: float = 0.05,
    absent: bool = False,
) -> Curation:
    """Mark a band's samples automatically (no person in the loop).

    Rules:
        ``"band"``: every band sample is marked "keep".
        ``"concepts"``: the class's typical pattern is read off the top extreme: the
            concepts that are (nearly) always present there (frequency >= 1 - ``purity``;
            with ``absent=True`` also those nearly always absent, frequency <= ``purity``),
            whose frequency in the band differs
            significantly (two-proportion test, Benjamini-Hochberg q < ``alpha``, absolute
            difference >= ``min_difference``), and that do not merely restate a class
            label. Concepts the top extreme lacks are left out by default: they mostly
            say what the class's best samples are not (a small size, another class's
            colour) rather than a feature the model could take as a shortcut. The
            confounders are marked "spurious" (upweighted in retraining):

            - samples *of the class* that break the pattern (for example a circle
              without the watermark that most circles carry);
            - samples *of other classes* that carry every concept the pattern says is
              present (for example a square with the watermark).

            Every other band sample is marked "keep". Without any pattern concept every
            sample is "keep" and a warning says so.

    Args:
        m: a band from :func:`select`.
        path: a curation file to write the marks to (None: in memory). Marks already
            in the file are kept unless this rule marks the same sample.

    Returns:
        The :class:`Curation` (``.selected`` lists the marks; ``.context`` records the
        rule and the pattern it found).

    Example:
        >>> cur = auto_curate(select(sess, 0, band=(0.0, 0.5)), rule="concepts")  # doctest: +SKIP
        >>> cur.counts()                                                         # doctest: +SKIP
        {'keep': 410, 'spurious': 95, 'exclude': 0}
    """
    if rule not in ("band", "concepts"):
        raise ValueError(f"rule must be 'band' or 'concepts'; got {rule!r}.")
    if len(m) == 0:
        raise ValueError("The band is empty; widen it before curating.")
    idx = m.indices.tolist()
    marks: dict[int, str] = dict.fromkeys(idx, "keep")
    pattern: dict[str, bool] = {}
    if rule == "concepts":
        pattern = typical_pattern(
            m, alpha=alpha, purity=purity, min_difference=min_difference, absent=absent
        )
        if not pattern:
            warnings.warn(
                "No concept separates the band from the top extreme (at this alpha and "
                "purity); every band sample is marked 'keep'. Try a wider band, another "
                "band position, or rule='band'.",
                UserWarning,
                stacklevel=2,
            )
        else:
            spurious = _confounders(m, pattern)
            for i, s in zip(idx, spurious.tolist()):
                if s:
                    marks[i] = "spurious"
    cur = m.curation(path)
    cur.context["rule"] = rule
    if pattern:
        cur.context["typical_pattern"] = pattern
    for mark in MARKS:
        chosen_idx = [i for i, v in marks.items() if v == mark]
        if chosen_idx:
            cur.mark_many(chosen_idx, mark)
    return cur


def typical_pattern(
    m: MidrangeResult,
    alpha: float = 0.05,
    purity: float = 0.1,
    min_difference: float = 0.05,
    absent: bool = False,
) -> dict[str, bool]:
    """The concepts that characterise the top extreme and not the band: ``{concept: present}``.

    See :func:`auto_curate` (rule "concepts") for the criteria.
    """
    assoc = m.associations(alpha=alpha)
    top_freq = assoc["top_fraction"].to_numpy()
    keep = (
        assoc["significant"].to_numpy()
        & (assoc["difference"].abs().to_numpy() >= min_difference)
        & ((top_freq >= 1 - purity) | (absent & (top_freq <= purity)))
    )
    labels = torch.cat([m.labels, m.top_labels])
    both = torch.cat([m.concepts, m.top_concepts])
    pattern = {}
    for concept, freq, ok in zip(assoc["concept"], top_freq, keep):
        if not ok:
            continue
        col = both[:, m.concept_names.index(concept)]
        restates = any(bool(torch.equal(col, labels == c)) for c in torch.unique(labels).tolist())
        if not restates:
            pattern[str(concept)] = bool(freq >= 0.5)
    return pattern


def _confounders(m: MidrangeResult, pattern: Mapping[str, bool]) -> torch.Tensor:
    """Band samples of the class that break ``pattern``, or of other classes that carry
    every concept the pattern says is present. BoolTensor [m]."""
    cols = [m.concept_names.index(c) for c in pattern]
    typical = torch.tensor(list(pattern.values()), dtype=torch.bool)
    sub = m.concepts[:, cols]
    own = m.labels == int(m.class_index)
    breaks = (sub != typical).any(dim=1)
    present = typical.clone()
    carries = sub[:, present].all(dim=1) if bool(present.any()) else torch.zeros_like(own)
    return (own & breaks) | (~own & carries)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(int(seed))


def _balance_classes(targets: np.ndarray, weights: np.ndarray, n_classes: int) -> np.ndarray:
    """Rescale weights so that every class has the same total weight (mean weight 1)."""
    out = weights.astype(float).copy()
    totals = np.bincount(targets, weights=out, minlength=n_classes)
    present = totals > 0
    target_total = out.sum() / present.sum()
    for c in np.flatnonzero(present):
        out[targets == c] *= target_total / totals[c]
    return out * (len(out) / out.sum())


def _sample_rest(
    targets: np.ndarray,
    pool: np.ndarray,
    per_class: int,
    rng: np.random.Generator,
    n_classes: int,
) -> np.ndarray:
    picks = []
    for c in range(n_classes):
        members = pool[targets[pool] == c]
        take = min(int(per_class), len(members))
        if take:
            picks.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(picks)) if picks else np.zeros(0, dtype=np.int64)


def curated_training_set(
    marks: Mapping[int, str],
    targets: torch.Tensor,
    *,
    n_classes: int | None = None,
    spurious_weight: float | str = "balance",
    n_rest_per_class: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and weights of the retraining set built from curated marks.

    - "keep" samples are in the set with weight 1;
    - "spurious" samples (the confounders that contradict the shortcut) are upweighted:
      with ``spurious_weight="balance"`` (default) so that within every class they weigh
      as much as the class's other training samples together (the marks act as
      pseudo-group labels, and the classes' two pseudo-groups are balanced as DFR
      balances true groups); with a number, each weighs that much;
    - "exclude" samples are removed (from the curated set and from the rest);
    - a class-balanced random sample of the unmarked rest is added: ``n_rest_per_class``
      samples per class (default: the number of curated samples divided by the number
      of classes, at least 50), weight 1;
    - finally the weights are rescaled so that every class has the same total weight
      (mean weight 1).

    Returns:
        ``(indices [m] int64, weights [m] float64)``.
    """
    y = torch.as_tensor(targets).cpu().long().numpy()
    n = len(y)
    n_classes = int(n_classes) if n_classes is not None else int(y.max()) + 1
    balance = isinstance(spurious_weight, str)
    if balance and spurious_weight != "balance":
        raise ValueError(f"spurious_weight must be 'balance' or a number; got {spurious_weight!r}.")
    if not balance and not float(spurious_weight) > 0:
        raise ValueError(f"spurious_weight must be positive; got {spurious_weight}.")
    curated = {int(i): m for i, m in marks.items() if m in ("keep", "spurious") and int(i) < n}
    if not curated:
        raise ValueError(
            "The curation marks no sample as 'keep' or 'spurious', so there is nothing to "
            "retrain on. Mark samples in the widget, or use rw.midrange.auto_curate(m)."
        )
    marked = np.zeros(n, dtype=bool)
    marked[[int(i) for i in marks if int(i) < n]] = True
    cur_idx = np.array(sorted(curated), dtype=np.int64)
    is_spurious = np.array([curated[i] == "spurious" for i in cur_idx], dtype=bool)
    per_class = n_rest_per_class
    if per_class is None:
        per_class = max(50, int(math.ceil(len(cur_idx) / n_classes)))
    rest = _sample_rest(y, np.flatnonzero(~marked), per_class, _rng(seed), n_classes)
    idx = np.concatenate([cur_idx, rest])
    spur = np.concatenate([is_spurious, np.zeros(len(rest), dtype=bool)])
    w = np.ones(len(idx))
    labels = y[idx]
    if balance:
        for c in range(n_classes):
            s_mask, o_mask = spur & (labels == c), ~spur & (labels == c)
            if s_mask.any() and o_mask.any():
                w[s_mask] = o_mask.sum() / s_mask.sum()
    else:
        w[spur] = float(spurious_weight)
    return idx, _balance_classes(labels, w, n_classes)


def random_training_set(
    targets: torch.Tensor,
    like: np.ndarray,
    *,
    n_classes: int | None = None,
    n_rest_per_class: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The random-sample baseline: as many random samples as ``like`` (same class counts),
    all weight 1, plus the same class-balanced sample of the rest, classes balanced."""
    y = torch.as_tensor(targets).cpu().long().numpy()
    n_classes = int(n_classes) if n_classes is not None else int(y.max()) + 1
    rng = _rng(seed + 7919)
    like = np.asarray(like, dtype=np.int64)
    picks = []
    for c in range(n_classes):
        want = int((y[like] == c).sum())
        members = np.flatnonzero(y == c)
        if want:
            picks.append(rng.choice(members, size=min(want, len(members)), replace=False))
    chosen = np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)
    marks = dict.fromkeys(chosen.tolist(), "keep")
    return curated_training_set(
        marks, targets, n_classes=n_classes, n_rest_per_class=n_rest_per_class, seed=seed
    )


def oracle_training_set(
    groups: torch.Tensor,
    targets: torch.Tensor,
    *,
    n_per_group: int | None = None,
    seed: int = 0,
    mode: str = "reweight",
) -> tuple[np.ndarray, np.ndarray]:
    """The group-label oracle: a group-balanced training set (the DFR upper bound).

    ``mode="reweight"``: every training sample, weighted so that every non-empty group
    has the same total weight (mean weight 1). ``mode="subsample"``: ``n_per_group``
    random samples of every group (default: the smallest group's size), weight 1.
    """
    g = torch.as_tensor(groups).cpu().long().numpy()
    y = torch.as_tensor(targets).cpu().long().numpy()
    if g.shape != y.shape:
        raise ValueError(f"{len(g)} group labels for {len(y)} targets.")
    ids, counts = np.unique(g, return_counts=True)
    if mode == "reweight":
        idx = np.arange(len(g))
        w = 1.0 / counts[np.searchsorted(ids, g)]
        return idx, w * (len(w) / w.sum())
    if mode != "subsample":
        raise ValueError(f"mode must be 'reweight' or 'subsample'; got {mode!r}.")
    take = int(n_per_group) if n_per_group is not None else int(counts.min())
    rng = _rng(seed)
    picks = [
        rng.choice(np.flatnonzero(g == gid), size=min(take, c), replace=False)
        for gid, c in zip(ids, counts)
    ]
    idx = np.sort(np.concatenate(picks))
    return idx, np.ones(len(idx))


def as_marks(curated: Any, sess: Session, split: str) -> dict[int, str]:
    """Marks ``{index: mark}`` from a widget, Curation, file path, band result, dict or indices."""
    cur = getattr(curated, "curation", None)
    if isinstance(cur, Curation):
        curated = cur
    if isinstance(curated, (str, os.PathLike)):
        curated = Curation.load(curated)
    n = sess.n(split)
    if isinstance(curated, Curation):
        if curated.split != split:
            raise ValueError(
                f"The curation marks samples of split {curated.split!r}, but retraining uses "
                f"split {split!r}; pass split={curated.split!r}."
            )
        marks = curated.marks
    elif isinstance(curated, MidrangeResult):
        if curated.split != split:
            raise ValueError(
                f"The band was selected on split {curated.split!r}, but retraining uses "
                f"split {split!r}; pass split={curated.split!r}."
            )
        marks = dict.fromkeys(curated.indices.tolist(), "keep")
    elif isinstance(curated, Mapping):
        marks = {}
        for key, value in curated.items():
            if key in MARKS:
                for i in value:
                    marks[int(i)] = key
            elif value in MARKS:
                marks[int(key)] = value
            else:
                raise ValueError(
                    f"Cannot read marks from {{{key!r}: ...}}; pass {{mark: [indices]}} with "
                    f"marks in {MARKS}, or {{index: mark}}."
                )
    elif isinstance(curated, (torch.Tensor, np.ndarray, list, tuple, range)):
        marks = dict.fromkeys((int(i) for i in np.asarray(curated).reshape(-1)), "keep")
    else:
        raise TypeError(
            f"Cannot retrain from {type(curated).__name__}. Pass a CurationSelector, a "
            "Curation, a curation file path, a MidrangeResult, a dict of marks or a list of "
            "indices."
        )
    bad = [i for i in marks if i < 0]
    if bad:
        raise ValueError(f"Negative sample indices in the marks: {bad[:10]}.")
    gone = sorted(i for i in marks if i >= n)
    if gone:
        shown = ", ".join(map(str, gone[:10])) + (" ..." if len(gone) > 10 else "")
        warnings.warn(
            f"{len(gone)} marked sample(s) do not exist in split {split!r} of {n} samples "
            f"({shown}); they are ignored in retraining.",
            VanishedMarksWarning,
            stacklevel=3,
        )
    return {i: m for i, m in marks.items() if i < n}
