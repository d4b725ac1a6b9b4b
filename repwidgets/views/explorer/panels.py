"""The explorer's panels for one neuron and for one sample (ipywidgets around the galleries).

The neuron panel shows the INVERT label (formula, AUC, coverage, p-value, each with a
one-line explanation on hover), the s-AMS, the top-activating and mid-range galleries
with the band slider and the enriched concepts, the concept vectors the neuron loads
on, and the training samples that taught it (with the button that computes them). The
sample panel shows one sample: its image, class, prediction, concepts, the neurons
that fire most on it and its attribution score, under the breadcrumb and Back button.
Text from data is always set as a Label's value or shown in a pandas table, never as
HTML.

Example:
    >>> p = NeuronPanel(); p.show_label(data.neuron(3))   # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Any

import ipywidgets

from repwidgets.views.explorer.data import NeuronData
from repwidgets.views.explorer.galleries import show_table, slot

__all__ = ["EXPLAIN", "NeuronPanel", "SamplePanel"]

#: The one-line explanations shown on hover.
EXPLAIN = {
    "formula": "INVERT's label: the concept formula whose samples this neuron ranks highest",
    "auc": "AUC: chance that a sample matching the formula activates the neuron more than "
    "one that does not (0.5 = no better than chance, 1 = perfect)",
    "coverage": "Coverage: the fraction of samples that match the formula",
    "p_value": "p-value of the Mann-Whitney U test that the neuron ranks the formula's "
    "samples above the rest by chance (small = significant)",
    "sams": "s-AMS: synthetic images that maximally activate the neuron (DORA)",
    "band": "Mid-range band: quantiles of the neuron's activation whose samples are shown",
}


def _number(value: float | None, fmt: str) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return format(value, fmt)


class NeuronPanel(ipywidgets.VBox):
    """The panel of the selected neuron (class ``rw-x-neuron``).

    Attributes:
        title, formula, auc, coverage, p_value: Labels (``formula``: ``rw-x-formula``).
        sams: the s-AMS image (``rw-x-sams``).
        top, midrange, taught: boxes holding the galleries (``rw-x-top``,
            ``rw-x-midrange``, ``rw-x-taught``).
        band: the mid-range ``FloatRangeSlider`` (``rw-x-band``).
        enriched, loadings: Outputs with tables (``rw-x-enriched``, ``rw-x-loadings``).
        attribute_button: computes the training samples that taught the neuron
            (``rw-x-attribute``).
    """

    def __init__(self, band: tuple[float, float] = (0.5, 0.9)) -> None:
        self.title = ipywidgets.Label("Select a neuron in the map or the heatmap.")
        self.formula = ipywidgets.Label("", tooltip=EXPLAIN["formula"])
        self.formula.add_class("rw-x-formula")
        self.auc = ipywidgets.Label("", tooltip=EXPLAIN["auc"])
        self.coverage = ipywidgets.Label("", tooltip=EXPLAIN["coverage"])
        self.p_value = ipywidgets.Label("", tooltip=EXPLAIN["p_value"])
        self.sams = ipywidgets.Image(format="png", width=128, height=128)
        self.sams.add_class("rw-x-sams")
        self.sams.layout.display = "none"
        self.top = slot("rw-x-top")
        self.midrange = slot("rw-x-midrange")
        self.taught = slot("rw-x-taught")
        self.band = ipywidgets.FloatRangeSlider(
            value=band,
            min=0.0,
            max=1.0,
            step=0.01,
            description="band",
            continuous_update=False,
            readout_format=".2f",
            tooltip=EXPLAIN["band"],
        )
        self.band.add_class("rw-x-band")
        self.enriched = ipywidgets.Output()
        self.enriched.add_class("rw-x-enriched")
        self.loadings = ipywidgets.Output()
        self.loadings.add_class("rw-x-loadings")
        self.attribute_button = ipywidgets.Button(
            description="Training samples that taught it",
            icon="search",
            tooltip="Per-neuron TRAK: which training samples raised this neuron's activation "
            "(runs in the background; cached per neuron)",
            layout=ipywidgets.Layout(width="auto"),
        )
        self.attribute_button.add_class("rw-x-attribute")
        #: holds the progress and status while the attribution runs (see Explorer)
        self.job_slot = ipywidgets.HBox([])
        label_row = ipywidgets.HBox([self.auc, self.coverage, self.p_value])
        label_row.layout.grid_gap = "16px"
        head = ipywidgets.VBox([self.title, self.formula, label_row])
        tabs = ipywidgets.Tab(
            [
                self.top,
                ipywidgets.VBox([self.band, self.midrange, self.enriched]),
                self.loadings,
                ipywidgets.VBox(
                    [ipywidgets.HBox([self.attribute_button, self.job_slot]), self.taught]
                ),
            ]
        )
        for i, name in enumerate(["top", "mid-range", "concept vectors", "taught by"]):
            tabs.set_title(i, name)
        self.tabs = tabs
        super().__init__([ipywidgets.HBox([head, self.sams]), tabs])
        self.add_class("rw-x-neuron")
        self.unit: int | None = None

    def show_label(self, nd: NeuronData) -> None:
        """Fill the title, formula, AUC, coverage, p-value, s-AMS and tables of ``nd``."""
        self.unit = nd.unit
        self.title.value = f"Neuron #{nd.unit}"
        if nd.formula is None:
            self.formula.value = "no INVERT label (INVERT was left out)"
        else:
            self.formula.value = nd.formula
        self.auc.value = f"AUC {_number(nd.auc, '.3f')}"
        self.coverage.value = f"coverage {_number(nd.fraction, '.1%')}"
        tiny = nd.p_value is not None and nd.p_value == 0.0
        self.p_value.value = "p < 1e-300" if tiny else f"p {_number(nd.p_value, '.2g')}"
        if nd.sams is not None:
            self.sams.value = nd.sams
            self.sams.layout.display = None
        else:
            self.sams.layout.display = "none"
        self.band.value = nd.band
        show_table(self.enriched, _top_rows(nd.enriched, 8), "no concepts to compare")
        show_table(
            self.loadings,
            _top_rows(nd.loadings, 8),
            "no concept vectors (concept discovery was left out)",
        )


def _top_rows(frame: Any, k: int) -> Any:
    return None if frame is None else frame.head(k)


class SamplePanel(ipywidgets.VBox):
    """The panel of the opened sample (class ``rw-x-sample``), with the trail and Back.

    Attributes:
        trail: the breadcrumb Label (``rw-x-trail``): the last few steps, "…" before.
        hint: the one-line hint shown until a sample is opened (``rw-x-sample-hint``).
        back_button: one step back (``rw-x-back``).
        image: the sample's picture; facts: Labels of class, prediction, concepts and
            attribution score; strongest: Output with the neurons firing most on it.
    """

    def __init__(self) -> None:
        self.trail = ipywidgets.Label("")
        self.trail.add_class("rw-x-trail")
        self.back_button = ipywidgets.Button(
            description="Back", icon="arrow-left", disabled=True, tooltip="One step back"
        )
        self.back_button.add_class("rw-x-back")
        self.image = ipywidgets.Image(format="png", width=128, height=128)
        self.heading = ipywidgets.Label("Click any image to open its sample.")
        self.klass = ipywidgets.Label("")
        self.prediction = ipywidgets.Label("")
        self.concepts = ipywidgets.Label("")
        self.score = ipywidgets.Label(
            "", tooltip="Its TRAK score for the current neuron: how much it raised the activation"
        )
        self.strongest = ipywidgets.Output()
        facts = ipywidgets.VBox(
            [self.heading, self.klass, self.prediction, self.concepts, self.score]
        )
        self.body = ipywidgets.HBox([self.image, facts, self.strongest])
        self.body.layout.display = "none"
        #: one line in place of the empty body until a sample is opened
        self.hint = ipywidgets.Label(
            "Click any image (top-activating, mid-range or taught samples) to open its sample."
        )
        self.hint.add_class("rw-x-sample-hint")
        # the trail takes the room beside Back and never runs off the edge
        self.trail.layout = ipywidgets.Layout(flex="1 1 auto", min_width="0", overflow="hidden")
        bar = ipywidgets.HBox([self.back_button, self.trail])
        bar.layout.width = "100%"
        super().__init__([bar, self.hint, self.body])
        self.add_class("rw-x-sample")
        self.index: int | None = None

    def show(self, facts: dict, image: bytes, strongest: Any, score: float | None) -> None:
        """Show one sample: ``facts`` from :meth:`ExplorerData.sample_facts`."""
        self.index = int(facts["sample"])
        self.heading.value = f"Sample #{facts['sample']}"
        self.klass.value = f"class: {facts['class']}"
        self.prediction.value = f"prediction: {facts['prediction']}"
        self.concepts.value = "concepts: " + (", ".join(facts["concepts"]) or "none")
        self.score.value = "" if score is None else f"attribution score: {score:.4g}"
        self.image.value = image
        show_table(self.strongest, strongest)
        self.body.layout.display = None
        self.hint.layout.display = "none"

    def hide(self) -> None:
        """Show no sample."""
        self.index = None
        self.body.layout.display = "none"
        self.hint.layout.display = None
