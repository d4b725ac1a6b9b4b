"""Plots draw in JupyterLab with the network blocked: a real kernel makes the same kinds
of plots as the tutorials' plot cells (from small results on a tiny untrained model),
shown both as a cell's value and with ``bokeh.io.show``, and every plot's canvas must
hold a drawing."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
from support import ROOT, need

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SETUP = f"""\
import sys
sys.path.insert(0, {str(ROOT)!r})
import pandas as pd
import torch
from bokeh.io import show

import repwidgets as rw
from repwidgets.models import SmallCNN

torch.manual_seed(0)
data = rw.datasets.shapes(n_train=200, n_val=100, n_test=120, image_size=32, seed=0)
sess = rw.Session(SmallCNN(4, widths=(8, 16, 16, 16)).eval(), data, device="cpu", progress=False)"""

# (tutorial, cell): each makes a result the way its tutorial does, then the plot the
# tutorial shows, half of them as the cell's value and half through bokeh's show().
PLOT_CELLS = [
    (
        "01_dora",
        'd = rw.dora.analyze(sess, "features.conv4", n_signals=1, steps=4, signal_size=32,\n'
        '                    embedding="mds", progress=False)\n'
        "d.plot()",
    ),
    (
        "02_invert",
        'i = rw.invert.explain(sess, "pool", max_length=2, progress=False)\nshow(i.plot())',
    ),
    (
        "03_concepts",
        'c = rw.concepts.discover(sess, "features.relu4", n_components=4, top_t=20,\n'
        '                         embedding="pca", progress=False)\n'
        "c.plot()",
    ),
    ("03_concepts maps", "show(rw.concepts.plot_concept_maps(sess, c, 0))"),
    (
        "04_midrange",
        'm = rw.midrange.select(sess, 0, band=(0.0, 0.5), within="class")\nm.plot()',
    ),
    (
        "04_midrange comparison",
        "table = pd.DataFrame(\n"
        '    {"accuracy_mean": [0.7, 0.8], "accuracy_std": [0.02, 0.03],\n'
        '     "worst_group_accuracy_mean": [0.1, 0.6], "worst_group_accuracy_std": [0.05, 0.04]},\n'
        '    index=["ERM", "curated"])\n'
        "rw.midrange.plot_comparison(table)",
    ),
    (
        "05_attribution probes",
        'p = rw.attribution.probe_layers(sess, "watermark", n_models=1, progress=False)\n'
        "show(p.plot())",
    ),
    (
        "05_attribution",
        'a = rw.attribution.concept_attribution(sess, "watermark", n_models=1, proj_dim=64,\n'
        "                                       n_targets=8, progress=False)\n"
        "a.plot()",
    ),
    (
        "01_dora figures of its own",
        "from bokeh.layouts import column\n"
        "from bokeh.plotting import figure\n"
        "f = figure(width=300, height=150)\n"
        "f.line([0, 1, 2], [1, 0, 1])\n"
        "rw.plots.displayable(column(f))",
    ),
    ("05_attribution display()", "display(p.plot())\nlen(p.to_frame())"),
]

# Per plot container: how many canvases it holds and how many hold a drawing (pixels of
# more than one colour). Bokeh draws inside shadow roots, so they are searched too.
PLOTS_DRAWN = """() => {
  const deep = (root, out) => {
    for (const e of root.querySelectorAll('*')) {
      if (e.tagName === 'CANVAS') out.push(e);
      if (e.shadowRoot) deep(e.shadowRoot, out);
    }
    return out;
  };
  const drawn = (c) => {
    if (c.width < 8 || c.height < 8) return false;
    const ctx = c.getContext('2d');
    if (!ctx) return false;
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    for (let i = 4; i < d.length; i += 4 * 13) {
      if (d[i] !== d[0] || d[i + 1] !== d[1] || d[i + 2] !== d[2] || d[i + 3] !== d[3]) return true;
    }
    return false;
  };
  return [...document.querySelectorAll('.jp-OutputArea [data-root-id]')].map((root) => {
    const canvases = deep(root, []);
    return {canvases: canvases.length, drawn: canvases.filter(drawn).length,
            height: root.getBoundingClientRect().height, text: (root.innerText || '').slice(0, 200)};
  });
}"""


def keep_every_cell_in_the_page(settings_dir) -> None:
    """JupyterLab setting: no windowing, so that every output stays in the page."""
    folder = settings_dir / "@jupyterlab" / "notebook-extension"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))


@pytest.fixture
def lab(tmp_path):
    from test_gallery_kernel import Server, write_notebook

    need(importlib.util.find_spec("jupyterlab") is not None, "the Python package jupyterlab")
    root = tmp_path / "notebooks"
    root.mkdir()
    write_notebook(
        root / "plots.ipynb", (SETUP, *(f"# like {name}\n{code}" for name, code in PLOT_CELLS))
    )
    keep_every_cell_in_the_page(tmp_path / "settings")
    server = Server("lab", root, tmp_path)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_tutorial_plots_draw_offline_in_jupyterlab(lab, chromium, artifacts):
    from test_gallery_kernel import open_and_run

    page = chromium.new_page()
    page.set_viewport_size({"width": 1400, "height": 1000})
    blocked: list[str] = []

    def block(route):
        blocked.append(route.request.url)
        route.abort()

    page.route(re.compile(r"^https?://(?!127\.0\.0\.1)"), block)
    try:
        open_and_run(
            page,
            lab,
            "lab/tree/plots.ipynb",
            ".jp-OutputArea [data-root-id]",
            artifacts / "plots-offline-failed.png",
        )
        expected = len(PLOT_CELLS)
        try:
            page.wait_for_function(
                f"() => {{ const p = ({PLOTS_DRAWN})(); "
                f"return p.length === {expected} && p.every(x => x.drawn > 0); }}",
                timeout=120_000,
            )
        except Exception:
            page.screenshot(path=str(artifacts / "plots-offline-failed.png"), full_page=True)
        plots = page.evaluate(PLOTS_DRAWN)
        page.screenshot(path=str(artifacts / "plots-offline.png"))
        errors = page.eval_on_selector_all(
            ".jp-OutputArea-output[data-mime-type*='stderr'], "
            ".jp-OutputArea-output[data-mime-type*='error']",
            "els => els.map(e => e.innerText.slice(0, 300))",
        )
        assert not errors, errors
        assert len(plots) == expected, (plots, [name for name, _ in PLOT_CELLS])
        for (name, _), plot in zip(PLOT_CELLS, plots):
            assert plot["drawn"] > 0, f"{name}: nothing drawn ({plot})"
            assert plot["height"] > 50, f"{name}: the output has no height ({plot})"
            assert "BokehJS" not in plot["text"], f"{name}: {plot['text']}"
        assert not [u for u in blocked if "bokeh" in u], blocked
    finally:
        page.close()
