"""Band selection: the samples in the middle of one output neuron's range.

:func:`select_band` is the tensor-level core (logits, targets -> :class:`MidrangeResult`);
:func:`select` pulls a split's logits, labels, concepts and groups from a session and
calls it. The band is ``"auto"`` by default (see :mod:`.band`) or a pair of quantiles
(or score values with ``absolute=True``); the settings are a :class:`MidrangeConfig`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from repwidgets.candidates import Candidates
from repwidgets.config import Config
from repwidgets.curation_store import Curation
from repwidgets.engines.midrange import _data
from repwidgets.engines.midrange.band import (
    AUTO,
    AUTO_TAIL,
    auto_band,
    band_options,
    benjamini_hochberg,
    check_band,
    class_scores,
    quantiles_of_limits,
    two_proportion_ztest,
)
from repwidgets.engines.midrange.plots import band_figure
from repwidgets.results import Result

if TYPE_CHECKING:  # pragma: no cover
    from repwidgets.session import Session

__all__ = [
    "DEMO_BAND",
    "WITHIN",
    "MidrangeConfig",
    "MidrangeResult",
    "select",
    "select_band",
    "suggest_class",
]

WITHIN = ("class", "all")
#: The band the demo curates: the automatic band (over all samples, between the class's
#: least typical members and the other classes' least typical samples).
DEMO_BAND = {"band": AUTO}


@dataclass(frozen=True)
class MidrangeConfig(Config):
    """Settings of :func:`select` / :func:`select_band`.

    Attributes:
        band: ``"auto"`` (placed from the scores and class labels, see
            :func:`~repwidgets.engines.midrange.band.auto_band`), or ``(low, high)``
            quantiles in [0, 1] of the population's scores (score values with
            ``absolute=True``).
        split: the split the band is drawn from.
        within: ``"class"`` (the samples labelled k) or ``"all"``; None: "all" for the
            automatic band, else "class".
        score: ``"logit"`` or ``"margin"``; None: the automatic band's score, else "logit".
        absolute: ``band`` holds score values, not quantiles.
        top_fraction: the top extreme (the contrast) is the highest ``top_fraction`` of
            the population.
        tail: the atypical fraction of each side for the automatic band, in (0, 0.5].
    """

    band: Any = AUTO
    split: str = "train"
    within: str | None = None
    score: str | None = None
    absolute: bool = False
    top_fraction: float = 0.1
    tail: float = AUTO_TAIL

    def __post_init__(self) -> None:
        if isinstance(self.band, list):  # from a saved result's params
            object.__setattr__(self, "band", tuple(self.band))


@dataclass
class MidrangeResult(Result):
    """The samples in a band of one output neuron's range, with the top extreme for contrast.

    Tensors hold one entry per band sample, sorted by score (highest first):
    ``indices`` (sample positions in the split) [m], ``values`` (the score used for the
    band) [m], ``logits`` and ``margins`` of the class [m], ``labels`` and
    ``predictions`` [m], ``concepts`` [m, K] (bool; K = 0 without concept labels),
    ``groups`` [m] (-1 without group labels). ``top_*`` hold the same for the top
    extreme (the highest ``top_fraction`` of the population, band samples left out).

    Example:
        >>> m = select(sess, class_index=0)      # doctest: +SKIP
        >>> m.to_frame().head()                  # doctest: +SKIP
        >>> m.associations().head()              # doctest: +SKIP
    """

    class_index: int = 0
    split: str = "train"
    band: list = field(default_factory=lambda: [0.25, 0.75])
    limits: list = field(default_factory=lambda: [0.0, 0.0])
    within: str = "class"
    score: str = "logit"
    absolute: bool = False
    top_fraction: float = 0.1
    top_limit: float = 0.0
    population_size: int = 0
    n_samples: int = 0
    class_names: list = field(default_factory=list)
    concept_names: list = field(default_factory=list)
    group_names: list = field(default_factory=list)
    dataset: dict = field(default_factory=dict)
    indices: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    values: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    logits: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    margins: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    labels: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    predictions: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    concepts: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0, dtype=torch.bool))
    groups: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    top_indices: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    top_values: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    top_concepts: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0, dtype=torch.bool))
    top_groups: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    top_labels: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    population_values: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    band_choice: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return int(self.indices.numel())

    @property
    def class_name(self) -> str:
        k = int(self.class_index)
        return self.class_names[k] if k < len(self.class_names) else str(k)

    def _name(self, names: Sequence[str], i: int) -> str:
        return names[i] if 0 <= i < len(names) else str(i)

    def _group_name(self, g: int) -> str:
        if g < 0:
            return ""
        return self._name(self.group_names, g) if self.group_names else f"group {g}"

    def to_frame(self) -> pd.DataFrame:
        """One row per band sample, highest score first.

        Columns: ``sample`` (index in the split), ``score`` (the value the band uses),
        ``logit``, ``margin``, ``label``, ``prediction`` (class names), ``label_index``,
        ``prediction_index``, ``correct``, ``group`` (name; "" without groups),
        ``group_index``, then one boolean column per concept.
        """
        labels = self.labels.tolist()
        preds = self.predictions.tolist()
        groups = self.groups.tolist()
        frame = pd.DataFrame(
            {
                "sample": pd.Series(self.indices.tolist(), dtype="int64"),
                "score": pd.Series(self.values.double().tolist(), dtype="float64"),
                "logit": pd.Series(self.logits.double().tolist(), dtype="float64"),
                "margin": pd.Series(self.margins.double().tolist(), dtype="float64"),
                "label": pd.Series([self._name(self.class_names, y) for y in labels], dtype=object),
                "prediction": pd.Series(
                    [self._name(self.class_names, p) for p in preds], dtype=object
                ),
                "label_index": pd.Series(labels, dtype="int64"),
                "prediction_index": pd.Series(preds, dtype="int64"),
                "correct": pd.Series([y == p for y, p in zip(labels, preds)], dtype=bool),
                "group": pd.Series([self._group_name(g) for g in groups], dtype=object),
                "group_index": pd.Series(groups, dtype="int64"),
            }
        )
        if self.concepts.numel() and self.concept_names:
            taken = set(frame.columns)
            cols = {}
            for j, name in enumerate(self.concept_names):
                col = name if name not in taken else f"concept_{name}"
                cols[col] = self.concepts[:, j].numpy().astype(bool)
            frame = pd.concat([frame, pd.DataFrame(cols)], axis=1)
        frame.attrs.update(band=list(self.band), limits=list(self.limits), why=self.band_choice)
        return frame

    def associations(self, alpha: float = 0.05) -> pd.DataFrame:
        """Concepts whose frequency differs between the band and the top extreme.

        For every concept j, a two-sided two-proportion z test (pooled variance) of the
        fraction of band samples with j against the fraction of top-extreme samples with
        j (see :func:`two_proportion_ztest`), with Benjamini-Hochberg q-values over the
        concepts. Rows sorted by p-value, then by the absolute difference.

        Columns: ``concept``, ``band_count``, ``band_fraction``, ``top_count``,
        ``top_fraction``, ``difference`` (band - top; positive: the band is enriched),
        ``z``, ``p_value``, ``q_value``, ``significant`` (q < alpha), ``enriched``.
        """
        if not self.concept_names or self.concepts.ndim != 2 or self.concepts.shape[1] == 0:
            raise ValueError(
                "This data has no concept labels, so there is nothing to test. Use data with "
                "concept labels (e.g. repwidgets.datasets.shapes()) or pass concepts to the "
                "DataBundle."
            )
        n_band, n_top = len(self.indices), len(self.top_indices)
        if n_band == 0 or n_top == 0:
            which = "band" if n_band == 0 else "top extreme"
            raise ValueError(
                f"The {which} is empty, so there is nothing to compare. Widen the band or "
                "raise top_fraction (for example top_fraction=0.2)."
            )
        x_band = self.concepts.double().sum(0).numpy()
        x_top = self.top_concepts.double().sum(0).numpy()
        z, p = two_proportion_ztest(x_band, n_band, x_top, n_top)
        q = benjamini_hochberg(p)
        frame = pd.DataFrame(
            {
                "concept": list(self.concept_names),
                "band_count": x_band.astype(np.int64),
                "band_fraction": x_band / n_band,
                "top_count": x_top.astype(np.int64),
                "top_fraction": x_top / n_top,
            }
        )
        frame["difference"] = frame["band_fraction"] - frame["top_fraction"]
        frame["z"] = z
        frame["p_value"] = p
        frame["q_value"] = q
        frame["significant"] = frame["q_value"] < alpha
        frame["enriched"] = frame["significant"] & (frame["difference"] > 0)
        frame["_abs"] = frame["difference"].abs()
        frame = frame.sort_values(["p_value", "_abs"], ascending=[True, False], kind="stable")
        return frame.drop(columns="_abs").reset_index(drop=True)

    def group_fractions(self) -> pd.DataFrame:
        """Fraction of each group in the band, the top extreme and the whole population."""
        if not self.groups.numel() or int(self.groups.min()) < 0:
            raise ValueError("This data has no group labels (class x artifact).")
        n_groups = max(len(self.group_names), int(self.groups.max()) + 1)

        def frac(g: torch.Tensor) -> np.ndarray:
            if g.numel() == 0:
                return np.zeros(n_groups)
            return np.bincount(g.numpy(), minlength=n_groups) / g.numel()

        return pd.DataFrame(
            {
                "group": [self._group_name(g) for g in range(n_groups)],
                "band_fraction": frac(self.groups),
                "top_fraction": frac(self.top_groups),
            }
        )

    # ------------------------------------------------------------------ curation
    def _curation_context(self) -> dict[str, Any]:
        """What a curation file of this band records about where its samples came from."""
        return {
            "class_index": int(self.class_index),
            "class_name": self.class_name,
            "band": list(self.band),
            "within": self.within,
            "score": self.score,
            "absolute": bool(self.absolute),
            **({"band_choice": self.band_choice} if self.band_choice else {}),
        }

    def candidates(self, session: Session | None = None) -> Candidates:
        """The band as curation candidates (what the curation widget shows).

        Scores are the band's ``values``; the population is every score the band was
        drawn from. Moving the band (``reselect``) needs the session: this result's,
        or ``session`` for a result loaded from a file.
        """
        if session is not None and self._session is None:
            self._session = session
        who = "within class" if self.within == "class" else "over all samples"
        reselect = None
        if self._session is not None:

            def reselect(band: tuple[float, float]) -> Candidates:
                return self.reselect(band=band).candidates()

        return Candidates(
            samples=self.indices,
            scores=self.values,
            labels=self.labels,
            predictions=self.predictions,
            groups=self.groups,
            population=self.population_values,
            band=(float(self.band[0]), float(self.band[1])),
            limits=(float(self.limits[0]), float(self.limits[1])),
            class_names=list(self.class_names),
            group_names=list(self.group_names),
            split=self.split,
            title=f"{self.class_name} · {self.score} {who} · {self.split}",
            score_name=self.score,
            absolute=bool(self.absolute),
            n_split=self.n_samples or None,
            context=self._curation_context(),
            dataset=self.dataset,
            reselect=reselect,
            extra={"logit": self.logits},
        )

    def curation(self, path: str | os.PathLike | None = None) -> Curation:
        """The :class:`Curation` for this band's split (reopened from ``path`` if it exists)."""
        return self.candidates().curation(path)

    def curate(self, path: str | os.PathLike | None = "curation.json", session=None):
        """Open the curation widget on this band; marks are saved to ``path`` on every change.

        Returns the curation widget (``.selected`` is live in Python). ``path=None``
        keeps the marks in memory only. ``session`` is needed for thumbnails and for
        moving the band when this result was loaded from a file.
        """
        return self.widget(path=path, session=session)

    def reselect(self, band: Sequence[float] | None = None, **changes: Any) -> MidrangeResult:
        """The same query with another band (or other options); needs the session."""
        if self._session is None:
            raise ValueError(
                "This result has no session (it was loaded from a file); call "
                "rw.midrange.select(sess, ...) instead."
            )
        auto = band is None and self.band_choice.get("rule", "").startswith(AUTO)
        kwargs = {
            "class_index": self.class_index,
            "band": AUTO if auto else tuple(band) if band is not None else tuple(self.band),
            "split": self.split,
            "within": self.within,
            "score": self.score,
            "absolute": self.absolute,
            "top_fraction": self.top_fraction,
            **({"tail": self.band_choice["tail"]} if auto else {}),
        }
        kwargs.update(changes)
        return select(self._session, **kwargs)

    # ------------------------------------------------------------------ plots
    def plot(self):
        """Histogram of the population's scores (band and top extreme shaded) and the
        concepts that differ most between band and top (when the data has concepts)."""
        return band_figure(self)

    def _summary(self) -> str:
        lo, hi = self.band
        kind = "values" if self.absolute else "quantiles"
        choice = self.band_choice
        why = f"; {choice['rule']} band: {choice['reason']}" if "rule" in choice else ""
        return (
            f"MidrangeResult(class={self.class_name!r}, split={self.split!r}, "
            f"band {kind} [{lo:.4g}, {hi:.4g}] of {self.score} within {self.within} "
            f"({self.score} {self.limits[0]:.3g} .. {self.limits[1]:.3g}): "
            f"{len(self)} of {self.population_size} samples, "
            f"top extreme {len(self.top_indices)}{why})"
        )

    def __repr__(self) -> str:
        return self._summary()


