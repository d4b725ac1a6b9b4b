"""Mid-range curation: the samples in the middle of a class's output range, curated, retrained.

The highest logits of an output neuron show what the model finds most typical of its
class; the middle of the range shows its associations, confounders included: samples
of the class *without* a spurious feature and samples of other classes *with* it. This
module finds those samples (a band of quantiles of the class's logit or logit margin),
tests which concepts the band is enriched in compared with the top extreme, lets a
person (or a rule) mark them keep / spurious / exclude in a file that is saved on every
change, and retrains only the last layer on frozen penultimate features (in the manner
of Deep Feature Reweighting, Kirichenko et al. 2023) to reduce the model's reliance on
the spurious feature. Reference: O'Mahony, Nikolov, O'Sullivan, "Towards utilising a
range of neural activations for comprehending representational associations", WACV 2025.

Two layers, as every engine:

- tensor-level cores: :func:`select_band` (logits, targets -> :class:`MidrangeResult`),
  :func:`two_proportion_ztest`, :func:`fit_last_layer` (features, targets, weights ->
  ``nn.Linear``), :func:`group_accuracy`;
- session-level entry points: :func:`select`, :func:`retrain_last_layer`,
  :func:`retrain_random`, :func:`retrain_oracle`, :func:`evaluate`, :func:`compare`,
  :func:`auto_curate`, :func:`demo_section`.

Example:
    >>> import repwidgets as rw
    >>> sess = rw.demo_session()                                   # doctest: +SKIP
    >>> m = rw.midrange.select(sess, class_index=0)  # the automatic band  # doctest: +SKIP
    >>> m.associations().head()                                    # doctest: +SKIP
    >>> cur = rw.midrange.auto_curate(m, rule="concepts")          # doctest: +SKIP
    >>> head = rw.midrange.retrain_last_layer(sess, cur)           # doctest: +SKIP
    >>> rw.midrange.evaluate(sess, head)                           # doctest: +SKIP
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from repwidgets._progress import progress_bar
from repwidgets.curation_store import (
    MARKS,
    Curation,
    CurationFileError,
    CurationWriteError,
    VanishedMarksWarning,
)
from repwidgets.engines.midrange_band import (
    AUTO,
    AUTO_SCORE,
    AUTO_TAIL,
    auto_band,
    class_scores,
    quantiles_of_limits,
    two_proportion_ztest,
)
from repwidgets.engines.midrange_band import benjamini_hochberg as _benjamini_hochberg
from repwidgets.results import Result, notebook_plot

__all__ = [
    "DEMO_BAND",
    "MARKS",
    "Curation",
    "CurationFileError",
    "CurationWriteError",
    "MidrangeResult",
    "VanishedMarksWarning",
    "auto_curate",
    "class_scores",
    "compare",
    "curated_training_set",
    "demo_section",
    "evaluate",
    "fit_last_layer",
    "group_accuracy",
    "model_with_head",
    "oracle_training_set",
    "plot_comparison",
    "random_training_set",
    "retrain_last_layer",
    "retrain_oracle",
    "retrain_random",
    "select",
    "select_band",
    "suggest_class",
    "two_proportion_ztest",
    "typical_pattern",
]

WITHIN = ("class", "all")
DEFAULT_CS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
#: The band the demo curates: the automatic band (over all samples, between the class's
#: least typical members and the other classes' least typical samples).
DEMO_BAND = {"band": AUTO}


# =============================================================================== band
def _check_band(band: Sequence[float], absolute: bool) -> tuple[float, float]:
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
        q = _benjamini_hochberg(p)
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
    def curation(self, path: str | os.PathLike | None = None) -> Curation:
        """The :class:`Curation` for this band's split (reopened from ``path`` if it exists)."""
        context = {
            "class_index": int(self.class_index),
            "class_name": self.class_name,
            "band": list(self.band),
            "within": self.within,
            "score": self.score,
            "absolute": bool(self.absolute),
            **({"band_choice": self.band_choice} if self.band_choice else {}),
        }
        kwargs = {"split": self.split, "n_samples": self.n_samples or None}
        if path is None:
            return Curation.in_memory(dataset=self.dataset, context=context, **kwargs)
        return Curation.open(path, dataset=self.dataset, context=context, **kwargs)

    def curate(self, path: str | os.PathLike | None = "curation.json", session=None):
        """Open the curation widget on this band; marks are saved to ``path`` on every change.

        Returns a ``CurationSelector`` (``.selected`` is live in Python). ``path=None``
        keeps the marks in memory only. ``session`` is needed for thumbnails and for
        moving the band when this result was loaded from a file.
        """
        from repwidgets.widgets.curation import CurationSelector

        sess = session if session is not None else self._session
        return CurationSelector.from_result(self, path=path, session=sess)

    def widget(self):
        """The curation widget over this band, marks kept in memory (see :meth:`curate`)."""
        return self.curate(path=None)

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
        from bokeh.layouts import row
        from bokeh.models import ColumnDataSource, Span
        from bokeh.plotting import figure

        values = self.population_values.double().numpy()
        values = values[np.isfinite(values)]
        counts, edges = np.histogram(values, bins=40) if values.size else ([], [0, 1])
        centres = (np.asarray(edges[:-1]) + np.asarray(edges[1:])) / 2
        lo, hi = self.limits
        region = np.where(
            (centres >= lo) & (centres <= hi),
            "band",
            np.where(centres >= self.top_limit, "top", "other"),
        )
        colours = {"band": "#ff7f0e", "top": "#1f77b4", "other": "#bbbbbb"}
        source = ColumnDataSource(
            {
                "left": np.asarray(edges[:-1]),
                "right": np.asarray(edges[1:]),
                "count": np.asarray(counts),
                "region": region,
                "colour": [colours[r] for r in region],
            }
        )
        who = f"class {self.class_name}" if self.within == "class" else "all samples"
        fig = figure(
            title=f"{self.score} of neuron {self.class_name!s} ({who}, {self.split})",
            width=520,
            height=300,
            x_axis_label=self.score,
            y_axis_label="samples",
            tools="hover,save,reset,box_zoom",
            tooltips=[
                ("range", "@left{0.00} .. @right{0.00}"),
                ("samples", "@count"),
                ("", "@region"),
            ],
        )
        fig.quad(
            left="left",
            right="right",
            top="count",
            bottom=0,
            color="colour",
            fill_alpha=0.8,
            source=source,
            legend_field="region",
        )
        for x in (lo, hi):
            fig.add_layout(
                Span(
                    location=float(x), dimension="height", line_dash="dashed", line_color="#d62728"
                )
            )
        fig.legend.location = "top_left"
        if not self.concept_names or len(self) == 0 or len(self.top_indices) == 0:
            return fig
        assoc = self.associations().head(12)
        names = [str(c) for c in assoc["concept"]]
        src = ColumnDataSource(
            {
                "concept": names,
                "band": assoc["band_fraction"].to_numpy(),
                "top": assoc["top_fraction"].to_numpy(),
                "p": assoc["p_value"].to_numpy(),
            }
        )

        bar = figure(
            title="Concepts: band vs top extreme (lowest p first)",
            x_range=names,
            width=max(520, 40 * len(names)),
            height=300,
            y_range=(0, 1.05),
            y_axis_label="fraction of samples",
            tools="hover,save",
            tooltips=[
                ("concept", "@concept"),
                ("band", "@band{0.000}"),
                ("top", "@top{0.000}"),
                ("p", "@p{0.0000e}"),
            ],
        )
        _paired_bars(bar, src, "concept", ("band", "#ff7f0e", "band"), ("top", "#1f77b4", "top"))
        bar.xaxis.major_label_orientation = 0.9
        bar.legend.location = "top_right"
        return row(fig, bar)

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
    band: Sequence[float] | str = AUTO,
    *,
    within: str | None = None,
    score: str | None = None,
    absolute: bool = False,
    top_fraction: float = 0.1,
    tail: float = AUTO_TAIL,
    concepts: torch.Tensor | None = None,
    groups: torch.Tensor | None = None,
    class_names: Sequence[str] | None = None,
    concept_names: Sequence[str] | None = None,
    group_names: Sequence[str] | None = None,
    split: str = "train",
    dataset: Mapping[str, Any] | None = None,
) -> MidrangeResult:
    """Samples whose score for output neuron ``class_index`` lies in a band (tensor core).

    Args:
        logits: model outputs [n, n_classes] (any device).
        targets: class labels [n].
        class_index: the output neuron k.
        band: ``"auto"`` (default): placed from the scores and class labels between the
            atypical tails of the class and of the other classes (see
            :func:`~repwidgets.engines.midrange_band.auto_band`; ``tail`` sets their size);
            or ``(low, high)`` quantiles in [0, 1] of the population's scores
            (inclusive, linear interpolation as ``torch.quantile``), or score values with
            ``absolute=True``. The result's ``band_choice`` records the automatic choice.
        within: ``"class"``: the population is the samples labelled k; ``"all"``: every
            sample of the split. Default: "all" for the automatic band, else "class".
        score: ``"logit"`` (neuron k's logit) or ``"margin"`` (its logit minus the
            largest other logit). Default: the automatic band's score, else "logit".
        top_fraction: the top extreme is the highest ``top_fraction`` of the population
            (band members left out); it is the contrast for :meth:`MidrangeResult.associations`.
        concepts: bool [n, K] concept labels (optional), groups: long [n] (optional).
        class_names, concept_names, group_names: names for the tables.

    Returns:
        :class:`MidrangeResult`, band samples sorted by score, highest first.

    Example:
        >>> logits = torch.tensor([[3.0, 0], [2.0, 0], [1.0, 0], [0.0, 0], [5.0, 0]])
        >>> r = select_band(logits, torch.tensor([0, 0, 0, 0, 1]), 0, band=(0.0, 0.5))
        >>> r.indices.tolist()
        [2, 3]
    """
    auto, within, score = _band_options(band, within, score)
    if within not in WITHIN:
        raise ValueError(f"within must be one of {WITHIN}, got {within!r}.")
    if not 0.0 < float(top_fraction) <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1]; got {top_fraction!r}.")
    lo_q, hi_q = (0.0, 1.0) if auto else _check_band(band, absolute)
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
        choice = auto_band(values, targets, k, tail=tail, score=score, class_name=name)
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
    )


