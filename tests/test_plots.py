"""A result's plot in a notebook: a bokeh model that draws itself as a cell's value,
with BokehJS loaded inline (never from a CDN), and that ``show``/``save`` still take."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
import torch
from bokeh.models import LayoutDOM
from bokeh.plotting import figure
from IPython.core.interactiveshell import InteractiveShell

import repwidgets as rw
from repwidgets import plots
from repwidgets.results import Result


@dataclasses.dataclass
class LineResult(Result):
    title: str = "a line"

    def to_frame(self):
        return pd.DataFrame({"x": [0, 1, 2], "y": [0, 1, 4]})

    def plot(self):
        fig = figure(title=self.title)
        fig.line([0, 1, 2], [0, 1, 4])
        return fig


@pytest.fixture
def notebook(monkeypatch):
    """A pretend kernel: what bokeh publishes to the notebook is collected, not sent."""
    import bokeh.io.notebook
    from bokeh.io.state import curstate

    published: list[dict] = []
    monkeypatch.setattr(plots, "in_notebook", lambda: True)
    monkeypatch.setitem(plots._state, "bokehjs_loaded", False)
    monkeypatch.setattr(bokeh.io.notebook, "_HOOKS", dict(bokeh.io.notebook._HOOKS))
    monkeypatch.setattr(
        bokeh.io.notebook, "publish_display_data", lambda data, **_: published.append(data)
    )
    yield published
    curstate().reset()


def cell_value(obj) -> dict:
    """What a notebook shows for ``obj`` as a cell's value (IPython's display formatter)."""
    data, _ = InteractiveShell.instance().display_formatter.format(obj)
    return data


def test_plot_is_a_bokeh_model_that_draws_as_a_cell_value(notebook):
    fig = LineResult().plot()
    assert isinstance(fig, LayoutDOM)
    shown = cell_value(fig)
    page = shown["text/html"]
    assert f'data-root-id="{fig.id}"' in page
    assert "embed_items_notebook" in page, "the script that draws the figure is missing"
    assert "figure(" not in shown["text/plain"] and "a line" in shown["text/plain"]
    assert "id&nbsp;=" not in page, "the bokeh repr is shown instead of the figure"


def test_bokehjs_is_loaded_inline_once_per_kernel(notebook):
    LineResult().plot()
    LineResult().plot()
    loads = [d for d in notebook if "application/javascript" in d]
    assert len(loads) == 1, f"BokehJS published {len(loads)} times"
    js = loads[0]["application/javascript"]
    assert len(js) > 500_000, "BokehJS itself is not in the page"
    assert "cdn.bokeh.org" not in js and "cdn.pydata.org" not in js


def test_show_still_works_in_the_notebook(notebook):
    from bokeh.io import show

    fig = LineResult().plot()
    notebook.clear()
    show(fig)
    shown = [
        d["text/html"] for d in notebook if f'data-root-id="{fig.id}"' in d.get("text/html", "")
    ]
    assert len(shown) == 1, notebook
    assert "display: block" in shown[0], "the output should take the plot's size"


def test_save_and_report_still_take_the_plot(tmp_path, notebook):
    from bokeh.io import save
    from bokeh.resources import INLINE

    fig = LineResult().plot()
    path = save(fig, filename=tmp_path / "fig.html", resources=INLINE, title="fig")
    text = Path(path).read_text()
    assert "cdn.bokeh.org" not in text and fig.id in text
    page = LineResult().export_html(tmp_path / "r.html").read_text()
    assert "Bokeh" in page and "cdn.bokeh.org" not in page


def test_outside_a_notebook_nothing_is_published(monkeypatch):
    import bokeh.io.notebook

    published = []
    monkeypatch.setattr(
        bokeh.io.notebook, "publish_display_data", lambda data, **_: published.append(data)
    )
    fig = LineResult().plot()
    assert not published
    assert "text/html" in cell_value(fig), "the figure should still draw if displayed"


def test_text_from_data_cannot_close_the_script(notebook):
    fig = LineResult(title="</script><script>alert(1)</script>").plot()
    page = cell_value(fig)["text/html"]
    assert page.count("</script>") == 1 and page.endswith("</script>")
    assert r"<\/script><script>alert(1)<\/script>" in page  # stays text inside a JS string


def test_module_level_plots_and_layouts_draw_too(notebook):
    table = pd.DataFrame(
        {
            "accuracy_mean": [0.7, 0.8],
            "accuracy_std": [0.02, 0.03],
            "worst_group_accuracy_mean": [0.1, 0.6],
            "worst_group_accuracy_std": [0.05, 0.04],
        },
        index=["ERM", "curated"],
    )
    comparison = rw.midrange.plot_comparison(table)
    assert f'data-root-id="{comparison.id}"' in cell_value(comparison)["text/html"]

    g = torch.Generator().manual_seed(0)
    concepts = torch.rand(300, 3, generator=g) < 0.4
    acts = concepts[:, :1].float() + 0.1 * torch.randn(300, 2, generator=g)
    r = rw.invert.explain_activations(acts, concepts, ["a", "b", "c"], progress=False)
    layout = r.plot()  # a row of two figures
    shown = cell_value(layout)
    assert f'data-root-id="{layout.id}"' in shown["text/html"]
    assert not shown["text/plain"].startswith("Row(")