def select_band(
    logits: torch.Tensor,
    targets: torch.Tensor,
    class_index: int,
    config: MidrangeConfig | Mapping[str, Any] | None = None,
    *,
    concepts: torch.Tensor | None = None,
    groups: torch.Tensor | None = None,
    class_names: Sequence[str] | None = None,
    concept_names: Sequence[str] | None = None,
    group_names: Sequence[str] | None = None,
    dataset: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> MidrangeResult:
    """Samples whose score for output neuron ``class_index`` lies in a band (tensor core).

    Args:
        logits: model outputs [n, n_classes] (any device).
        targets: class labels [n].
        class_index: the output neuron k.
        config: a :class:`MidrangeConfig` (or a dict of its settings; None: defaults);
            ``overrides`` replace single settings (``band=(0.2, 0.6)``). The settings:
        band: ``"auto"`` (default): placed from the scores and class labels between the
            atypical tails of the class and of the other classes (see
            :func:`~repwidgets.engines.midrange.band.auto_band`; ``tail`` sets their size);
            or ``(low, high)`` quantiles in [0, 1] of the population's scores
            (inclusive, linear interpolation as ``torch.quantile``), or score values with
            ``absolute=True``. The result's ``band_choice`` records the automatic choice.
        within: ``"class"``: the population is the samples labelled k; ``"all"``: every
            sample of the split. Default: "all" for the automatic band, else "class".
        score: ``"logit"`` (neuron k's logit) or ``"margin"`` (its logit minus the
            largest other logit). Default: the automatic band's score, else "logit".
        top_fraction: the top extreme is the highest ``top_fraction`` of the population
            (band members left out); it is the contrast for :meth:`MidrangeResult.associations`.
        split: the split the samples come from (recorded).
        concepts: bool [n, K] concept labels (optional), groups: long [n] (optional).
        class_names, concept_names, group_names: names for the tables.
        dataset: ``{"name", "fingerprint"}`` of the data (recorded in curation files).

    Returns:
        :class:`MidrangeResult`, band samples sorted by score, highest first.

    Example:
        >>> logits = torch.tensor([[3.0, 0], [2.0, 0], [1.0, 0], [0.0, 0], [5.0, 0]])
        >>> r = select_band(logits, torch.tensor([0, 0, 0, 0, 1]), 0, band=(0.0, 0.5))
        >>> r.indices.tolist()
        [2, 3]
    """
    cfg = MidrangeConfig.resolve(config, overrides)
    band, split, absolute, top_fraction = cfg.band, cfg.split, cfg.absolute, cfg.top_fraction
    auto, within, score = band_options(band, cfg.within, cfg.score)
    if within not in WITHIN:
        raise ValueError(f"within must be one of {WITHIN}, got {within!r}.")
    if not 0.0 < float(top_fraction) <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1]; got {top_fraction!r}.")
    lo_q, hi_q = (0.0, 1.0) if auto else check_band(band, absolute)
    logits = torch.as_tensor(logits).detach().float().cpu()
    targets = torch.as_tensor(targets).detach().long().cpu().reshape(-1)
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape [n, n_classes]; got {tuple(logits.shape)}.")
    n, n_classes = logits.shape
    if targets.shape[0] != n:
        raise ValueError(
            f"logits and targets have different lengths: {n} logits rows, "
            f"{targets.shape[0]} targets. Pass one label per sample."
        )
    bad = ~torch.isfinite(logits).all(dim=1)
    if bad.any():
        where = torch.nonzero(bad).flatten()[:10].tolist()
        raise ValueError(
            f"{int(bad.sum())} samples have NaN or infinite logits (first: {where}). Check the "
            "model and inputs; the band cannot be placed on non-finite scores."
        )
    if class_names is not None and not isinstance(class_index, (int, np.integer)):
        names = list(class_names)
        if class_index not in names:
            raise ValueError(f"Unknown class {class_index!r}; classes are {names}.")
        class_index = names.index(class_index)
    values = class_scores(logits, int(class_index), score)
    margins = class_scores(logits, int(class_index), "margin") if n_classes > 1 else values
    k = int(class_index)
    population = targets == k if within == "class" else torch.ones(n, dtype=torch.bool)
    if not population.any():
        raise ValueError(
            f"No sample of split {split!r} is labelled class {k}, so a band within the class is "
            "empty. Use within='all' or another class."
        )
    pop_values = values[population]
    choice: dict[str, Any] = {}
    if auto:
        name = class_names[k] if class_names is not None and k < len(class_names) else None
        choice = auto_band(values, targets, k, tail=cfg.tail, score=score, class_name=name)
        lo, hi = choice["limits"]
        lo_q, hi_q = (lo, hi) if absolute else quantiles_of_limits(pop_values, lo, hi)
    elif absolute:
        lo, hi = lo_q, hi_q
    else:
        qs = torch.quantile(pop_values, torch.tensor([lo_q, hi_q], dtype=torch.float64))
        lo, hi = float(qs[0]), float(qs[1])
    in_band = population & (values >= lo) & (values <= hi)
    top_limit = float(
        torch.quantile(pop_values, torch.tensor(1.0 - float(top_fraction), dtype=torch.float64))
    )
    in_top = population & (values >= top_limit) & ~in_band

    def ordered(mask: torch.Tensor) -> torch.Tensor:
        idx = torch.nonzero(mask).flatten()
        order = torch.argsort(values[idx], descending=True, stable=True)
        return idx[order]

    idx, top_idx = ordered(in_band), ordered(in_top)
    if concepts is not None:
        concepts = torch.as_tensor(concepts).detach().cpu().bool()
        if concepts.ndim != 2 or concepts.shape[0] != n:
            raise ValueError(
                f"concepts must have shape [n, K] with n={n}; got {tuple(concepts.shape)}."
            )
        if concept_names is not None and len(concept_names) != concepts.shape[1]:
            raise ValueError(
                f"{len(concept_names)} concept names for {concepts.shape[1]} concept columns."
            )
    else:
        concepts = torch.zeros(n, 0, dtype=torch.bool)
    if groups is not None:
        groups = torch.as_tensor(groups).detach().cpu().long().reshape(-1)
        if groups.shape[0] != n:
            raise ValueError(f"groups has {groups.shape[0]} entries for {n} samples.")
    else:
        groups = torch.full((n,), -1, dtype=torch.long)
    preds = logits.argmax(dim=1)
    return MidrangeResult(
        class_index=k,
        split=str(split),
        band=[lo_q, hi_q],
        limits=[lo, hi],
        within=within,
        score=score,
        absolute=bool(absolute),
        top_fraction=float(top_fraction),
        top_limit=top_limit,
        population_size=int(population.sum()),
        n_samples=int(n),
        class_names=[str(c) for c in (class_names or [str(i) for i in range(n_classes)])],
        concept_names=[str(c) for c in (concept_names or [])],
        group_names=[str(g) for g in (group_names or [])],
        dataset=dict(dataset or {}),
        indices=idx,
        values=values[idx].float(),
        logits=logits[idx, k].float(),
        margins=margins[idx].float(),
        labels=targets[idx],
        predictions=preds[idx],
        concepts=concepts[idx],
        groups=groups[idx],
        top_indices=top_idx,
        top_values=values[top_idx].float(),
        top_concepts=concepts[top_idx],
        top_groups=groups[top_idx],
        top_labels=targets[top_idx],
        population_values=pop_values.float(),
        band_choice=choice,
        params=cfg.to_dict(),
    )


