"""The explorer's neuron map: a ConceptBrowser of the layer's neurons beside DORA's heatmap.

The map's points are the neurons (DORA's EA map, or INVERT's per-concept AUC profiles
embedded when DORA has not run); the heatmap shows the distances between them; the two
selections are linked both ways (map point p is neuron ``ids[p]``). Colourings: INVERT
AUC and DORA's outlier score (LOF by default) on a continuous ramp, dead / alive, and one
per concept that appears in a formula. The search box selects the neurons whose formula
contains the text typed as a positive literal (see :func:`formula_matches`).

Example:
    >>> panel = NeuronMap(data)            # doctest: +SKIP
    >>> panel.search("watermark")          # neuron ids whose formula names it  # doctest: +SKIP
"""

from __future__ import annotations

import math
import re
from typing import Any

import ipywidgets
import numpy as np

from repwidgets.views.explorer.data import ExplorerData
from repwidgets.widgets.clusters import Coloring, ConceptBrowser, ContinuousColoring
from repwidgets.widgets.heatmap import DistanceHeatmap
from repwidgets.widgets.link import link

__all__ = ["NeuronMap", "formula_matches"]


#: A formula text that ends in a NOT (and opening brackets): what follows is negated.
_ENDS_IN_NOT = re.compile(r"(?:^|[^\w])not[\s(]*$")


def _negated(before: str) -> bool:
    """Whether what follows the formula text ``before`` is negated: right after a NOT,
    or inside a bracket opened right after a NOT and not closed yet."""
    if _ENDS_IN_NOT.search(before):
        return True
    opened: list[bool] = []  # per open bracket: was it opened right after a NOT?
    for i, ch in enumerate(before):
        if ch == "(":
            opened.append(_ENDS_IN_NOT.search(before[:i]) is not None)
        elif ch == ")" and opened:
            opened.pop()
    return any(opened)


def formula_matches(formulas: list[str], text: str) -> list[int]:
    """Positions of the formulas that contain ``text`` as a positive literal.

    How it matches: the query and each formula are lower-cased and their runs of spaces
    made one; a formula matches where the query occurs in it as a substring that is
    not negated, i.e. neither right after a ``NOT`` nor inside ``NOT (...)``. So
    "watermark" finds "watermark AND star" but not "star AND NOT watermark" (a neuron
    that fires on all but the watermark); a query that itself starts with "not"
    ("NOT watermark") matches as plain text. Operators are part of the text:
    "star AND" finds the formulas where star is ANDed with something.

    Example:
        >>> formula_matches(["star AND red", "watermark", "NOT watermark", "circle"], "STAR and")
        [0]
        >>> formula_matches(["star AND red", "watermark", "NOT watermark", "circle"], "watermark")
        [1]
        >>> formula_matches(["star AND red", "watermark", "NOT watermark", "circle"], "not watermark")
        [2]
    """
    query = " ".join(str(text).lower().split())
    if not query:
        return []
    negative = query == "not" or query.startswith(("not ", "not("))
    out = []
    for p, formula in enumerate(formulas):
        f = " ".join(str(formula).lower().split())
        start = f.find(query)
        while start >= 0:
            if negative or not _negated(f[:start]):
                out.append(p)
                break
            start = f.find(query, start + 1)
    return out


def _colorings(data: ExplorerData) -> list[Coloring]:
    cols: list[Coloring] = []
    if data.invert is not None:
        auc = np.full(len(data.ids), np.nan)
        for p, unit in enumerate(data.ids):
            label = data.label(unit)
            if label["auc"] is not None:
                auc[p] = label["auc"]
        cols.append(ContinuousColoring("INVERT AUC (grey: no label)", auc))
    if data.dora is not None:
        cols.append(
            ContinuousColoring(
                f"{data.outlier_score_label} (grey: dead)", data.outlier_score, ramp="magma"
            )
        )
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
    for p in range(len(data.ids)):
        # the heatmap shows the id beside the label: the label does not repeat it
        parts = []
        if data.dead[p]:
            parts.append("dead")
        elif data.outlier[p]:
            parts.append("outlier")
        if math.isfinite(data.outlier_score[p]):
            parts.append(f"{data.outlier_score_name} {data.outlier_score[p]:.2f}")
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
