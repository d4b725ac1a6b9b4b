"""ConceptBrowser in headless Chromium: render, lasso and box selection reach Python as
indices, hover fetches the thumbnail of the point under the cursor, and (all the way
round) a lasso drawn in JupyterLab changes ``selected`` in the kernel."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from harness import Harness, canvas_paint, set_hidden, switch_theme, thumbnail, wait_until
from support import ensure_bundle

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def clusters_bundle():
    return ensure_bundle("clusters")


def blobs(n_per: int = 300, seed: int = 0):
    """Three well separated blobs of points with a cluster id each (and some unclustered)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [5.0, 8.0]])
    xy = np.concatenate([c + rng.normal(0, 0.8, size=(n_per, 2)) for c in centres])
    member = np.repeat(np.arange(3), n_per)
    member[::10] = -1
    return xy.astype(np.float32), member


def make_browser(requested: list | None = None):
    from repwidgets.widgets.clusters import ConceptBrowser

    xy, member = blobs()

    def source(keys):
        if requested is not None:
            requested.extend(int(k) for k in keys)
        return [thumbnail(int(k)) for k in keys]

    clusters = [
        {
            "id": j,
            "label": f"concept {j}",
            "description": f"mostly: <b>blob</b> {j}",
            "images": [int(i) for i in np.flatnonzero(member == j)[:8]],
            "fields": {"members": 270},
        }
        for j in range(3)
    ]
    return (
        ConceptBrowser(
            xy,
            {
                "concept": (member + 1, ["none", "c0", "c1", "c2"], True),
                "half": (xy[:, 0] > 5, ["left", "right"]),
            },
            membership=member,
            clusters=clusters,
            image_source=source,
            title="blobs",
        ),
        xy,
        member,
    )


def screen_of(page, i: int) -> tuple[float, float]:
    """Page coordinates of point i."""
    x, y = page.evaluate(f"() => document.querySelector('.rw-browser').__rw.screenOf({i})")
    box = page.locator(".rw-overlay").bounding_box()
    return box["x"] + x, box["y"] + y


def stable_centre(page, indices, tries: int = 20) -> np.ndarray:
    """Mean page position of points ``indices`` once the layout has stopped moving."""
    previous = None
    for _ in range(tries):
        centre = np.array([screen_of(page, i) for i in indices]).mean(axis=0)
        if previous is not None and np.allclose(centre, previous, atol=0.5):
            return centre
        previous = centre
        time.sleep(0.25)
    return previous


def ctrl_click(page, x: float, y: float) -> None:
    page.keyboard.down("Control")
    page.mouse.click(x, y)
    page.keyboard.up("Control")


def drag_path(page, points: list[tuple[float, float]], steps: int = 4) -> None:
    page.mouse.move(*points[0])
    page.mouse.down()
    for a, b in zip(points, points[1:] + points[:1]):
        for t in np.linspace(0, 1, steps + 1)[1:]:
            page.mouse.move(a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))
    page.mouse.up()