def select(
    sess: Session,
    class_index: int | str,
    config: MidrangeConfig | Mapping[str, Any] | None = None,
    **overrides: Any,
) -> MidrangeResult:
    """The mid-range band of output neuron ``class_index`` over a split of a session.

    Pulls the logits, labels, concept labels and groups of the config's ``split`` from
    the session and calls :func:`select_band` (see it, and :class:`MidrangeConfig`, for
    the settings; ``overrides`` such as ``band=(0.25, 0.75)`` replace single ones). By
    default the band is placed automatically (``band="auto"``) over all samples, between
    the least typical members of the class and the least typical samples of the other
    classes, where a shortcut's confounders sit; ``m.band_choice`` says where and why.

    Example:
        >>> m = select(sess, "circle")                                    # doctest: +SKIP
        >>> m.band_choice["reason"]                                       # doctest: +SKIP
        >>> m.to_frame()[["sample", "logit", "label", "group"]].head()  # doctest: +SKIP
    """
    cfg = MidrangeConfig.resolve(config, overrides)
    split = cfg.split
    _data.check_split(sess, split)
    k = _data.class_index(sess, class_index)
    concepts = sess.concepts(split) if sess.concept_names else None
    groups = sess.groups(split)
    n_groups = int(groups.max()) + 1 if groups is not None and groups.numel() else None
    result = select_band(
        sess.logits(split),
        sess.targets(split),
        k,
        cfg,
        concepts=concepts,
        groups=groups,
        class_names=sess.class_names,
        concept_names=sess.concept_names if concepts is not None else None,
        group_names=_data.group_names(sess, n_groups) if groups is not None else None,
        dataset=_data.dataset_identity(sess),
    )
    result._session = sess
    return result


def suggest_class(sess: Session, split: str = "train", band: Sequence[float] = (0.0, 0.5)) -> int:
    """The class whose band differs most from its top extreme in some concept.

    Uses the data's declared spurious class when its config names one; otherwise the
    class with the smallest association p-value.
    """
    config = getattr(sess.data, "config", {}) or {}
    if isinstance(config.get("spurious_class"), int):
        return int(config["spurious_class"])
    best, best_p = 0, math.inf
    for k in range(len(sess.class_names)):
        try:
            assoc = select(sess, k, band=band, split=split).associations()
        except ValueError:
            continue
        p = float(assoc["p_value"].iloc[0])
        if p < best_p:
            best, best_p = k, p
    return best
