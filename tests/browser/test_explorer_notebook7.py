"""The explorer in Notebook 7: the composed view renders, follows a neuron chosen in the
kernel, and its images arrive, with nothing installed beyond the package."""

from __future__ import annotations

import importlib.util
import json

import pytest
from harness import canvas_paint, wait_until
from servers import JupyterServer as Server
from support import ROOT, need
from test_gallery_kernel import kernel_eval, open_and_run, write_notebook

pytestmark = [pytest.mark.browser, pytest.mark.demo, pytest.mark.slow]

SETUP_CELL = f"""\
import sys
sys.path[:0] = [{str(ROOT)!r}]
import torch
torch.set_num_threads(1)
import repwidgets as rw

sess = rw.demo_session(seed=0, progress=False)
dora = rw.dora.analyze(sess, "features.conv4", n_signals=1, steps=8, signal_size=16,
                       embedding="mds", progress=False)
invert = rw.invert.explain(sess, "features.conv4", max_length=1, progress=False)
x = rw.explore(sess, "features.conv4", dora=dora, invert=invert, concepts=False,
               curation="marks.json")
x"""

TOP_IMAGES_LOADED = """() => {
  const imgs = [...document.querySelectorAll('.rw-explorer .rw-x-top img.rw-thumb')];
  return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
}"""


@pytest.fixture
def notebook7(tmp_path):
    need(importlib.util.find_spec("notebook") is not None, "the Python package notebook (7)")
    root = tmp_path / "notebooks"
    root.mkdir()
    write_notebook(root / "explorer.ipynb", (SETUP_CELL,))
    srv = Server("notebook", root, tmp_path)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def test_the_explorer_renders_and_follows_the_kernel_in_notebook_7(notebook7, chromium, artifacts):
    page = chromium.new_page()
    page.set_viewport_size({"width": 1500, "height": 1100})
    try:
        open_and_run(
            page,
            notebook7,
            "notebooks/explorer.ipynb",
            ".rw-explorer .rw-x-heatmap canvas",
            artifacts / "explorer-notebook7-failed.png",
        )
        assert wait_until(
            lambda: canvas_paint(page, ".rw-explorer .rw-x-heatmap canvas")["painted"]
        )
        unit, label = json.loads(
            kernel_eval(
                notebook7,
                "import json; u = int(x.outliers[0]); x.select_neuron(u); "
                "print(json.dumps([u, x.data.label(u)['formula']]))",
            )
        )
        page.wait_for_function(
            "(t) => { const f = document.querySelector('.rw-explorer .rw-x-formula');"
            " return !!f && f.innerText.includes(t); }",
            arg=label,
            timeout=30_000,
        )
        page.wait_for_function(TOP_IMAGES_LOADED, timeout=60_000)
        assert json.loads(kernel_eval(notebook7, "print(json.dumps(x.selected_neurons))")) == [unit]
        page.screenshot(path=str(artifacts / "explorer-notebook7.png"))
    finally:
        page.close()