def _band_options(band: Any, within: str | None, score: str | None) -> tuple[bool, str, str]:
    """(automatic?, within, score) with the defaults of an automatic or an explicit band."""
    auto = isinstance(band, str)
    if auto and band != AUTO:
        raise ValueError(f"band must be {AUTO!r} or a pair (low, high); got {band!r}.")
    within = within if within is not None else "all" if auto else "class"
    score = score if score is not None else AUTO_SCORE if auto else "logit"
    return auto, within, score


# =============================================================================== session
def _dataset_identity(sess) -> dict:
    config = getattr(sess.data, "config", None) or {"name": sess.data.name}
    digest = hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()
    return {"name": str(sess.data.name), "fingerprint": digest[:16]}


def _group_names(sess, n_groups: int | None = None) -> list[str]:
    names = list(getattr(sess.data, "group_names", None) or [])
    if n_groups is not None and len(names) < n_groups:
        names += [f"group {g}" for g in range(len(names), n_groups)]
    return names


def _class_index(sess, class_index: int | str) -> int:
    names = sess.class_names
    if isinstance(class_index, str):
        if class_index not in names:
            raise ValueError(f"Unknown class {class_index!r}; classes are {names}.")
        return names.index(class_index)
    if isinstance(class_index, bool) or not isinstance(class_index, (int, np.integer)):
        raise TypeError(f"class_index must be an int or a class name; got {class_index!r}.")
    return int(class_index)


