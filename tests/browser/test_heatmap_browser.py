"""DistanceHeatmap in headless Chromium: the canvas is painted with the clustered blocks,
hovering a cell shows the two neurons, their images and the matrix value, a click and a
shift-drag brush change ``selected`` in Python, and labels from data stay text."""

from __future__ import annotations

import numpy as np
import pytest
from harness import Harness, canvas_paint, set_hidden, switch_theme, thumbnail, wait_until
from support import ensure_bundle

pytestmark = pytest.mark.browser

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def heatmap_bundle():
    return ensure_bundle("heatmap")


def blocks(sizes=(12, 9, 15), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A distance matrix with planted blocks, rows shuffled; returns (D, block of each row)."""
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(len(sizes)), sizes)
    rng.shuffle(group)
    centres = rng.normal(size=(len(sizes), 6)) * 6
    X = centres[group] + rng.normal(size=(len(group), 6)) * 0.5
    D = np.linalg.norm(X[:, None] - X[None], axis=-1)
    return D, group


def make_heatmap(requested: list | None = None, **kwargs):
    from repwidgets.widgets.heatmap import DistanceHeatmap

    D, group = blocks()
    k = len(D)
    ids = [100 + 3 * i for i in range(k)]  # original ids differ from row positions
    labels = [f"block {g}" for g in group]
    labels[5] = HOSTILE

    def source(keys):
        if requested is not None:
            requested.extend(int(x) for x in keys)
        return [thumbnail(int(x)) for x in keys]

    hm = DistanceHeatmap(D, labels, thumbnails=source, ids=ids, title="planted blocks", **kwargs)
    return hm, D, group, ids


def page_xy(page, a: int, b: int) -> tuple[float, float]:
    """Page coordinates of the centre of matrix entry (a, b) (row positions, not ids)."""
    xy = page.evaluate(f"() => document.querySelector('.rw-heatmap').__rw.screenOf({a}, {b})")
    assert xy is not None, f"cell ({a}, {b}) is off screen"
    box = page.locator("canvas.rw-hm-matrix").bounding_box()
    return box["x"] + xy[0], box["y"] + xy[1]


def click_with(page, x: float, y: float, key: str) -> None:
    """Click at (x, y) holding ``key`` (Control, Shift, ...)."""
    page.keyboard.down(key)
    page.mouse.click(x, y)
    page.keyboard.up(key)


def painted_colours(page) -> int:
    return page.evaluate(
        """() => { const c = document.querySelector('canvas.rw-hm-matrix');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const seen = new Set(); let opaque = 0;
        for (let i = 0; i < d.length; i += 4) {
          if (d[i + 3] === 255) { opaque++; seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]); }
        }
        return [opaque, seen.size, c.width * c.height]; }"""
    )


def test_render_hover_click_brush(page, heatmap_bundle, artifacts):
    requested: list[int] = []
    hm, D, group, ids = make_heatmap(requested)
    Harness(page, hm, heatmap_bundle).open()
    k = len(D)
    assert page.evaluate("() => document.querySelector('.rw-heatmap').__rw.k()") == k
    opaque, colours, total = painted_colours(page)
    assert opaque == total  # every pixel of the matrix canvas is painted
    assert colours > 10  # a colour scale, not one flat colour
    assert page.locator(".rw-status").inner_text().startswith(f"{k} × {k}")

    # the clustered order keeps each planted block contiguous on screen
    rows = np.argsort([page_xy(page, p, p)[1] for p in range(k)])
    g = group[rows]
    assert int((g[1:] != g[:-1]).sum()) == len(set(group)) - 1

    # hover a known off-diagonal cell: the tooltip names both neurons and shows D[a, b]
    a, b = 5, 17
    x, y = page_xy(page, a, b)
    page.mouse.move(x + 30, y + 30)
    page.mouse.move(x, y)
    page.wait_for_selector(".rw-hm-tip:not([hidden])")
    tip = page.eval_on_selector(".rw-hm-tip", "t => ({...t.dataset, text: t.innerText})")
    assert int(tip["i"]) == ids[a] and int(tip["j"]) == ids[b]
    assert float(tip["value"]) == pytest.approx(D[a, b], rel=1e-6)
    assert f"#{ids[a]}" in tip["text"] and f"#{ids[b]}" in tip["text"]
    # the hostile label is shown as text and creates no element
    assert HOSTILE in tip["text"]
    assert page.locator(".rw-heatmap img[src='x']").count() == 0
    assert page.eval_on_selector(".rw-hm-tip .rw-hm-label", "e => e.children.length") == 0
    # both neurons' images are fetched lazily and shown
    page.wait_for_function(
        "() => [...document.querySelectorAll('.rw-hm-imgs img')].every("
        "i => i.getAttribute('src') && i.complete && i.naturalWidth > 0)",
        timeout=15_000,
    )
    assert {ids[a], ids[b]} <= set(requested)
    shown = page.eval_on_selector_all(".rw-hm-imgs img", "es => es.map(e => e.dataset.key)")
    assert shown == [str(ids[a]), str(ids[b])]
    png = page.evaluate(
        """async () => { const i = document.querySelector('.rw-hm-imgs img');
        return Array.from(new Uint8Array(await (await fetch(i.src)).arrayBuffer())); }"""
    )
    assert bytes(png) == thumbnail(ids[a])
    page.screenshot(path=str(artifacts / "heatmap.png"))

    # click selects the row's neuron
    x, y = page_xy(page, 9, 2)
    page.mouse.click(x, y)
    assert wait_until(lambda: hm.selected != [], page)
    assert hm.selected == [ids[9]]

    # another plain click selects only that one; ctrl-click toggles one; shift-click
    # selects the rows from the anchor (the last row clicked without shift), in display order
    x4, y4 = page_xy(page, 4, 2)
    page.mouse.click(x4, y4)
    assert wait_until(lambda: hm.selected == [ids[4]], page), hm.selected
    click_with(page, x, y, "Control")
    assert wait_until(lambda: hm.selected == [ids[4], ids[9]], page), hm.selected
    click_with(page, x4, y4, "Control")
    assert wait_until(lambda: hm.selected == [ids[9]], page), hm.selected
    click_with(page, x, y, "Shift")
    display = list(hm.order_positions)
    a, b = display.index(4), display.index(9)
    step = 1 if a <= b else -1
    expected_range = [ids[display[r]] for r in range(a, b + step, step)]
    assert wait_until(lambda: hm.selected == expected_range, page), hm.selected
    page.mouse.click(x, y)
    assert wait_until(lambda: hm.selected == [ids[9]], page), hm.selected

    # shift-drag brush over display rows of one block selects exactly that block
    order = hm.order_positions
    blk = group[order[0]]
    last = max(r for r in range(k) if group[order[r]] == blk and all(group[order[: r + 1]] == blk))
    _, y0 = page_xy(page, order[0], order[0])
    _, y1 = page_xy(page, order[last], order[last])
    x_mid, _ = page_xy(page, order[k // 2], order[k // 2])
    page.keyboard.down("Shift")
    page.mouse.move(x_mid, y0)
    page.mouse.down()
    page.mouse.move(x_mid, (y0 + y1) / 2)
    page.mouse.move(x_mid, y1)
    page.mouse.up()
    page.keyboard.up("Shift")
    expected = [ids[p] for p in order[: last + 1]]
    assert wait_until(lambda: hm.selected != [ids[9]], page)
    assert hm.selected == expected
    assert set(group[[ids.index(i) for i in hm.selected]]) == {blk}
    assert page.locator(".rw-status").inner_text().endswith(f"{len(expected)} selected")
    assert page.errors == []


def test_zoom_pan_and_python_changes(page, heatmap_bundle):
    hm, D, group, ids = make_heatmap()
    harness = Harness(page, hm, heatmap_bundle).open()
    before = page.evaluate("() => document.querySelector('.rw-heatmap').__rw.view()")
    x, y = page_xy(page, 3, 3)
    page.mouse.move(x, y)
    page.mouse.wheel(0, -600)
    page.wait_for_function(
        f"() => document.querySelector('.rw-heatmap').__rw.view().s > {before['s'] * 1.5}"
    )
    # the cell under the cursor stays under the cursor while zooming
    x2, y2 = page_xy(page, 3, 3)
    s = page.evaluate("() => document.querySelector('.rw-heatmap').__rw.view().s")
    assert abs(x2 - x) < s and abs(y2 - y) < s
    # hover still reports the right value after zooming
    page.mouse.move(x2, y2)
    page.wait_for_selector(".rw-hm-tip:not([hidden])")
    assert float(page.eval_on_selector(".rw-hm-tip", "t => t.dataset.value")) == pytest.approx(
        D[3, 3], abs=1e-6
    )
    # drag pans
    v0 = page.evaluate("() => document.querySelector('.rw-heatmap').__rw.view()")
    page.mouse.move(x2, y2)
    page.mouse.down()
    page.mouse.move(x2 + 40, y2 + 40)
    page.mouse.move(x2 + 80, y2 + 80)
    page.mouse.up()
    v1 = page.evaluate("() => document.querySelector('.rw-heatmap').__rw.view()")
    assert (v1["x0"], v1["y0"]) != (v0["x0"], v0["y0"])
    assert hm.selected == []  # a drag is not a click

    # Python -> page: selection, order and colour map
    hm.selected = [ids[0], ids[1]]
    harness.push("selected")
    page.wait_for_function(
        "() => document.querySelector('.rw-status').textContent.includes('2 selected')"
    )
    hm.order = "none"
    harness.push("order", "permutation")
    page.keyboard.press("r")
    page.wait_for_function("() => document.querySelector('.rw-heatmap select').value === 'none'")
    ys = [page_xy(page, p, p)[1] for p in range(len(D))]
    assert ys == sorted(ys)  # original order: row p is drawn at display row p
    page.select_option("select[aria-label='colour map']", "greys")
    assert wait_until(lambda: hm.colormap == "greys", page)
    assert page.errors == []


def test_hidden_during_a_theme_change_redraws_when_shown(page, heatmap_bundle):
    hm, D, group, ids = make_heatmap()
    Harness(page, hm, heatmap_bundle).open()
    before = canvas_paint(page, "canvas.rw-hm-matrix")
    assert before["painted"] == before["width"] * before["height"] > 0
    set_hidden(page, "#root", True)
    page.wait_for_timeout(100)
    switch_theme(page, dark=True)
    page.evaluate(
        "() => document.querySelector('.rw-heatmap').__rw.draw()"
    )  # a redraw while hidden
    hidden = canvas_paint(page, "canvas.rw-hm-matrix")
    assert (hidden["width"], hidden["height"]) == (before["width"], before["height"])
    # shown again in a narrower page: redrawn at the new size, every pixel painted
    page.evaluate("() => { document.getElementById('root').style.width = '400px'; }")
    set_hidden(page, "#root", False)
    page.wait_for_function(
        "(w) => { const c = document.querySelector('canvas.rw-hm-matrix'); return c.width < w; }",
        arg=before["width"],
    )
    after = canvas_paint(page, "canvas.rw-hm-matrix")
    assert after["cssWidth"] > 100
    assert after["painted"] == after["width"] * after["height"]
    assert page.errors == []


def test_large_quantised_matrix_hover(page, heatmap_bundle):
    from repwidgets.widgets.heatmap import DistanceHeatmap

    rng = np.random.default_rng(1)
    k = 700
    X = rng.normal(size=(k, 5))
    D = np.linalg.norm(X[:, None] - X[None], axis=-1)
    hm = DistanceHeatmap(D)
    assert hm.values["quantized"]
    Harness(page, hm, heatmap_bundle).open()
    step = (D.max() - D.min()) / 65535
    page.evaluate(
        "() => document.querySelector('.rw-heatmap').__rw.setView({x0: 100, y0: 40, s: 8})"
    )
    a = int(hm.order_positions[45])
    b = int(hm.order_positions[110])
    x, y = page_xy(page, a, b)
    page.mouse.move(x, y)
    page.wait_for_selector(".rw-hm-tip:not([hidden])")
    tip = page.eval_on_selector(".rw-hm-tip", "t => ({...t.dataset})")
    assert (int(tip["i"]), int(tip["j"])) == (a, b)
    assert abs(float(tip["value"]) - D[a, b]) <= step / 2 + 1e-9
    assert page.errors == []


# ----------------------------------------------------------------------------- kernel
SETUP_CELL = """\
import sys
sys.path[:0] = [{root!r}, {here!r}, {tests!r}]
from harness import thumbnail
from test_heatmap_browser import blocks
from repwidgets.widgets.heatmap import DistanceHeatmap
D, group = blocks()
ids = [100 + 3 * i for i in range(len(D))]
hm = DistanceHeatmap(D, [f"block {{g}}" for g in group], ids=ids,
                     thumbnails=lambda ks: [thumbnail(int(k)) for k in ks], height=360)
