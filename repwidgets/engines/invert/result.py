"""The result of INVERT: one formula per neuron, its AUC, fraction and significance."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from repwidgets.results import Result, notebook_plot

from .formulas import formula_mask

__all__ = ["InvertResult", "concat_results", "plot_results"]


@dataclass
class InvertResult(Result):
    """Per-neuron INVERT explanations of one layer.

    Fields:
        formulas: one dict per neuron: ``{"text": str, "length": int, "clauses": [
            {"op": None | "AND" | "OR", "concept": str, "index": int, "negated": bool}, ...]}``
            - the formula folds left: ``((c1 op2 c2) op3 c3) ...``.
        auc: float64 [N], AUROC of the activations for the formula's mask (in
            ``mode="negative"`` the search minimises it, so values are near 0).
        fraction: float64 [N], share of samples in the formula's mask.
        p_value, log10_p: float64 [N], two-sided Mann-Whitney U test (normal
            approximation, tie-corrected); ``log10_p`` stays finite where ``p`` underflows.
        neurons: int64 [N], the neurons' indices in the layer.
        concept_names: the K concept names.
        layer, split, pool, neuron_axis, mode, params: how it was computed
            (``neuron_axis`` None: the session's layout of the layer).
        beams: with ``return_beam=True``, per neuron the final beam (best first), each
            entry a formula dict plus ``auc``, ``fraction``, ``p_value``, ``log10_p``.
        top_indices: int64 [N, k], the k samples with the highest activation (lowest in
            negative mode) of each neuron, best first, for the gallery's images.
        top_values: float32 [N, k], their activations.
        timings: seconds spent in ranks, products and selection, and the products' flops.
    """

    formulas: list
    auc: torch.Tensor
    fraction: torch.Tensor
    p_value: torch.Tensor
    log10_p: torch.Tensor
    neurons: torch.Tensor
    concept_names: list
    layer: str | None = None
    split: str | None = None
    pool: str | None = None
    neuron_axis: int | None = None
    mode: str = "positive"
    beams: list | None = None
    top_indices: torch.Tensor | None = None
    top_values: torch.Tensor | None = None
    timings: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ tables
    @property
    def differentiability(self) -> torch.Tensor:
        """``|2 (AUC - 0.5)|`` per neuron: 0 for chance, 1 for a perfect detector."""
        return (2.0 * (self.auc.double() - 0.5)).abs()

    def to_frame(self):
        """One row per neuron: neuron, formula, length, auc, differentiability, fraction,
        p_value, log10_p (plus the layer when known)."""
        import pandas as pd

        frame = pd.DataFrame(
            {
                "neuron": self.neurons.cpu().numpy().astype(np.int64),
                "formula": [f["text"] for f in self.formulas],
                "length": [int(f["length"]) for f in self.formulas],
                "auc": self.auc.cpu().double().numpy(),
                "differentiability": self.differentiability.cpu().numpy(),
                "fraction": self.fraction.cpu().double().numpy(),
                "p_value": self.p_value.cpu().double().numpy(),
                "log10_p": self.log10_p.cpu().double().numpy(),
            }
        )
        if self.layer is not None:
            frame.insert(0, "layer", self.layer)
        return frame

    def beam_frame(self):
        """The final beams (``return_beam=True``) as one row per (neuron, rank)."""
        import pandas as pd

        if self.beams is None:
            raise ValueError("This result has no beams: run explain(..., return_beam=True).")
        rows = []
        for neuron, beam in zip(self.neurons.tolist(), self.beams):
            for rank, entry in enumerate(beam):
                rows.append(
                    {
                        "neuron": neuron,
                        "rank": rank,
                        "formula": entry["text"],
                        "length": entry["length"],
                        "auc": entry["auc"],
                        "differentiability": abs(2 * (entry["auc"] - 0.5)),
                        "fraction": entry["fraction"],
                        "p_value": entry["p_value"],
                        "log10_p": entry["log10_p"],
                    }
                )
        return pd.DataFrame(rows)

    def concept_counts(self) -> dict[str, int]:
        """How many neurons' formulas mention each concept (negated or not), most first."""
        counts: dict[str, int] = {}
        for f in self.formulas:
            for name in {c["concept"] for c in f["clauses"]}:
                counts[name] = counts.get(name, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def masks(self, concepts: torch.Tensor) -> torch.Tensor:
        """The best formulas' masks, bool [n, N], evaluated on ``concepts`` [n, K]."""
        return torch.stack([formula_mask(f, concepts) for f in self.formulas], dim=1)

    def activations(self, split: str | None = None) -> torch.Tensor:
        """The explained neurons' activations [n, N] on ``split`` (default: the result's),
        float32 on the CPU, from the session the result came from."""
        sess = self._session
        if sess is None or self.layer is None:
            raise ValueError(
                "This result has no session (it was loaded or computed from tensors): "
                "run rw.invert.explain(sess, layer) to read activations."
            )
        acts = sess.activations(
            self.layer,
            split=split or self.split or "test",
            pool=self.pool or "mean",
            neuron_axis=self.neuron_axis,
        )
        return acts.detach().float().cpu()[:, self.neurons]

    def top_samples(self, j: int, k: int = 8, split: str | None = None) -> torch.Tensor:
        """The ``k`` samples on which neuron ``self.neurons[j]`` is most active (least in
        negative mode), best first. Uses ``top_indices`` when it covers the request, else
        the session's activations."""
        same_split = split is None or split == (self.split or "test")
        if self.top_indices is not None and same_split and k <= self.top_indices.shape[1]:
            return self.top_indices[j, :k]
        acts = self.activations(split)[:, j]
        k = min(int(k), acts.shape[0])
        return torch.topk(acts if self.mode == "positive" else -acts, k).indices

    # ------------------------------------------------------------------ display
    def plot(self, *others: InvertResult):
        """Bokeh layout: AUC distribution (one histogram per layer when ``others`` are
        given) and how often each concept appears in the formulas."""
        return plot_results([self, *others])


def concat_results(parts: Sequence[InvertResult]) -> InvertResult:
    """One result from results of the same layer on disjoint neuron subsets, in order.

    The per-neuron fields (formulas, AUCs, p-values, neurons, beams, top samples) are
    concatenated; every neuron's explanation depends only on its own activations, so
    explaining blocks of neurons separately (on several processes) and concatenating
    gives the result of explaining them together. Timings are summed.

    Args:
        parts: results of :func:`~repwidgets.engines.invert.explain_activations` with
            the same concepts, settings and layer, each on its own neurons.

    Returns:
        :class:`InvertResult` over the neurons of all parts, in the order given.

    Raises:
        ValueError: no parts, or parts that differ in concepts, mode, layer or settings.

    Example:
        >>> a = explain_activations(acts, concepts, neurons=[0, 1])   # doctest: +SKIP
        >>> b = explain_activations(acts, concepts, neurons=[2, 3])   # doctest: +SKIP
        >>> concat_results([a, b]).neurons.tolist()                    # doctest: +SKIP
        [0, 1, 2, 3]
    """
    parts = list(parts)
    if not parts:
        raise ValueError("concat_results needs at least one InvertResult.")
    first = parts[0]
    for r in parts[1:]:
        same = (r.concept_names, r.mode, r.layer) == (first.concept_names, first.mode, first.layer)
        if not same or _settings(r.params) != _settings(first.params):
            raise ValueError(
                "concat_results joins results of one layer with the same concepts and "
                "settings; these parts differ (concept names, mode, layer or params)."
            )

    def cat(name: str) -> torch.Tensor | None:
        values = [getattr(r, name) for r in parts]
        return None if any(v is None for v in values) else torch.cat(values)

    timings: dict = {}
    for r in parts:
        for key, value in r.timings.items():
            if isinstance(value, (int, float)):
                timings[key] = timings.get(key, 0) + value
    beams = None if any(r.beams is None for r in parts) else [b for r in parts for b in r.beams]
    return InvertResult(
        formulas=[f for r in parts for f in r.formulas],
        auc=cat("auc"),
        fraction=cat("fraction"),
        p_value=cat("p_value"),
        log10_p=cat("log10_p"),
        neurons=cat("neurons"),
        concept_names=list(first.concept_names),
        layer=first.layer,
        split=first.split,
        pool=first.pool,
        neuron_axis=first.neuron_axis,
        mode=first.mode,
        params=dict(first.params),
        beams=beams,
        top_indices=cat("top_indices"),
        top_values=cat("top_values"),
        timings=timings,
    )


def _settings(params: dict) -> str:
    """Settings compared as their JSON text (a saved result's tuples come back as lists)."""
    return json.dumps(params, sort_keys=True, default=str)


@notebook_plot
def plot_results(results: Sequence[InvertResult], top_concepts: int = 25):
    """AUC distribution per result (layer) and concept frequency among the formulas."""
    from bokeh.layouts import row
    from bokeh.models import ColumnDataSource
    from bokeh.palettes import Category10_10
    from bokeh.plotting import figure

    if not results:
        raise ValueError("Give at least one InvertResult to plot.")
    fig = figure(
        title="INVERT: AUC of each neuron's best formula",
        width=520,
        height=320,
        x_axis_label="AUC",
        y_axis_label="neurons",
        tools="pan,wheel_zoom,box_zoom,reset,save",
    )
    edges = np.linspace(0.0, 1.0, 41)
    for i, r in enumerate(results):
        values = r.auc.cpu().double().numpy()
        counts, _ = np.histogram(values[np.isfinite(values)], bins=edges)
        label = r.layer or f"result {i}"
        fig.quad(
            top=counts,
            bottom=0,
            left=edges[:-1],
            right=edges[1:],
            fill_color=Category10_10[i % 10],
            line_color=Category10_10[i % 10],
            fill_alpha=0.45,
            legend_label=f"{label} (n={len(values)})",
        )
    fig.legend.location = "top_left"
    counts: dict[str, int] = {}
    for r in results:
        for name, c in r.concept_counts().items():
            counts[name] = counts.get(name, 0) + c
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top_concepts]
    names = [k for k, _ in items]
    source = ColumnDataSource({"concept": names, "neurons": [v for _, v in items]})
    bars = figure(
        x_range=names,
        title="Concepts in the formulas",
        width=max(420, 26 * len(names)),
        height=320,
        y_axis_label="neurons whose formula uses it",
        tools="hover,save",
        tooltips=[("concept", "@concept"), ("neurons", "@neurons")],
    )
    bars.vbar(x="concept", top="neurons", width=0.8, source=source, color=Category10_10[0])
    bars.xaxis.major_label_orientation = 0.9 if len(names) > 6 else 0
    return row(fig, bars)
