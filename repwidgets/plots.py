"""Small bokeh figures shared by the report and the engines' ``plot()`` methods.

Every function returns a bokeh model and shows nothing, so the caller decides
whether it goes into a notebook (``bokeh.io.show``) or an offline report.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence

import numpy as np
from bokeh.models import ColumnDataSource, HoverTool
from bokeh.palettes import Category10_10
from bokeh.plotting import figure

WIDTH, HEIGHT = 520, 300


def png_data_uri(data: bytes, mime: str = "image/png") -> str:
    """A ``data:`` URI for encoded image bytes (for tooltips and offline pages)."""
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def training_curves(history: Mapping[str, Sequence[float]], title: str = "Training"):
    """Lines of every per-epoch series in ``history`` (e.g. loss, accuracy) against the epoch."""
    fig = figure(title=title, width=WIDTH, height=HEIGHT, x_axis_label="epoch")
    series = {k: list(v) for k, v in history.items() if _is_series(v)}
    if not series:
        raise ValueError("history has no per-epoch series of numbers to plot.")
    for colour, (name, values) in zip(Category10_10, series.items()):
        epochs = list(range(1, len(values) + 1))
        fig.line(epochs, values, legend_label=name, color=colour, line_width=2)
        fig.scatter(epochs, values, color=colour, size=5)
    fig.legend.location = "center_right"
    return fig


def _is_series(values) -> bool:
    try:
        return len(values) > 0 and all(isinstance(v, (int, float)) for v in values)
    except TypeError:
        return False


def bars(
    names: Sequence[str],
    values: Sequence[float],
    title: str = "",
    y_label: str = "",
    y_range: tuple[float, float] | None = None,
):
    """A vertical bar chart of one value per name, with the value on hover."""
    names = [str(n) for n in names]
    source = ColumnDataSource({"name": names, "value": [float(v) for v in values]})
    fig = figure(
        x_range=names,
        title=title,
        width=max(WIDTH, 28 * len(names)),
        height=HEIGHT,
        y_axis_label=y_label,
        tools="hover,save",
        tooltips=[("", "@name"), (y_label or "value", "@value{0.000}")],
    )
    if y_range is not None:
        fig.y_range.start, fig.y_range.end = y_range
    fig.vbar(x="name", top="value", width=0.8, source=source, color=Category10_10[0])
    fig.xaxis.major_label_orientation = 0.9 if len(names) > 6 else 0
    return fig


def histogram(values, bins: int = 40, title: str = "", x_label: str = ""):
    """A histogram of ``values`` (any array-like of numbers; NaNs are dropped)."""
    array = np.asarray(values, dtype=float).ravel()
    array = array[np.isfinite(array)]
    counts, edges = np.histogram(array, bins=bins)
    fig = figure(
        title=title, width=WIDTH, height=HEIGHT, x_axis_label=x_label, y_axis_label="count"
    )
    fig.quad(top=counts, bottom=0, left=edges[:-1], right=edges[1:], fill_alpha=0.7)
    return fig


def heatmap(
    matrix,
    x_names: Sequence[str],
    y_names: Sequence[str],
    title: str = "",
    palette: str = "RdBu11",
    symmetric: bool = True,
):
    """A heatmap of ``matrix`` [len(y_names), len(x_names)] with the value on hover."""
    from bokeh.palettes import all_palettes
    from bokeh.transform import linear_cmap

    matrix = np.asarray(matrix, dtype=float)
    if matrix.shape != (len(y_names), len(x_names)):
        raise ValueError(
            f"matrix has shape {matrix.shape} but the names give {(len(y_names), len(x_names))}."
        )
    ys, xs = np.meshgrid(range(matrix.shape[0]), range(matrix.shape[1]), indexing="ij")
    source = ColumnDataSource(
        {
            "x": [str(x_names[i]) for i in xs.ravel()],
            "y": [str(y_names[i]) for i in ys.ravel()],
            "value": matrix.ravel(),
        }
    )
    finite = matrix[np.isfinite(matrix)]
    high = float(np.abs(finite).max()) if finite.size else 1.0
    low = -high if symmetric else float(finite.min()) if finite.size else 0.0
    name, size = palette[:-2], int(palette[-2:])
    colours = list(reversed(all_palettes[name][size]))
    fig = figure(
        title=title,
        x_range=[str(n) for n in x_names],
        y_range=list(reversed([str(n) for n in y_names])),
        width=max(WIDTH, 22 * len(x_names) + 120),
        height=max(HEIGHT, 22 * len(y_names) + 80),
        tools="hover,save",
        tooltips=[("", "@y / @x"), ("value", "@value{0.000}")],
    )
    fig.rect(
        "x",
        "y",
        1,
        1,
        source=source,
        fill_color=linear_cmap("value", colours, low, high),
        line_color=None,
    )
    fig.xaxis.major_label_orientation = 0.9
    return fig


def scatter_with_images(
    x,
    y,
    images: Sequence[bytes] | None = None,
    labels: Sequence[str] | None = None,
    colour=None,
    title: str = "",
):
    """A scatter plot whose hover shows each point's label and (optionally) its image."""
    n = len(x)
    data = {"x": list(map(float, x)), "y": list(map(float, y))}
    data["label"] = [str(v) for v in labels] if labels is not None else [""] * n
    tooltips = [("", "@label")]
    if images is not None:
        data["image"] = [png_data_uri(b) for b in images]
        tooltips = '<div><img src="@image" width="64" height="64"><div>@label</div></div>'
    data["colour"] = list(colour) if colour is not None else [Category10_10[0]] * n
    source = ColumnDataSource(data)
    fig = figure(title=title, width=WIDTH, height=WIDTH, tools="pan,wheel_zoom,box_zoom,reset,save")
    renderer = fig.scatter("x", "y", source=source, color="colour", size=7, alpha=0.8)
    fig.add_tools(HoverTool(renderers=[renderer], tooltips=tooltips))
    return fig