def _check_split(sess, split: str) -> None:
    if split not in sess.data.splits:
        raise ValueError(f"Unknown split {split!r}; available splits: {list(sess.data.splits)}.")


def select(
    sess,
    class_index: int | str,
    band: Sequence[float] | str = AUTO,
    split: str = "train",
    within: str | None = None,
    score: str | None = None,
    absolute: bool = False,
    top_fraction: float = 0.1,
    tail: float = AUTO_TAIL,
) -> MidrangeResult:
    """The mid-range band of output neuron ``class_index`` over a split of a session.

    Pulls the logits, labels, concept labels and groups of ``split`` from the session and
    calls :func:`select_band` (see it for the meaning of each argument). By default the
    band is placed automatically (``band="auto"``) over all samples, between the least
    typical members of the class and the least typical samples of the other classes,
    where a shortcut's confounders sit; ``m.band_choice`` says where and why.

    Example:
        >>> m = select(sess, "circle")                                    # doctest: +SKIP
        >>> m.band_choice["reason"]                                       # doctest: +SKIP
        >>> m.to_frame()[["sample", "logit", "label", "prediction", "group"]].head()
    """
    _check_split(sess, split)
    k = _class_index(sess, class_index)
    logits = sess.logits(split)
    targets = sess.targets(split)
    concepts = sess.concepts(split) if sess.concept_names else None
    groups = sess.groups(split)
    n_groups = int(groups.max()) + 1 if groups is not None and groups.numel() else None
    result = select_band(
        logits,
        targets,
        k,
        band,
        within=within,
        score=score,
        absolute=absolute,
        top_fraction=top_fraction,
        tail=tail,
        concepts=concepts,
        groups=groups,
        class_names=sess.class_names,
        concept_names=sess.concept_names if concepts is not None else None,
        group_names=_group_names(sess, n_groups) if groups is not None else None,
        split=split,
        dataset=_dataset_identity(sess),
    )
    result._session = sess
    return result


# =============================================================================== curation rules
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