def test_render_lasso_box_and_hover(page, clusters_bundle, artifacts):
    requested: list[int] = []
    w, xy, member = make_browser(requested)
    Harness(page, w, clusters_bundle).open()
    assert page.evaluate("() => document.querySelector('.rw-browser').__rw.count()") == len(xy)
    assert page.locator(".rw-status").inner_text().startswith("900 points")
    # the canvas holds coloured pixels
    painted = page.evaluate(
        """() => { const c = document.querySelector('canvas.rw-points');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let k = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) k++; return k; }"""
    )
    assert painted > 900
    # data text is shown as text
    page.locator(".rw-legend-item").first.wait_for()

    # lasso around blob 1 (centre 10, 0) in screen space
    cx, cy = screen_of(page, 300 + 1)  # a point of blob 1
    centre = np.array([screen_of(page, i) for i in range(300, 600)]).mean(axis=0)
    r = 60
    poly = [
        (centre[0] + r * np.cos(t), centre[1] + r * np.sin(t))
        for t in np.linspace(0, 2 * np.pi, 24)[:-1]
    ]
    drag_path(page, poly)
    expected = {
        i for i in range(len(xy)) if np.hypot(*(np.array(screen_of(page, i)) - centre)) < r - 2
    }
    assert wait_until(lambda: len(w.selected) > 200, page)
    sel = set(w.selected)
    assert expected <= sel
    assert all(300 <= i < 600 for i in sel)  # nothing from the other blobs
    assert len(sel) > 200
    page.screenshot(path=str(artifacts / "clusters-lasso.png"))

    # box with shift adds blob 0's points inside the box
    page.click("button[data-mode='box']")
    assert wait_until(lambda: w.mode == "box", page)
    b0 = np.array([screen_of(page, i) for i in range(0, 300)])
    lo, hi = b0.min(axis=0) - 5, b0.max(axis=0) + 5
    page.keyboard.down("Shift")
    page.mouse.move(lo[0], lo[1])
    page.mouse.down()
    page.mouse.move((lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2)
    page.mouse.move(hi[0], hi[1])
    page.mouse.up()
    page.keyboard.up("Shift")
    assert wait_until(lambda: set(range(300)) <= set(w.selected), page)
    assert sel <= set(w.selected)

    # hover: the tooltip fetches and shows the thumbnail of the point under the cursor
    target = 777
    requested.clear()
    x, y = screen_of(page, target)
    page.mouse.move(x + 40, y + 40)
    page.mouse.move(x, y)
    page.wait_for_function(
        "() => { const t = document.querySelector('.rw-tip'); const i = t.querySelector('img');"
        " return !t.hidden && i.getAttribute('src') && i.complete && i.naturalWidth > 0; }",
        timeout=15_000,
    )
    hovered = int(page.eval_on_selector(".rw-tip", "t => t.dataset.key"))
    # the nearest point to the cursor is the target unless another one lies on top of it
    assert np.hypot(*(np.array(screen_of(page, hovered)) - np.array([x, y]))) < 1.5
    assert hovered in requested
    assert page.eval_on_selector(".rw-tip img", "i => i.dataset.key") == str(hovered)
    png = page.evaluate(
        """async () => { const i = document.querySelector('.rw-tip img');
        const b = await (await fetch(i.src)).arrayBuffer();
        return Array.from(new Uint8Array(b)); }"""
    )
    assert bytes(png) == thumbnail(hovered)

    # click a point: its cluster opens in the side panel, description as text
    page.mouse.move(10, 10)
    page.click("button[data-mode='lasso']")
    x, y = screen_of(page, 601)
    page.mouse.click(x, y)
    assert member[601] == 2
    assert wait_until(lambda: w.focus == 2, page), w.focus
    page.wait_for_selector(".rw-cluster:not([hidden]) .rw-desc")
    assert page.inner_text(".rw-cluster .rw-desc") == "mostly: <b>blob</b> 2"
    page.screenshot(path=str(artifacts / "clusters-panel.png"))

    # the click also selected that one point only (the lasso and box selection is gone);
    # ctrl-click adds a point and ctrl-click again removes it
    assert wait_until(lambda: len(w.selected) == 1, page), len(w.selected)
    first = w.selected[0]
    assert np.hypot(*(np.array(screen_of(page, first)) - np.array([x, y]))) < 1.5
    x2, y2 = screen_of(page, 5)
    ctrl_click(page, x2, y2)
    assert wait_until(lambda: len(w.selected) == 2, page), w.selected
    assert w.selected[0] == first
    ctrl_click(page, x2, y2)
    assert wait_until(lambda: w.selected == [first], page), w.selected

    assert page.errors == []


def test_python_changes_reach_the_page(page, clusters_bundle):
    w, xy, member = make_browser()
    harness = Harness(page, w, clusters_bundle).open()
    w.selected = [5, 6, 7]
    w.color_by = "half"
    harness.push("selected", "color_by", "codes")
    page.wait_for_function(
        "() => document.querySelector('.rw-status').textContent.includes('3 selected')"
    )
    names = page.eval_on_selector_all(".rw-legend-name", "es => es.map(e => e.textContent)")
    assert names == ["left", "right"]
    assert page.errors == []


def test_hidden_during_a_theme_change_redraws_when_shown(page, clusters_bundle):
    w, xy, member = make_browser()
    Harness(page, w, clusters_bundle).open()
    before = canvas_paint(page, "canvas.rw-points")
    assert before["painted"] > 900 and before["cssWidth"] > 300
    set_hidden(page, "#root", True)
    page.wait_for_timeout(100)
    switch_theme(page, dark=True)
    page.evaluate(
        "() => document.querySelector('.rw-browser').__rw.draw()"
    )  # a redraw while hidden
    page.wait_for_timeout(100)
    hidden = canvas_paint(page, "canvas.rw-points")
    # the canvases keep their size and picture while hidden (no 1 x 1 canvas)
    assert (hidden["width"], hidden["height"]) == (before["width"], before["height"])
    assert hidden["painted"] == before["painted"]
    # shown again, narrower: drawn at the new size, every point on screen
    page.evaluate("() => { document.getElementById('root').style.width = '760px'; }")
    set_hidden(page, "#root", False)
    page.wait_for_function(
        "(w) => { const c = document.querySelector('canvas.rw-points');"
        " return c.width > 100 && c.width < w; }",
        arg=before["width"],
    )
    after = canvas_paint(page, "canvas.rw-points")
    assert after["cssWidth"] > 300 and after["cssHeight"] > 300
    assert after["painted"] > 900
    box = page.locator(".rw-plot").bounding_box()
    for i in (0, 299, 450, 899):
        x, y = screen_of(page, i)
        assert (
            box["x"] <= x <= box["x"] + box["width"] and box["y"] <= y <= box["y"] + box["height"]
        )
    assert page.errors == []


def test_status_line_never_moves_the_plot(page, clusters_bundle):
    w, xy, member = make_browser()
    harness = Harness(page, w, clusters_bundle).open()
    # a page width at which a status of its natural width would not fit on the toolbar's
    # line once it grows, and would wrap to a line of its own
    page.evaluate("() => { document.getElementById('root').style.width = '560px'; }")
    page.wait_for_timeout(100)
    plot_top = page.locator(".rw-plot").bounding_box()["y"]
    status = page.locator(".rw-status")
    height = status.bounding_box()["height"]
    w.selected = list(range(len(xy)))
    harness.push("selected")
    page.wait_for_function("() => /selected/.test(document.querySelector('.rw-status').title)")
    assert status.get_attribute("title") == "900 points · 900 selected"
    assert status.bounding_box()["height"] == height
    assert page.locator(".rw-plot").bounding_box()["y"] == plot_top
    lines = page.evaluate(
        "() => { const s = document.querySelector('.rw-status');"
        " return Math.round(s.getBoundingClientRect().height / parseFloat(getComputedStyle(s).lineHeight)); }"
    )
    assert lines == 1
    assert page.errors == []


# ----------------------------------------------------------------------------- kernel
SETUP_CELL = """\
import sys
sys.path[:0] = [{root!r}, {here!r}, {tests!r}]
import numpy as np
from harness import thumbnail
from test_clusters import blobs
from repwidgets.widgets.clusters import ConceptBrowser
xy, member = blobs()
b = ConceptBrowser(xy, {{"concept": (member + 1, ["none", "c0", "c1", "c2"], True)}},
                   membership=member, image_source=lambda ks: [thumbnail(int(k)) for k in ks],
                   height=420)
b"""


def test_lasso_in_jupyterlab_reaches_the_kernel(chromium, clusters_bundle, tmp_path):
    import importlib.util

    import nbformat
    from support import ROOT, need
    from test_gallery_kernel import Server, kernel_eval, open_and_run

    need(importlib.util.find_spec("jupyterlab") is not None, "the Python package jupyterlab")
    here = str(ROOT / "tests" / "browser")
    root = tmp_path / "nb"
    root.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            SETUP_CELL.format(root=str(ROOT), here=here, tests=str(ROOT / "tests"))
        )
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, root / "browser.ipynb")
    server = Server("lab", root, tmp_path)
    page = chromium.new_page()
    try:
        server.wait_ready()
        open_and_run(page, server, "lab/tree/browser.ipynb", ".rw-browser canvas.rw-overlay")
        page.locator(".rw-browser").scroll_into_view_if_needed()
        # JupyterLab sizes the output area after the first render (the view refits then):
        # lasso once the plot has its final width, with a radius scaled to the blobs' spacing.
        page.wait_for_function(
            "() => document.querySelector('.rw-overlay').getBoundingClientRect().width > 300",
            timeout=60_000,
        )
        centre = stable_centre(page, range(0, 300))
        r = 0.3 * np.linalg.norm(stable_centre(page, range(300, 600)) - centre)
        poly = [
            (centre[0] + r * np.cos(t), centre[1] + r * np.sin(t))
            for t in np.linspace(0, 2 * np.pi, 20)[:-1]
        ]
        drag_path(page, poly)
        page.wait_for_function(
            "() => /selected/.test(document.querySelector('.rw-status').textContent)"
        )
        status = page.locator(".rw-status").inner_text()
        shown = int(status.split("·")[1].split("selected")[0].replace(",", ""))
        value: list = []
        deadline = time.time() + 30
        while time.time() < deadline:
            value = json.loads(kernel_eval(server, "import json; print(json.dumps(b.selected))"))
            if len(value) == shown:
                break
            time.sleep(0.5)
        # the kernel holds exactly what the page selected: the lasso around the first blob
        assert len(value) == shown > 100, (shown, value[:20])
        assert np.mean(np.array(value) < 300) > 0.9, value[:20]
    finally:
        page.close()
        server.stop()


