"""The widgets in marimo: each renders inside a shadow root there, so its styles must
come with the widget (anywidget's ``_css``), not from the page's head.

A marimo app shows the four widgets, each wrapped in ``mo.ui.anywidget``; Chromium opens
``marimo run`` and the layout inside every shadow root is checked: styled toolbars, the
heatmap's colour bar as tall as the matrix, painted canvases, gallery cards in a grid.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from servers import MarimoServer
from support import ROOT, ensure_bundle, need

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
WIDGETS = ("gallery", "heatmap", "clusters", "curation")

APP = """\
import marimo

app = marimo.App(width="full")


@app.cell
def _():
    import sys

    sys.path[:0] = [{root!r}, {here!r}]
    import marimo as mo
    import numpy as np
    import torch
    from harness import make_cards, thumbnail

    from repwidgets.candidates import Candidates
    from repwidgets.widgets import ConceptBrowser, CurationSelector, DistanceHeatmap, NeuronGallery

    def images(keys):
        return [thumbnail(int(k)) for k in keys]

    rng = np.random.default_rng(0)
    return (Candidates, ConceptBrowser, CurationSelector, DistanceHeatmap, NeuronGallery,
            images, make_cards, mo, np, rng, torch)


@app.cell
def _(NeuronGallery, images, make_cards, mo):
    gallery = mo.ui.anywidget(NeuronGallery(make_cards(24, 4), image_source=images,
                                            title="gallery", height=420))
    gallery
    return


@app.cell
def _(DistanceHeatmap, images, mo, np, rng):
    X = rng.normal(size=(40, 5))
    D = np.linalg.norm(X[:, None] - X[None], axis=-1)
    heatmap = mo.ui.anywidget(DistanceHeatmap(D, [f"n{{i}}" for i in range(40)], thumbnails=images,
                                              title="heatmap", height=320))
    heatmap
    return


@app.cell
def _(ConceptBrowser, images, mo, np, rng):
    member = rng.integers(0, 3, size=300)
    xy = (rng.normal(size=(300, 2)) + member[:, None] * 4).astype(np.float32)
    browser = mo.ui.anywidget(ConceptBrowser(
        xy, {{"concept": (member + 1, ["none", "c0", "c1", "c2"], True)}},
        membership=member, image_source=images, height=360))
    browser
    return


@app.cell
def _(Candidates, CurationSelector, images, mo, torch):
    n = 30
    population = torch.linspace(-2.0, 2.0, 200)
    cand = Candidates(
        samples=torch.arange(n), scores=torch.linspace(-0.5, 0.5, n),
        labels=torch.zeros(n, dtype=torch.long), predictions=torch.zeros(n, dtype=torch.long),
        groups=torch.full((n,), -1), population=population, band=(0.25, 0.75),
        limits=(-0.5, 0.5), class_names=["a", "b"], split="test", title="curation", n_split=200)
    curation = mo.ui.anywidget(CurationSelector(cand, images=images, height=300))
    curation
    return
"""

#: JS: facts about each widget's layout, read inside the shadow roots marimo renders into.
LAYOUT = """() => {
  const roots = [];
  const walk = (node) => {
    for (const el of node.querySelectorAll('*')) if (el.shadowRoot) { roots.push(el.shadowRoot); walk(el.shadowRoot); }
  };
  walk(document);
  const find = (sel) => { for (const r of roots) { const el = r.querySelector(sel); if (el) return [el, r]; } return [null, null]; };
  const style = (el) => { if (!el) return null; const s = getComputedStyle(el);
    return { display: s.display, gap: s.columnGap, paddingTop: s.paddingTop, paddingLeft: s.paddingLeft,
             borderRadius: s.borderTopLeftRadius, height: el.getBoundingClientRect().height,
             width: el.getBoundingClientRect().width, gridCols: s.gridTemplateColumns }; };
  const painted = (c) => { if (!c || !c.width || !c.height) return 0;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; };
  const out = { shadowRoots: roots.length, inShadow: {} };
  for (const [name, sel] of [['gallery', '.rw-gallery'], ['heatmap', '.rw-heatmap'], ['clusters', '.rw-browser'], ['curation', '.rw-cur']]) {
    const [el] = find(sel);
    out.inShadow[name] = !!el && !document.querySelector(sel);
  }
  out.galleryBar = style(find('.rw-gallery .rw-toolbar')[0]);
  out.galleryButton = style(find('.rw-gallery .rw-toolbar button')[0]);
  out.heatmapBar = style(find('.rw-heatmap .rw-toolbar')[0]);
  out.heatmapButton = style(find('.rw-heatmap .rw-toolbar button')[0]);
  out.browserBar = style(find('.rw-browser .rw-toolbar')[0]);
  out.curationBar = style(find('.rw-cur-bar')[0]);
  out.colourBar = style(find('.rw-hm-legend canvas')[0]);
  out.matrix = style(find('canvas.rw-hm-matrix')[0]);
  out.matrixPainted = painted(find('canvas.rw-hm-matrix')[0]);
  out.pointsPainted = painted(find('canvas.rw-points')[0]);
  const cards = [];
  for (const r of roots) for (const c of r.querySelectorAll('.rw-card')) if (c.style.display !== 'none') cards.push(c);
  out.cards = cards.map((c) => { const b = c.getBoundingClientRect(); return [Math.round(b.left), Math.round(b.top)]; });
  out.cardStyle = style(cards[0]);
  out.thumbs = style(cards[0] && cards[0].querySelector('.rw-thumbs'));
  return out;
}"""


def marimo_command() -> list[str] | None:
    """How to start marimo: the venv's module, or None when it is not installed."""
    try:
        import marimo  # noqa: F401
    except ImportError:
        return None
    return [sys.executable, "-m", "marimo"]