# =============================================================================== retraining core
def fit_last_layer(
    features: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor | None = None,
    *,
    n_classes: int | None = None,
    C: float = 1.0,
    standardize: bool = True,
    max_iter: int = 2000,
    device: str | torch.device | None = None,
) -> nn.Linear:
    """Fit a multinomial logistic-regression head on frozen features; return it as nn.Linear.

    scikit-learn's ``LogisticRegression(C=C, solver="lbfgs")`` (L2 penalty) with per-sample
    ``weights``, on features standardised with the (unweighted) mean and standard
    deviation of the training rows; the standardisation is folded into the returned
    layer, so ``head(features)`` gives the logistic regression's decision values.

    Args:
        features: [n, D] penultimate features.
        targets: [n] class labels in ``0..n_classes-1`` (every class must appear).
        weights: [n] non-negative sample weights (None: all 1).
        n_classes: width of the head (default: max label + 1).
        C: inverse regularisation strength.
        device: device of the returned layer (default: the features' device).

    Returns:
        ``nn.Linear(D, n_classes)`` in float32. With two classes, rows are
        ``(-w/2, w/2)`` so that the softmax equals the logistic model.
    """
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    device = torch.device(device) if device is not None else torch.as_tensor(features).device
    X = torch.as_tensor(features).detach().double().cpu().numpy()
    y = torch.as_tensor(targets).detach().long().cpu().numpy().reshape(-1)
    if X.ndim != 2:
        raise ValueError(f"features must have shape [n, D]; got {X.shape}.")
    if X.shape[0] != y.shape[0]:
        raise ValueError(
            f"features and targets have different lengths: {X.shape[0]} rows, {y.shape[0]} labels."
        )
    if not np.isfinite(X).all():
        rows = np.flatnonzero(~np.isfinite(X).all(1))[:10].tolist()
        raise ValueError(f"features contain NaN or infinite values (rows {rows}).")
    n_classes = int(n_classes) if n_classes is not None else int(y.max()) + 1
    present = np.unique(y)
    if len(present) != n_classes:
        missing = sorted(set(range(n_classes)) - set(present.tolist()))
        raise ValueError(
            f"The training set for the head lacks classes {missing}; every class needs samples. "
            "Add samples of those classes (a larger class-balanced sample of the rest)."
        )
    w = None
    if weights is not None:
        w = torch.as_tensor(weights).detach().double().cpu().numpy().reshape(-1)
        if w.shape[0] != X.shape[0]:
            raise ValueError(f"weights has {w.shape[0]} entries for {X.shape[0]} samples.")
        if (w < 0).any() or not np.isfinite(w).all():
            raise ValueError("weights must be finite and non-negative.")
    if standardize:
        mean = X.mean(0)
        scale = X.std(0)
        scale[scale == 0] = 1.0
    else:
        mean, scale = np.zeros(X.shape[1]), np.ones(X.shape[1])
    Z = (X - mean) / scale
    clf = LogisticRegression(C=float(C), max_iter=int(max_iter), solver="lbfgs")
    # One BLAS thread: the problem is small ([n, D] with D in the hundreds), and a thread
    # pool on a busy machine makes each fit tens of times slower, not faster.
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.filterwarnings("ignore", message=".*did not converge.*")
        clf.fit(Z, y, sample_weight=w)
    coef, intercept = clf.coef_, clf.intercept_
    if coef.shape[0] == 1:  # binary: decision = w.z + b for class 1
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    weight = coef / scale[None, :]
    bias = intercept - weight @ mean
    head = nn.Linear(X.shape[1], n_classes)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(weight))
        head.bias.copy_(torch.from_numpy(bias))
    return head.to(device)


def group_accuracy(
    predictions: torch.Tensor, targets: torch.Tensor, groups: torch.Tensor | None = None
) -> dict[str, Any]:
    """Accuracy, per-group accuracies and the worst group's (groups absent: the classes).

    Returns:
        ``{"accuracy", "worst_group_accuracy", "worst_group", "mean_group_accuracy",
        "per_group": {group id: accuracy}}``; empty groups are left out.
    """
    pred = torch.as_tensor(predictions).cpu().long().reshape(-1)
    y = torch.as_tensor(targets).cpu().long().reshape(-1)
    if pred.shape != y.shape:
        raise ValueError(f"{pred.numel()} predictions for {y.numel()} targets.")
    g = y if groups is None else torch.as_tensor(groups).cpu().long().reshape(-1)
    correct = (pred == y).double()
    per_group = {}
    for gid in torch.unique(g).tolist():
        mask = g == gid
        per_group[int(gid)] = float(correct[mask].mean())
    worst = min(per_group, key=per_group.get) if per_group else -1
    return {
        "accuracy": float(correct.mean()) if correct.numel() else float("nan"),
        "worst_group_accuracy": per_group.get(worst, float("nan")),
        "worst_group": worst,
        "mean_group_accuracy": float(np.mean(list(per_group.values())))
        if per_group
        else float("nan"),
        "per_group": per_group,
    }


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


# =============================================================================== retraining (session)
def _as_marks(curated: Any, sess, split: str) -> dict[int, str]:
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


def _features(sess, split: str) -> torch.Tensor:
    _check_split(sess, split)
    return sess.penultimate(split)


def _val_groups(sess, split: str) -> torch.Tensor:
    groups = sess.groups(split)
    return sess.targets(split) if groups is None else groups