POINTS_PAINTED = """() => { const c = document.querySelector('canvas.rw-points');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let k = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) k++;
  return { width: c.width, height: c.height, painted: k }; }"""
SCROLL_TO = """(top) => { const s = document.querySelector('.jp-WindowedPanel-outer');
  s.scrollTop = top ? 0 : s.scrollHeight; return true; }"""


def test_scrolled_away_in_jupyterlab_during_a_theme_change(chromium, clusters_bundle, tmp_path):
    """JupyterLab's full windowing takes cells scrolled out of view off the page: the
    plot keeps its picture meanwhile and is drawn again, at its size, once back."""
    import importlib.util

    import nbformat
    from support import ROOT, need
    from test_gallery_kernel import DARK_THEME, KERNEL_IDLE, RUN_ALL, Server

    need(importlib.util.find_spec("jupyterlab") is not None, "the Python package jupyterlab")
    root = tmp_path / "nb"
    root.mkdir()
    here = str(ROOT / "tests" / "browser")
    nb = nbformat.v4.new_notebook()
    setup = SETUP_CELL.format(root=str(ROOT), here=here, tests=str(ROOT / "tests"))
    filler = [nbformat.v4.new_code_cell(f"print({i})\n" * 30) for i in range(30)]
    nb.cells = [nbformat.v4.new_code_cell(setup), *filler]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, root / "away.ipynb")
    settings = tmp_path / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "full"}')
    server = Server("lab", root, tmp_path)
    page = chromium.new_page()
    try:
        server.wait_ready()
        page.goto(f"{server.url}/lab/tree/away.ipynb", timeout=120_000)
        page.wait_for_function(
            "() => window.jupyterapp && window.jupyterapp.started", timeout=120_000
        )
        page.wait_for_function("() => window.jupyterapp.started.then(() => true)", timeout=120_000)
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
        page.wait_for_function(KERNEL_IDLE, timeout=180_000)
        page.evaluate(RUN_ALL)
        page.wait_for_function(
            "() => document.querySelectorAll('.jp-InputArea-prompt').length > 0 &&"
            " [...document.querySelectorAll('.jp-InputArea-prompt')].some(p => /\\[31\\]/.test(p.textContent))",
            timeout=240_000,
        )
        page.wait_for_function(KERNEL_IDLE, timeout=120_000)
        page.evaluate(SCROLL_TO, True)
        page.wait_for_function(
            "() => { const c = document.querySelector('canvas.rw-points'); return c && c.width > 300; }",
            timeout=60_000,
        )
        page.wait_for_timeout(500)
        shown = page.evaluate(POINTS_PAINTED)
        assert shown["painted"] > 900

        page.evaluate(SCROLL_TO, False)
        page.wait_for_timeout(1000)
        page.evaluate(DARK_THEME)
        page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'")
        page.wait_for_timeout(1000)
        away = page.evaluate(POINTS_PAINTED)
        assert (away["width"], away["height"]) == (shown["width"], shown["height"])

        page.evaluate(SCROLL_TO, True)
        page.wait_for_function(
            "() => { const c = document.querySelector('canvas.rw-points');"
            " return c && c.isConnected && c.getBoundingClientRect().width > 300; }",
            timeout=30_000,
        )
        page.wait_for_timeout(500)
        back = page.evaluate(POINTS_PAINTED)
        assert back["width"] > 300 and back["height"] > 300
        assert back["painted"] > 900
    finally:
        page.close()
        server.stop()