hm"""

# model id of the widget view shown in the first output of the notebook's first cell
MODEL_ID = """() => {
  const nb = window.jupyterapp.shell.currentWidget.content;
  const out = nb.model.cells.get(0).outputs.get(0);
  return out.data['application/vnd.jupyter.widget-view+json'].model_id;
}"""


def selected_in_kernel(server, name: str, expected: list, timeout_s: float = 30) -> list:
    """Poll ``<name>.selected`` in the kernel until it equals ``expected`` (or time runs out)."""
    import json
    import time

    from test_gallery_kernel import kernel_eval

    value: list = []
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = json.loads(kernel_eval(server, f"import json; print(json.dumps({name}.selected))"))
        if value == expected:
            break
        time.sleep(0.5)
    return value


def test_click_in_jupyterlab_reaches_the_kernel(chromium, heatmap_bundle, tmp_path, artifacts):
    import importlib.util

    import nbformat
    from support import ROOT, need
    from test_gallery_kernel import Server, kernel_eval, open_and_run

    need(importlib.util.find_spec("jupyterlab") is not None, "the Python package jupyterlab")
    root = tmp_path / "nb"
    root.mkdir()
    nb = nbformat.v4.new_notebook()
    cell = SETUP_CELL.format(
        root=str(ROOT), here=str(ROOT / "tests" / "browser"), tests=str(ROOT / "tests")
    )
    nb.cells = [nbformat.v4.new_code_cell(cell)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, root / "heatmap.ipynb")
    ids = [100 + 3 * i for i in range(len(blocks()[0]))]  # as in the kernel
    server = Server("lab", root, tmp_path)
    page = None
    try:
        server.wait_ready()
        page = chromium.new_page()
        page.set_viewport_size({"width": 1300, "height": 1000})
        open_and_run(
            page,
            server,
            "lab/tree/heatmap.ipynb",
            ".rw-heatmap canvas.rw-hm-overlay",
            artifacts / "heatmap-lab-failed.png",
        )
        # the widget on screen is the one bound to ``hm`` in the kernel
        shown = page.evaluate(MODEL_ID)
        assert shown == kernel_eval(server, "print(hm.model_id, end='')"), shown
        page.locator(".rw-heatmap").scroll_into_view_if_needed()
        page.wait_for_function(
            "() => document.querySelector('.rw-heatmap').__rw.k() > 0", timeout=30_000
        )
        a, b = 9, 2
        x, y = page_xy(page, a, b)
        # nothing of the notebook lies over the widget: the cell's point hits its overlay
        hit = page.evaluate(f"() => document.elementFromPoint({x}, {y}).className")
        assert "rw-hm-overlay" in str(hit), hit
        page.mouse.move(x + 20, y + 20)
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.up()
        value = selected_in_kernel(server, "hm", [ids[a]])
        if value != [ids[a]]:
            page.screenshot(path=str(artifacts / "heatmap-lab-failed.png"))
        assert value == [ids[a]]
        # the page shows it too
        assert page.locator(".rw-heatmap .rw-status").inner_text().endswith("1 selected")
    finally:
        if page is not None:
            page.close()
        server.stop()