def _fit_with_validation(
    sess,
    idx: np.ndarray,
    weights: np.ndarray,
    *,
    split: str,
    val_split: str | None,
    C: float | None,
    Cs: Sequence[float],
    select_by: str,
    progress: bool | None,
    method: str,
    seed: int,
) -> nn.Linear:
    """Fit heads for each C, keep the best on the validation split (or fit ``C`` directly)."""
    t0 = time.perf_counter()
    X = _features(sess, split)
    y = sess.targets(split)
    n_classes = len(sess.class_names)
    idx_t = torch.as_tensor(idx, dtype=torch.long)
    Xtr, ytr, wtr = X[idx_t.to(X.device)], y[idx_t], torch.as_tensor(weights)
    info: dict[str, Any] = {
        "method": method,
        "split": split,
        "n_train": int(len(idx)),
        "seed": int(seed),
        "class_counts": np.bincount(ytr.numpy(), minlength=n_classes).tolist(),
    }
    if C is not None:
        head = fit_last_layer(Xtr, ytr, wtr, n_classes=n_classes, C=C, device=sess.device)
        info.update({"C": float(C), "validation": None})
    else:
        if val_split is None or val_split not in sess.data.splits:
            warnings.warn(
                f"No validation split {val_split!r} to choose the regularisation on "
                f"(splits: {list(sess.data.splits)}); using C=1.0. Pass val_split=... or C=...",
                UserWarning,
                stacklevel=3,
            )
            return _fit_with_validation(
                sess,
                idx,
                weights,
                split=split,
                val_split=None,
                C=1.0,
                Cs=Cs,
                select_by=select_by,
                progress=progress,
                method=method,
                seed=seed,
            )
        Xv = _features(sess, val_split)
        yv = sess.targets(val_split)
        gv = _val_groups(sess, val_split)
        if select_by == "auto":
            select_by = "worst_group" if sess.groups(val_split) is not None else "accuracy"
        if select_by not in ("worst_group", "accuracy"):
            raise ValueError(
                f"select_by must be 'auto', 'worst_group' or 'accuracy'; got {select_by!r}."
            )
        show = sess.progress if progress is None else progress
        best, best_key, scores = None, None, []
        for c in progress_bar(list(Cs), desc=f"{method}: choosing C", enable=show):
            head = fit_last_layer(Xtr, ytr, wtr, n_classes=n_classes, C=c, device=sess.device)
            with torch.no_grad():
                pred = head(Xv.to(sess.device).float()).argmax(1).cpu()
            acc = group_accuracy(pred, yv, gv)
            key = (
                (acc["worst_group_accuracy"], acc["accuracy"])
                if select_by == "worst_group"
                else (acc["accuracy"], acc["worst_group_accuracy"])
            )
            scores.append(
                {
                    "C": float(c),
                    "accuracy": acc["accuracy"],
                    "worst_group_accuracy": acc["worst_group_accuracy"],
                }
            )
            if best_key is None or key > best_key:
                best, best_key, info["C"] = head, key, float(c)
        head = best
        info.update({"validation": scores, "val_split": val_split, "select_by": select_by})
    info["seconds"] = time.perf_counter() - t0
    head.retrain_info = info
    head.eval()
    return head


def retrain_last_layer(
    sess,
    curated: Any,
    *,
    split: str = "train",
    val_split: str | None = "val",
    C: float | None = None,
    Cs: Sequence[float] = DEFAULT_CS,
    spurious_weight: float | str = "balance",
    n_rest_per_class: int | None = None,
    seed: int = 0,
    select_by: str = "auto",
    progress: bool | None = None,
) -> nn.Linear:
    """Retrain the last layer on curated mid-range samples; return a new head (nn.Linear).

    The base model is untouched. The head is a logistic regression (see
    :func:`fit_last_layer`) on the frozen penultimate features of ``split``
    (``sess.penultimate(split)``), trained on (see :func:`curated_training_set`):

    - samples marked "keep", weight 1;
    - samples marked "spurious", upweighted: they are the confounders that contradict
      the shortcut, so the head must fit them. With ``spurious_weight="balance"``
      (default) they weigh, within each class, as much as the class's other samples
      together (DFR's group balancing with the marks as pseudo-groups); a number gives
      each that weight;
    - no sample marked "exclude" (removed everywhere);
    - a class-balanced random sample of the unmarked rest (``n_rest_per_class`` per
      class, default max(50, curated / n_classes)), so that every class is represented;
    - weights rescaled so that the classes weigh the same.

    The regularisation C is chosen from ``Cs`` on ``val_split`` by worst-group accuracy
    where the split has groups (else accuracy); pass ``C`` to skip the search. The head
    carries ``head.retrain_info`` (chosen C, validation scores, training-set size).

    Args:
        curated: a ``CurationSelector`` widget, a :class:`Curation`, a curation file path,
            a :class:`MidrangeResult` (all band samples "keep"), a dict ``{mark: [indices]}``
            or ``{index: mark}``, or a list of indices ("keep"). Marks for samples that
            no longer exist are reported (warning) and ignored.

    Returns:
        ``nn.Linear(D, n_classes)`` on the session's device; use it on
        ``sess.penultimate(split)`` or build a full model with :func:`model_with_head`.

    Example:
        >>> head = retrain_last_layer(sess, "curation.json")  # doctest: +SKIP
        >>> evaluate(sess, head)                              # doctest: +SKIP
    """
    marks = _as_marks(curated, sess, split)
    idx, w = curated_training_set(
        marks,
        sess.targets(split),
        n_classes=len(sess.class_names),
        spurious_weight=spurious_weight,
        n_rest_per_class=n_rest_per_class,
        seed=seed,
    )
    head = _fit_with_validation(
        sess,
        idx,
        w,
        split=split,
        val_split=val_split,
        C=C,
        Cs=Cs,
        select_by=select_by,
        progress=progress,
        method="curated",
        seed=seed,
    )
    head.retrain_info["marks"] = {k: sum(1 for v in marks.values() if v == k) for k in MARKS}
    return head