def test_many_points_continuous_colouring_zoom_and_box(page, clusters_bundle):
    """300,000 points coloured by a score: the ramp legend, the ramp's ends on the canvas,
    and after a zoom a box selection that reaches Python equals a test of every point."""
    from repwidgets.widgets.clusters import ConceptBrowser, ContinuousColoring

    n = 300_000
    rng = np.random.default_rng(3)
    xy = rng.normal(0, 3, size=(n, 2)).astype(np.float32)
    score = xy[:, 0].astype(np.float64)
    score[::50] = np.nan
    w = ConceptBrowser(xy, [ContinuousColoring("score", score, vmin=-6.0, vmax=6.0)])
    Harness(page, w, clusters_bundle).open(timeout_ms=120_000)
    ends = page.eval_on_selector_all(".rw-ramp-ends span", "es => es.map(e => e.textContent)")
    assert ends == ["-6", "score", "6"]
    missing = page.inner_text(".rw-ramp-missing .rw-legend-count")
    assert int(missing) == int(np.isnan(score).sum())
    paint = canvas_paint(page, "canvas.rw-points")
    assert paint["painted"] > 20_000

    def pixel(i: int) -> list[int]:
        x, y = page.evaluate(f"() => document.querySelector('.rw-browser').__rw.screenOf({i})")
        return page.evaluate(
            "([x, y]) => { const c = document.querySelector('canvas.rw-points');"
            " const d = window.devicePixelRatio || 1;"
            " return Array.from(c.getContext('2d').getImageData(Math.round(x * d),"
            " Math.round(y * d), 1, 1).data); }",
            [x, y],
        )

    finite = np.flatnonzero(np.isfinite(score))
    left = pixel(int(finite[np.argmin(score[finite])]))  # viridis starts purple
    right = pixel(int(finite[np.argmax(score[finite])]))  # and ends yellow
    assert left[3] > 0 and right[3] > 0
    assert left[2] > left[1] and right[1] > right[2] and right[0] > left[0]

    # zoom in twice around the centre, then box-select a screen rectangle
    box = page.locator(".rw-overlay").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    fitted = page.evaluate("() => document.querySelector('.rw-browser').__rw.view().scale")
    page.mouse.move(cx, cy)
    page.mouse.wheel(0, -400)
    page.mouse.wheel(0, -400)
    page.wait_for_timeout(200)
    view = page.evaluate("() => document.querySelector('.rw-browser').__rw.view()")
    assert view["scale"] > 1.5 * fitted
    assert canvas_paint(page, "canvas.rw-points")["painted"] > 20_000
    page.click("button[data-mode='box']")
    assert wait_until(lambda: w.mode == "box", page)
    a = (round(cx - 120), round(cy - 80))
    b = (round(cx + 90), round(cy + 70))
    page.mouse.move(*a)
    page.mouse.down()
    page.mouse.move((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
    page.mouse.move(*b)
    page.mouse.up()
    assert wait_until(lambda: len(w.selected) > 100, page)

    def data(sx: float, sy: float) -> tuple[float, float]:
        lx, ly = sx - box["x"], sy - box["y"]
        return (
            (lx - box["width"] / 2) / view["scale"] + view["cx"],
            (box["height"] / 2 - ly) / view["scale"] + view["cy"],
        )

    (x0, y1), (x1, y0) = data(*a), data(*b)
    tol = 1.0 / view["scale"]  # a pixel of slack at the edges

    def inside(m: float) -> set[int]:
        ok = (
            (xy[:, 0] >= x0 + m)
            & (xy[:, 0] <= x1 - m)
            & (xy[:, 1] >= y0 + m)
            & (xy[:, 1] <= y1 - m)
        )
        return set(np.flatnonzero(ok).tolist())

    sel = set(w.selected)
    assert inside(tol) <= sel <= inside(-tol)
    assert w.selected == sorted(w.selected)
    assert page.errors == []