@pytest.fixture(scope="module")
def marimo_app(tmp_path_factory):
    need(marimo_command() is not None, "the Python package marimo (pip install marimo)")
    for name in WIDGETS:
        ensure_bundle(name)
        need(
            (ROOT / "repwidgets" / "static" / f"{name}.css").is_file(),
            f"repwidgets/static/{name}.css (run `make js`)",
        )
    home = tmp_path_factory.mktemp("marimo")
    app = home / "widgets_app.py"
    app.write_text(APP.format(root=str(ROOT), here=str(HERE)))
    server = MarimoServer(app, home / "marimo.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_widgets_are_styled_inside_marimo_shadow_roots(page, marimo_app, artifacts):
    page.set_viewport_size({"width": 1300, "height": 900})
    page.goto(marimo_app.url, timeout=120_000)
    ready = """() => { let n = 0; const walk = (node) => { for (const el of node.querySelectorAll('*'))
      if (el.shadowRoot) { if (el.shadowRoot.querySelector('.rw-root')) n++; walk(el.shadowRoot); } };
      walk(document); return n >= 4; }"""
    try:
        page.wait_for_function(ready, timeout=180_000)
        # canvases draw on the next frame, thumbnails arrive from the kernel
        page.wait_for_timeout(1500)
        layout = page.evaluate(LAYOUT)
    finally:
        page.screenshot(path=str(artifacts / "marimo.png"), full_page=True)
    assert layout["inShadow"] == dict.fromkeys(WIDGETS, True), layout["inShadow"]

    # toolbars: flex rows with the gap and padding of our CSS, buttons with our border radius
    for bar in ("galleryBar", "heatmapBar", "browserBar"):
        st = layout[bar]
        assert st["display"] == "flex" and st["gap"] == "6px", (bar, st)
        assert st["paddingTop"] == "6px" and st["paddingLeft"] == "8px", (bar, st)
    assert layout["curationBar"]["display"] == "flex" and layout["curationBar"]["gap"] == "8px"
    for button in ("galleryButton", "heatmapButton"):
        assert layout[button]["borderRadius"] == "3px" and layout[button]["height"] == 24, layout[
            button
        ]

    # the heatmap's colour bar is as tall as the matrix (not a 1-px line), both painted
    bar, matrix = layout["colourBar"], layout["matrix"]
    assert bar["width"] >= 14 and bar["height"] > 100, bar
    assert abs(bar["height"] - matrix["height"]) <= 4, (bar, matrix)
    assert layout["matrixPainted"] > 1000 and layout["pointsPainted"] > 100, layout

    # gallery cards: bordered, in a grid of several columns and rows
    cards = layout["cards"]
    assert len(cards) >= 4, cards
    assert len({x for x, _ in cards}) >= 2 and len({y for _, y in cards}) >= 2, cards
    assert layout["cardStyle"]["borderRadius"] == "4px", layout["cardStyle"]
    assert layout["thumbs"]["display"] == "grid", layout["thumbs"]
    assert not page.errors, page.errors
