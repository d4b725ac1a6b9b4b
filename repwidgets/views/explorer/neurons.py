"""The explorer's neuron map: a ConceptBrowser of the layer's neurons beside DORA's heatmap.

The map's points are the neurons (DORA's EA map, or INVERT's per-concept AUC profiles
embedded when DORA has not run); the heatmap shows the distances between them; the two
selections are linked both ways (map point p is neuron ``ids[p]``). Colourings: INVERT
AUC and LOF score in bins, dead / alive, and one per concept that appears in a formula.
The search box selects the neurons whose formula contains the text typed.

Example:
    >>> panel = NeuronMap(data)            # doctest: +SKIP
    >>> panel.search("watermark")          # neuron ids whose formula names it  # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Any

import ipywidgets
import numpy as np

from repwidgets.views.explorer.data import ExplorerData
from repwidgets.widgets.clusters import Coloring, ConceptBrowser
from repwidgets.widgets.heatmap import DistanceHeatmap
from repwidgets.widgets.link import link

__all__ = ["AUC_BINS", "LOF_BINS", "NeuronMap", "binned", "formula_matches"]

#: Bin edges of the AUC and LOF colourings.
AUC_BINS = (0.6, 0.7, 0.8, 0.9)
LOF_BINS = (1.2, 1.5, 2.0)


def binned(values: np.ndarray, edges: tuple[float, ...], unit: str) -> tuple[np.ndarray, list]:
    """Codes (0 = no value, 1.. = bins between ``edges``) and the bins' names."""
    v = np.asarray(values, dtype=np.float64)
    codes = np.where(np.isfinite(v), np.digitize(np.nan_to_num(v), edges) + 1, 0)
    bounds = [-math.inf, *edges, math.inf]
    names = ["none"]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if lo == -math.inf:
            names.append(f"{unit} < {hi:g}")
        elif hi == math.inf:
            names.append(f"{unit} ≥ {lo:g}")
        else:
            names.append(f"{unit} {lo:g}–{hi:g}")
    return codes.astype(np.int64), names


def formula_matches(formulas: list[str], text: str) -> list[int]:
    """Positions of the formulas that contain ``text`` (case and spacing ignored).

    Example:
        >>> formula_matches(["star AND red", "watermark", "circle"], "STAR and")
        [0]
    """
    query = " ".join(str(text).lower().split())
    if not query:
        return []
    return [p for p, f in enumerate(formulas) if query in " ".join(f.lower().split())]


def _colorings(data: ExplorerData) -> list[Coloring]:
    cols = []
    if data.invert is not None:
        auc = np.full(len(data.ids), np.nan)
        for p, unit in enumerate(data.ids):
            label = data.label(unit)
            if label["auc"] is not None:
                auc[p] = label["auc"]
        codes, names = binned(auc, AUC_BINS, "AUC")
        cols.append(Coloring("INVERT AUC", codes, names, none=True))
    if data.dora is not None:
        codes, names = binned(data.lof, LOF_BINS, "LOF")
        names[0] = "dead"
        cols.append(Coloring("LOF score", codes, names, none=True))
    cols.append(Coloring("dead / alive", data.dead.astype(np.uint8), ["alive", "dead"]))
    concepts: dict[str, None] = {}
    for unit in data.ids:
        concepts.update(dict.fromkeys(data.formula_concepts(unit)))
    for name in concepts:
        has = [name in data.formula_concepts(u) for u in data.ids]
        cols.append(Coloring(f"formula has {name}", np.asarray(has, np.uint8), ["no", name]))
    return cols


def _labels(data: ExplorerData) -> list[str]:
    out = []
    for p, unit in enumerate(data.ids):
        parts = [f"#{unit}"]
        if data.dead[p]:
            parts.append("dead")
        elif data.outlier[p]:
            parts.append("outlier")
        if math.isfinite(data.lof[p]):
            parts.append(f"LOF {data.lof[p]:.2f}")
        if data.formulas[p]:
            parts.append(data.formulas[p])
        out.append(" · ".join(parts))
    return out


class NeuronMap(ipywidgets.VBox):
    """The neuron map, the heatmap and the search box, selections linked.

    Attributes:
        browser: the :class:`ConceptBrowser` of neurons (class ``rw-x-map``).
        heatmap: the :class:`DistanceHeatmap` (class ``rw-x-heatmap``); its ``selected``
            holds neuron ids and is the panel's selection.
        search_box: the formula search (class ``rw-x-search``).
    """

    def __init__(self, data: ExplorerData, image_source: Any = None) -> None:
        self.data = data
        ids = data.ids
        self.browser = ConceptBrowser(
            data.xy,
            _colorings(data),
            image_source=image_source,
            title=f"{data.layer} · {len(ids)} neurons"
            + (" (DORA map)" if data.dora is not None else " (INVERT AUC profiles)"),
            height=380,
            point_size=7,
        )
        self.browser.add_class("rw-x-map")
        neuron_source = None
        if image_source is not None:

            def neuron_source(keys: list) -> list[bytes]:
                return image_source([data.position[int(k)] for k in keys])

        self.heatmap = DistanceHeatmap(
            data.distances,
            _labels(data),
            ids=ids,
            thumbnails=neuron_source,
            value_name="EA distance" if data.dora is not None else "AUC-profile distance",
            title="distances between neurons",
            height=380,
        )
        self.heatmap.add_class("rw-x-heatmap")
        self.link = link(self.browser, self.heatmap, a_to_b=dict(enumerate(ids)), initial="none")
        self.search_box = ipywidgets.Text(
            placeholder='search formulas: "watermark", "star AND"',
            description="search",
            continuous_update=False,
        )
        self.search_box.add_class("rw-x-search")
        self.search_box.observe(lambda ch: self.search(ch["new"]), names="value")
        self.found = ipywidgets.Label("")
        row = ipywidgets.HBox([self.browser, self.heatmap])
        self.browser.layout.width = "50%"
        self.heatmap.layout.width = "50%"
        super().__init__([ipywidgets.HBox([self.search_box, self.found]), row])

    @property
    def selected(self) -> list[int]:
        """The selected neuron ids."""
        return [int(i) for i in self.heatmap.selected]

    @selected.setter
    def selected(self, units: list[int]) -> None:
        self.heatmap.selected = [int(u) for u in units]

    def search(self, text: str) -> list[int]:
        """Select the neurons whose formula contains ``text``; returns their ids."""
        if self.search_box.value != text:
            self.search_box.value = text  # the observer comes back here once
            return self.selected if text else []
        found = [self.data.ids[p] for p in formula_matches(self.data.formulas, text)]
        if text:
            self.found.value = f"{len(found)} neurons match {text!r}"
            self.selected = found
        else:
            self.found.value = ""
        return found