def retrain_random(
    sess,
    n: int | Sequence[int],
    *,
    split: str = "train",
    val_split: str | None = "val",
    C: float | None = None,
    Cs: Sequence[float] = DEFAULT_CS,
    n_rest_per_class: int | None = None,
    seed: int = 0,
    select_by: str = "auto",
    progress: bool | None = None,
) -> nn.Linear:
    """Baseline: last-layer retraining on random samples instead of curated ones.

    ``n`` is either a number of random samples (class-stratified) or the curated
    indices whose size and class counts the random draw copies. Same procedure as
    :func:`retrain_last_layer` otherwise (class-balanced rest, C on validation).
    """
    y = sess.targets(split)
    n_classes = len(sess.class_names)
    if isinstance(n, (int, np.integer)):
        rng = _rng(seed + 104729)
        like = rng.choice(len(y), size=min(int(n), len(y)), replace=False)
    else:
        like = np.asarray(list(n), dtype=np.int64)
    idx, w = random_training_set(
        y, like, n_classes=n_classes, n_rest_per_class=n_rest_per_class, seed=seed
    )
    return _fit_with_validation(
        sess,
        idx,
        w,
        split=split,
        val_split=val_split,
        C=C,
        Cs=Cs,
        select_by=select_by,
        progress=progress,
        method="random",
        seed=seed,
    )


def retrain_oracle(
    sess,
    *,
    split: str = "train",
    val_split: str | None = "val",
    C: float | None = None,
    Cs: Sequence[float] = DEFAULT_CS,
    mode: str = "reweight",
    n_per_group: int | None = None,
    seed: int = 0,
    select_by: str = "auto",
    progress: bool | None = None,
) -> nn.Linear:
    """Upper bound: group-balanced last-layer retraining with the true group labels.

    See :func:`oracle_training_set` for ``mode`` ("reweight": all samples, groups
    weighted equally; "subsample": the same number of samples from every group).
    """
    groups = sess.groups(split)
    if groups is None:
        raise ValueError(
            f"Split {split!r} has no group labels, so the group-label oracle is undefined. "
            "Use data with groups (class x artifact), e.g. repwidgets.datasets.shapes()."
        )
    idx, w = oracle_training_set(
        groups, sess.targets(split), n_per_group=n_per_group, seed=seed, mode=mode
    )
    return _fit_with_validation(
        sess,
        idx,
        w,
        split=split,
        val_split=val_split,
        C=C,
        Cs=Cs,
        select_by=select_by,
        progress=progress,
        method=f"oracle ({mode})",
        seed=seed,
    )


def model_with_head(sess, head: nn.Linear) -> nn.Module:
    """A copy of the session's model whose last linear layer is ``head`` (base untouched)."""
    name, old = sess.last_linear()
    if not isinstance(head, nn.Linear) or head.weight.shape != old.weight.shape:
        shape = tuple(getattr(head, "weight", torch.zeros(0)).shape)
        raise ValueError(
            f"head must be an nn.Linear with weight shape {tuple(old.weight.shape)}; got {shape}."
        )
    model = copy.deepcopy(sess.model)
    parent = model
    *path, last = name.split(".")
    for part in path:
        parent = getattr(parent, part)
    new = copy.deepcopy(head).to(old.weight.device, old.weight.dtype)
    setattr(parent, last, new)
    return model.eval()


# =============================================================================== evaluation
def _predict(head: nn.Module, X: torch.Tensor) -> torch.Tensor:
    param = next(head.parameters(), None)
    device = param.device if param is not None else X.device
    outs = []
    with torch.no_grad():
        for start in range(0, X.shape[0], 65536):
            outs.append(head(X[start : start + 65536].to(device).float()).argmax(1).cpu())
    return torch.cat(outs) if outs else torch.zeros(0, dtype=torch.long)


def evaluate(
    sess,
    head: nn.Module | Mapping[str, nn.Module] | None = None,
    split: str = "test",
) -> pd.DataFrame:
    """Accuracy and worst-group accuracy of the model before ("ERM") and after retraining.

    Args:
        head: a retrained head, or ``{name: head}`` for several (None: only the model).
        split: the split to score (the shapes test split is group-balanced).

    Returns:
        One row per model ("before" = the session's model, then "after" or the dict's
        names); columns ``accuracy``, ``worst_group_accuracy``, ``worst_group``,
        ``mean_group_accuracy``, then ``acc[<group>]`` per group.
    """
    _check_split(sess, split)
    y = sess.targets(split)
    groups = sess.groups(split)
    g = y if groups is None else groups
    n_groups = int(g.max()) + 1 if g.numel() else 0
    names = _group_names(sess, n_groups) if groups is not None else list(sess.class_names)
    rows = {"before": sess.logits(split).argmax(1).cpu()}
    if head is not None:
        heads = head if isinstance(head, Mapping) else {"after": head}
        X = _features(sess, split)
        for name, h in heads.items():
            rows[str(name)] = _predict(h, X)
    records = []
    for name, pred in rows.items():
        acc = group_accuracy(pred, y, g)
        rec = {
            "model": name,
            "accuracy": acc["accuracy"],
            "worst_group_accuracy": acc["worst_group_accuracy"],
            "worst_group": names[acc["worst_group"]] if acc["worst_group"] >= 0 else "",
            "mean_group_accuracy": acc["mean_group_accuracy"],
        }
        for gid, a in acc["per_group"].items():
            rec[f"acc[{names[gid]}]"] = a
        records.append(rec)
    return pd.DataFrame.from_records(records).set_index("model")


