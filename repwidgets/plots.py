"""Small bokeh figures shared by the report and the engines' ``plot()`` methods, and
their display in a notebook.

Every function returns a bokeh model and shows nothing, so the caller decides
whether it goes into a notebook or an offline report. In a notebook, a model passed
through :func:`displayable` (every result's ``plot()`` is) draws itself when it is a
cell's value, and ``bokeh.io.show`` works too: BokehJS is loaded once per kernel from
the installed bokeh package (inline), never from a CDN, so plots draw offline.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence

import numpy as np
from bokeh.models import ColumnDataSource, HoverTool
from bokeh.palettes import Category10_10
from bokeh.plotting import figure

WIDTH, HEIGHT = 520, 300

_state = {"bokehjs_loaded": False}

#: Shown in a plot's place when the page has no BokehJS (e.g. a notebook reopened
#: without running its cells again).
MISSING_BOKEHJS = (
    "This plot needs BokehJS, which this page has not loaded: run "
    "repwidgets.plots.use_notebook(force=True), then this cell again."
)


def in_notebook() -> bool:
    """True inside a Jupyter kernel (an IPython shell with a kernel behind it)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def use_notebook(force: bool = False) -> bool:
    """Send bokeh's output to this notebook, loading BokehJS inline (no network needed).

    Runs once per kernel (again with ``force=True``, e.g. after reloading the page);
    outside a notebook it does nothing. Returns whether the notebook is set up.
    """
    if not in_notebook():
        return False
    if force or not _state["bokehjs_loaded"]:
        from bokeh.io import output_notebook
        from bokeh.resources import INLINE

        output_notebook(INLINE, hide_banner=True)
        _route_show_through_bundle()
        _state["bokehjs_loaded"] = True
    return True


def _route_show_through_bundle() -> None:
    """Make ``bokeh.io.show`` in this notebook publish :func:`notebook_bundle`: one output
    with the plot's size that draws once BokehJS is there (``notebook_handle=True``, for
    ``push_notebook``, keeps bokeh's own output)."""
    import bokeh.io.notebook as bokeh_notebook

    bokeh_show_doc = bokeh_notebook.show_doc

    def show_doc(obj, state, notebook_handle=None):
        if notebook_handle:
            return bokeh_show_doc(obj, state, notebook_handle)
        if obj not in state.document.roots:
            state.document.add_root(obj)
        bokeh_notebook.publish_display_data(notebook_bundle(obj))
        return None

    bokeh_notebook.install_notebook_hook(
        "jupyter", bokeh_notebook.load_notebook, show_doc, bokeh_notebook.show_app, overwrite=True
    )


def displayable(model):
    """``model`` (a bokeh figure or layout), made to draw itself as a notebook cell's value.

    It stays the same bokeh model, for ``bokeh.io.show``, ``bokeh.io.save`` and reports.
    In a notebook this also loads BokehJS (inline, once), so that ``show`` works offline.
    """
    from bokeh.models import UIElement

    if not isinstance(model, UIElement):
        return model

    def _repr_mimebundle_(include=None, exclude=None):
        return notebook_bundle(model)

    model._repr_mimebundle_ = _repr_mimebundle_
    use_notebook()
    return model


def notebook_bundle(model) -> dict[str, str]:
    """The notebook representation of a bokeh model: its element and the script that
    draws it once BokehJS is in the page (or says that BokehJS is missing)."""
    from bokeh.embed.notebook import notebook_content

    use_notebook()
    script, div, _ = notebook_content(model)
    # a block, not bokeh's "display: contents", so that the output has the plot's size
    div = div.replace('style="display: contents;"', 'style="display: block;"', 1)
    match = re.search(r'\sid="([^"]+)"', div)
    element_id = match.group(1) if match else ""
    return {
        "text/html": f'{div}<script type="text/javascript">'
        f"{_script_text(_draw_when_ready(script, element_id))}</script>",
        "text/plain": describe(model),
    }


def _draw_when_ready(script: str, element_id: str, wait_ms: int = 30_000) -> str:
    """Run bokeh's embedding ``script`` once its element is in the page and BokehJS loaded."""
    return (
        "(function () {\n"
        f"  var id = {json.dumps(element_id)}, left = {wait_ms // 50};\n"
        "  function draw() {\n"
        "    var el = document.getElementById(id);\n"
        "    if (el && window.Bokeh !== undefined) {\n"
        f"{script}\n"
        "      return;\n"
        "    }\n"
        "    if (--left > 0) { setTimeout(draw, 50); return; }\n"
        f"    if (el) {{ el.style.display = 'block'; el.textContent = {json.dumps(MISSING_BOKEHJS)}; }}\n"
        "  }\n"
        "  draw();\n"
        "})();"
    )


def _script_text(code: str) -> str:
    """JavaScript made safe inside an HTML <script> element (data cannot close it)."""
    return code.replace("</", "<\\/").replace("<!--", "<\\!--")


def describe(model) -> str:
    """A one-line text form of a bokeh model, for places that cannot draw it."""
    title = getattr(getattr(model, "title", None), "text", None)
    kind = type(model).__name__
    return f"<bokeh {kind}: {title}>" if title else f"<bokeh {kind}>"


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
