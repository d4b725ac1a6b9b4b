"""Bokeh figures of the mid-range engine: the band, the comparison, the C search.

Each function takes a result (or its table) and returns a bokeh model; results'
``plot()`` methods call them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from repwidgets.results import notebook_plot

if TYPE_CHECKING:  # pragma: no cover
    from repwidgets.engines.midrange.retraining import RetrainResult
    from repwidgets.engines.midrange.selection import MidrangeResult

__all__ = ["band_figure", "plot_comparison", "retrain_figure"]


def band_figure(m: MidrangeResult):
    """Histogram of the population's scores (band and top extreme shaded) and the
    concepts that differ most between band and top (when the data has concepts)."""
    from bokeh.layouts import row
    from bokeh.models import ColumnDataSource, Span
    from bokeh.plotting import figure

    values = m.population_values.double().numpy()
    values = values[np.isfinite(values)]
    counts, edges = np.histogram(values, bins=40) if values.size else ([], [0, 1])
    centres = (np.asarray(edges[:-1]) + np.asarray(edges[1:])) / 2
    lo, hi = m.limits
    region = np.where(
        (centres >= lo) & (centres <= hi),
        "band",
        np.where(centres >= m.top_limit, "top", "other"),
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
    who = f"class {m.class_name}" if m.within == "class" else "all samples"
    fig = figure(
        title=f"{m.score} of neuron {m.class_name!s} ({who}, {m.split})",
        width=520,
        height=300,
        x_axis_label=m.score,
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
            Span(location=float(x), dimension="height", line_dash="dashed", line_color="#d62728")
        )
    fig.legend.location = "top_left"
    if not m.concept_names or len(m) == 0 or len(m.top_indices) == 0:
        return fig
    assoc = m.associations().head(12)
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
def plot_comparison(table: Any, title: str = "Last-layer retraining"):
    """Bars of accuracy and worst-group accuracy per method with the spread over seeds.

    ``table``: a :class:`~repwidgets.engines.midrange.comparison.ComparisonResult` or its
    ``to_frame()`` (columns ``accuracy_mean``, ``accuracy_std``,
    ``worst_group_accuracy_mean``, ``worst_group_accuracy_std``; one row per method).
    """
    if not isinstance(table, pd.DataFrame):
        table = table.to_frame()
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


def retrain_figure(r: RetrainResult):
    """Validation accuracy and worst-group accuracy for every C tried (the chosen C marked)."""
    from bokeh.models import ColumnDataSource, Span
    from bokeh.plotting import figure

    frame = r.to_frame()
    source = ColumnDataSource(
        {
            "C": frame["C"].to_numpy(dtype=float),
            "acc": frame["accuracy"].to_numpy(dtype=float),
            "wga": frame["worst_group_accuracy"].to_numpy(dtype=float),
        }
    )
    fig = figure(
        title=f"Last layer, {r.strategy}: validation scores per C",
        x_axis_type="log",
        width=520,
        height=300,
        x_axis_label="C (inverse regularisation)",
        y_axis_label="accuracy",
        y_range=(0, 1.05),
        tools="hover,save",
        tooltips=[("C", "@C"), ("accuracy", "@acc{0.000}"), ("worst group", "@wga{0.000}")],
    )
    for column, colour, legend in (
        ("acc", "#1f77b4", "accuracy"),
        ("wga", "#d62728", "worst-group accuracy"),
    ):
        fig.line("C", column, source=source, color=colour, legend_label=legend)
        fig.scatter("C", column, source=source, color=colour, size=7, legend_label=legend)
    chosen: Any = r.C
    if chosen is not None:
        fig.add_layout(
            Span(location=float(chosen), dimension="height", line_dash="dashed", line_color="#555")
        )
    fig.legend.location = "bottom_right"
    return fig