def compare(
    sess,
    curated: Any,
    seeds: Iterable[int] = (0, 1, 2),
    *,
    split: str = "train",
    val_split: str | None = "val",
    test_split: str = "test",
    oracle_mode: str = "reweight",
    spurious_weight: float | str = "balance",
    n_rest_per_class: int | None = None,
    Cs: Sequence[float] = DEFAULT_CS,
    progress: bool | None = None,
) -> pd.DataFrame:
    """ERM vs random last-layer retraining vs curated vs the group-label oracle.

    For every seed (the random draws: the rest sample, the random baseline, an oracle
    subsample) each method is retrained with C chosen on ``val_split``, then scored on
    ``test_split``. ERM (the model itself) does not depend on the seed.

    Returns:
        One row per method (``ERM``, ``random``, ``curated``, ``oracle``) with
        ``accuracy_mean``, ``accuracy_std``, ``worst_group_accuracy_mean``,
        ``worst_group_accuracy_std``, ``n_seeds``; the per-seed rows are in
        ``frame.attrs["per_seed"]`` (a list of dicts). The oracle row is left out when
        the data has no group labels.

    Example:
        >>> compare(sess, auto_curate(select(sess, 0)), seeds=(0, 1, 2))  # doctest: +SKIP
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must hold at least one seed.")
    marks = _as_marks(curated, sess, split)
    y_test = sess.targets(test_split)
    g_test = _val_groups(sess, test_split)
    X_test = _features(sess, test_split)
    has_groups = sess.groups(split) is not None
    show = sess.progress if progress is None else progress
    records = []
    erm = group_accuracy(sess.logits(test_split).argmax(1).cpu(), y_test, g_test)
    common = {"split": split, "val_split": val_split, "Cs": Cs, "progress": False}
    oracle_head = None
    for seed in progress_bar(seeds, desc="midrange.compare", enable=show):
        records.append({"method": "ERM", "seed": seed, **_scores(erm)})
        cur_head = retrain_last_layer(
            sess,
            marks,
            spurious_weight=spurious_weight,
            n_rest_per_class=n_rest_per_class,
            seed=seed,
            **common,
        )
        curated_idx = [i for i, m in marks.items() if m in ("keep", "spurious")]
        rnd_head = retrain_random(
            sess, curated_idx, n_rest_per_class=n_rest_per_class, seed=seed, **common
        )
        heads = {"random": rnd_head, "curated": cur_head}
        if has_groups:
            # the reweighted oracle uses every sample: no random draw, so fit it once
            if oracle_head is None or oracle_mode != "reweight":
                oracle_head = retrain_oracle(sess, mode=oracle_mode, seed=seed, **common)
            heads["oracle"] = oracle_head
        for name, head in heads.items():
            acc = group_accuracy(_predict(head, X_test), y_test, g_test)
            records.append(
                {"method": name, "seed": seed, "C": head.retrain_info["C"], **_scores(acc)}
            )
    per_seed = pd.DataFrame.from_records(records)
    table = per_seed.groupby("method", sort=False).agg(
        accuracy_mean=("accuracy", "mean"),
        accuracy_std=("accuracy", "std"),
        worst_group_accuracy_mean=("worst_group_accuracy", "mean"),
        worst_group_accuracy_std=("worst_group_accuracy", "std"),
        n_seeds=("seed", "nunique"),
    )
    table = table.fillna({"accuracy_std": 0.0, "worst_group_accuracy_std": 0.0})
    table.attrs["per_seed"] = per_seed.to_dict("records")
    table.attrs["test_split"] = test_split
    return table


def _scores(acc: Mapping[str, Any]) -> dict[str, float]:
    return {"accuracy": acc["accuracy"], "worst_group_accuracy": acc["worst_group_accuracy"]}


def _paired_bars(fig, source, category: str, left: tuple, right: tuple) -> None:
    """Two bars side by side per category; ``left``/``right`` are (column, colour, legend)."""
    from bokeh.transform import dodge

    for offset, (column, colour, legend) in ((-0.18, left), (0.18, right)):
        fig.vbar(
            x=dodge(category, offset, range=fig.x_range),
            top=column,
            width=0.34,
            source=source,
            color=colour,
            legend_label=legend,
        )


@notebook_plot
def plot_comparison(table: pd.DataFrame, title: str = "Last-layer retraining"):
    """Bars of accuracy and worst-group accuracy per method with the spread over seeds."""
    from bokeh.models import ColumnDataSource, Whisker
    from bokeh.plotting import figure
    from bokeh.transform import dodge

    methods = [str(m) for m in table.index]
    src = ColumnDataSource(
        {
            "method": methods,
            "acc": table["accuracy_mean"].to_numpy(),
            "acc_lo": (table["accuracy_mean"] - table["accuracy_std"]).to_numpy(),
            "acc_hi": (table["accuracy_mean"] + table["accuracy_std"]).to_numpy(),
            "wga": table["worst_group_accuracy_mean"].to_numpy(),
            "wga_lo": (
                table["worst_group_accuracy_mean"] - table["worst_group_accuracy_std"]
            ).to_numpy(),
            "wga_hi": (
                table["worst_group_accuracy_mean"] + table["worst_group_accuracy_std"]
            ).to_numpy(),
        }
    )
    fig = figure(
        x_range=methods,
        y_range=(0, 1.05),
        width=520,
        height=300,
        title=title,
        y_axis_label="test accuracy",
        tools="hover,save",
        tooltips=[
            ("method", "@method"),
            ("accuracy", "@acc{0.000}"),
            ("worst group", "@wga{0.000}"),
        ],
    )
    _paired_bars(
        fig,
        src,
        "method",
        ("acc", "#1f77b4", "accuracy"),
        ("wga", "#d62728", "worst-group accuracy"),
    )
    fig.add_layout(
        Whisker(
            source=src,
            base=dodge("method", -0.18, range=fig.x_range),
            upper="acc_hi",
            lower="acc_lo",
        )
    )
    fig.add_layout(
        Whisker(
            source=src,
            base=dodge("method", 0.18, range=fig.x_range),
            upper="wga_hi",
            lower="wga_lo",
        )
    )
    fig.legend.location = "bottom_right"
    return fig


# =============================================================================== demo
def suggest_class(sess, split: str = "train", band: Sequence[float] = (0.0, 0.5)) -> int:
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


def demo_section(
    sess,
    seeds: Iterable[int] = (0, 1, 2),
    band: Sequence[float] = (0.0, 0.5),
    curation_band: Mapping[str, Any] | None = None,
) -> dict:
    """The mid-range curation part of the demo report: band, associations, comparison table.

    Two bands of the class with a confounder (the data's spurious class, else the one
    with the strongest association): the within-class band ``band`` shows what the
    middle of the class reveals (its concept mix and its minority-group fraction
    against the base rate); the band ``curation_band`` (default :data:`DEMO_BAND`, over
    all samples, where both kinds of confounder sit) is curated automatically
    (``auto_curate(rule="concepts")``) and the last layer retrained: ERM vs random vs
    curated vs the group-label oracle over ``seeds``. Prints the table.

    Returns:
        ``{"title", "summary_lines", "figures"}`` (figures: the band histogram with the
        concept bars, the comparison bars).

    Example:
        >>> section = demo_section(rw.demo_session())   # doctest: +SKIP
    """
    t0 = time.perf_counter()
    seeds = [int(s) for s in seeds]
    k = suggest_class(sess, band=band)
    m = select(sess, k, band=band, split="train", within="class")
    lines = [f"What the middle of a class reveals: {m._summary()}"]
    try:
        assoc = m.associations()
        for _, r in assoc.head(3).iterrows():
            lines.append(
                f"  {r['concept']}: band {r['band_fraction']:.2f} vs top {r['top_fraction']:.2f} "
                f"(p={r['p_value']:.1e})"
            )
    except ValueError as exc:
        lines.append(f"  associations unavailable: {exc}")
    try:
        frac = m.group_fractions()
        base = _population_group_fraction(sess, m)
        lines.append(
            "  band group mix: "
            + ", ".join(
                f"{g} {b:.2f} (base {base.get(g, float('nan')):.2f})"
                for g, b in zip(frac["group"], frac["band_fraction"])
                if b > 0 or base.get(g, 0) > 0
            )
        )
    except ValueError:
        pass
    opts = dict(DEMO_BAND if curation_band is None else curation_band)
    m_cur = select(sess, k, split="train", **opts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        cur = auto_curate(m_cur, rule="concepts")
    pattern = cur.context.get("typical_pattern", {})
    lines.append(
        f"Curated band: {m_cur._summary()}; automatic curation (rule='concepts', "
        f"typical pattern {pattern}): {cur.counts()}"
    )
    table = compare(sess, cur, seeds=seeds, progress=False)
    shown = table[
        ["accuracy_mean", "accuracy_std", "worst_group_accuracy_mean", "worst_group_accuracy_std"]
    ]
    text = shown.to_string(float_format=lambda v: f"{v:.3f}")
    wga = table["worst_group_accuracy_mean"]
    headline = (
        f"worst-group test accuracy: ERM {wga['ERM']:.3f} -> curated last layer "
        f"{wga['curated']:.3f}"
        + (f" (oracle {wga['oracle']:.3f})" if "oracle" in wga.index else "")
    )
    lines.append(headline)
    lines.append(f"test split, {len(seeds)} seeds (mean, std):")
    lines.extend(text.splitlines())
    lines.append(f"({time.perf_counter() - t0:.1f} s)")
    return {
        "title": "Mid-range curation",
        "summary_lines": lines,
        "figures": [m.plot(), plot_comparison(table)],
        "result": m,
        "curation": cur,
        "curated_band": m_cur,
        "comparison": table,
    }


def _population_group_fraction(sess, m: MidrangeResult) -> dict[str, float]:
    groups = sess.groups(m.split)
    if groups is None:
        return {}
    y = sess.targets(m.split)
    pop = groups[y == m.class_index] if m.within == "class" else groups
    n_groups = max(len(m.group_names), int(groups.max()) + 1)
    frac = np.bincount(pop.numpy(), minlength=n_groups) / max(1, pop.numel())
    return {m._group_name(g): float(f) for g, f in enumerate(frac)}
