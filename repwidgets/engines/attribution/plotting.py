"""The score histogram that the attribution results' plots share (bokeh)."""

from __future__ import annotations

import numpy as np

__all__ = ["COLORS", "histogram"]

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def histogram(groups: dict[str, np.ndarray], title: str, bins: int = 50):
    """Overlaid histograms of score groups (name -> [n] values) on shared bins."""
    from bokeh.plotting import figure

    values = [np.asarray(v, dtype=float) for v in groups.values() if len(v)]
    allv = np.concatenate(values) if values else np.zeros(1)
    lo, hi = float(np.min(allv)), float(np.max(allv))
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    fig = figure(height=280, width=520, title=title, toolbar_location="above")
    for (name, v), color in zip(groups.items(), COLORS):
        if not len(v):
            continue
        counts, _ = np.histogram(np.asarray(v, dtype=float), bins=edges)
        fig.quad(
            top=counts,
            bottom=0,
            left=edges[:-1],
            right=edges[1:],
            fill_color=color,
            fill_alpha=0.45,
            line_color=color,
            legend_label=str(name),
        )
    fig.xaxis.axis_label = "score"
    fig.yaxis.axis_label = "training samples"
    fig.legend.location = "top_right"
    return fig
