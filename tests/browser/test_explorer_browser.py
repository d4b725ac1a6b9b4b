"""The explorer in JupyterLab 4, driven as a person would: a real kernel runs
``x = rw.explore(sess, layer)`` on the demo, and every step is a click in Chromium.

The loop: pick the top DORA outlier in the heatmap, read its INVERT label, open the
"taught by" tab and press the attribute button, wait for the training samples that
taught the neuron, select three of them (click, then shift-click), flag them spurious,
retrain the last layer and wait for the table. The curation file on disk must hold
exactly those three marks, the table must show the ERM and curated rows, no image may be
broken, and the neuron panel must show the neuron that was clicked. Last, the view
follows JupyterLab's dark theme.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest
from support import ROOT, need

pytestmark = [pytest.mark.browser, pytest.mark.demo, pytest.mark.slow]

LAYER = "features.conv4"

#: Small settings: the session, DORA (few steps) and INVERT (short formulas) first, so
#: the explorer opens on results that are already there. The model is the demo's; the
#: data is the demo's generator with 2,000 training samples instead of 8,000 (the
#: explorer shows and curates the training split, and extracting it is most of the run).
SETUP_CELL = f"""\
import sys
sys.path[:0] = [{str(ROOT)!r}]
import torch
torch.set_num_threads(1)
import repwidgets as rw

model = rw.models.demo_model(rw.datasets.shapes(seed=0), seed=0, progress=False)
sess = rw.Session(model, rw.datasets.shapes(seed=0, n_train=2000), progress=False)
LAYER = {LAYER!r}
dora = rw.dora.analyze(sess, LAYER, n_signals=1, steps=8, signal_size=32, embedding="mds",
                       progress=False)
invert = rw.invert.explain(sess, LAYER, max_length=2, beam_size=3, progress=False)
sess.activations(LAYER, split="train");"""

EXPLORE_CELL = """\
x = rw.explore(sess, LAYER, dora=dora, invert=invert, concepts=False, curation={curation!r},
               attribution_options=dict(proj_dim=32, max_train=300, n_targets=8),
               retrain_options=dict(C=1.0))
x"""

# --- page helpers -------------------------------------------------------------------

#: Every image of the explorer that is shown has decoded pixels (none broken or empty).
IMAGES_STATE = """() => {
  const root = document.querySelector('.rw-explorer');
  const shown = [...root.querySelectorAll('img')].filter((i) => i.offsetParent !== null
    && i.style.visibility !== 'hidden');
  const withSrc = shown.filter((i) => i.getAttribute('src'));
  return {
    shown: shown.length,
    with_src: withSrc.length,
    loaded: withSrc.filter((i) => i.complete && i.naturalWidth > 0).length,
    broken: withSrc.filter((i) => i.complete && i.naturalWidth === 0).map((i) => i.className),
    failed: root.querySelectorAll('img.rw-failed').length,
  };
}"""


def thumbs_loaded(scope: str, title: str = "") -> str:
    """JS predicate: the gallery under ``scope`` (whose title ends with ``title``) shows
    cards, and each shown thumbnail is decoded."""
    return f"""() => {{
  const t = document.querySelector('{scope} .rw-title');
  if (!t || !t.textContent.trim().endsWith({title!r})) return false;
  const cards = [...document.querySelectorAll('{scope} .rw-card')]
    .filter((c) => c.style.display !== 'none');
  if (cards.length === 0) return false;
  const imgs = cards.flatMap((c) => [...c.querySelectorAll('img.rw-thumb')])
    .filter((i) => i.style.visibility !== 'hidden');
  return imgs.length > 0 && imgs.every((i) => i.getAttribute('src') && i.complete
    && i.naturalWidth > 0);
}}"""


#: The sample ids of the shown cards of a gallery, in reading order (rows, then columns).
CARDS_IN_ORDER = """(scope) => [...document.querySelectorAll(scope + ' .rw-card')]
  .filter((c) => c.style.display !== 'none')
  .map((c) => { const r = c.getBoundingClientRect(); return [r.top, r.left, Number(c.dataset.id)]; })
  .sort((a, b) => (Math.abs(a[0] - b[0]) > 4 ? a[0] - b[0] : a[1] - b[1]))
  .map((t) => t[2])"""

CANVAS_PAINTED = """(sel) => { const c = document.querySelector(sel);
  if (!c || c.width === 0 || c.height === 0) return 0;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let k = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) k++;
  return k; }"""


def heatmap_cell(page, position: int) -> tuple[float, float]:
    """Page coordinates of the heatmap's diagonal cell of row ``position``."""
    xy = page.evaluate(
        "(p) => document.querySelector('.rw-x-heatmap .rw-heatmap').__rw.screenOf(p, p)",
        position,
    )
    assert xy is not None, f"row {position} of the heatmap is off screen"
    box = page.locator(".rw-x-heatmap canvas.rw-hm-matrix").bounding_box()
    return box["x"] + xy[0], box["y"] + xy[1]


def click_with(page, selector: str, key: str | None = None) -> None:
    """Click the element at ``selector`` holding ``key`` (Shift, Control) if given."""
    page.locator(selector).scroll_into_view_if_needed()
    page.click(selector, modifiers=[key] if key else None)


def kernel_json(server, expr: str):
    from test_gallery_kernel import kernel_eval

    return json.loads(kernel_eval(server, f"import json; print(json.dumps({expr}))"))


def wait_kernel(server, expr: str, expected, timeout: float = 60):
    """Poll ``expr`` (JSON) in the kernel until it equals ``expected``; returns the last value."""
    deadline = time.time() + timeout
    value = None
    while time.time() < deadline:
        value = kernel_json(server, expr)
        if value == expected:
            return value
        time.sleep(0.5)
    return value


def file_marks(path: Path) -> dict[int, str]:
    return {int(e["sample"]): e["mark"] for e in json.loads(path.read_text())["marks"]}


def rgb(css: str) -> list[int]:
    return [int(float(v)) for v in css[css.index("(") + 1 : css.index(")")].split(",")[:3]]


def quiet_lab(settings: Path) -> None:
    """JupyterLab settings: no news toast over the page's corner (it would catch clicks
    meant for the heatmap)."""
    folder = settings / "@jupyterlab" / "apputils-extension"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')


def run_all(page, server, path: str, timeout_ms: int = 840_000) -> None:
    """Open the notebook at ``path``, run all its cells once and wait until the kernel is
    idle again (the demo's session and results take minutes on a busy CPU)."""
    from test_gallery_kernel import KERNEL_IDLE, RUN_ALL

    page.goto(f"{server.url}/{path}", timeout=120_000)
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.started", timeout=120_000)
    page.wait_for_function("() => window.jupyterapp.started.then(() => true)", timeout=120_000)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    page.wait_for_function(KERNEL_IDLE, timeout=180_000)
    page.evaluate(RUN_ALL)
    # idle again once the last cell has run (its prompt holds a number, not "*")
    page.wait_for_function(
        "() => { const p = [...document.querySelectorAll('.jp-InputArea-prompt')];"
        " return p.length > 0 && /\\d/.test(p[p.length - 1].textContent); }",
        timeout=timeout_ms,
    )
    page.wait_for_function(KERNEL_IDLE, timeout=120_000)


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server over a folder holding the explorer notebook."""
    need(importlib.util.find_spec("jupyterlab") is not None, "the Python package jupyterlab")
    from test_gallery_kernel import Server, write_notebook

    root = tmp_path / "notebooks"
    root.mkdir()
    curation = root / "marks.json"
    write_notebook(
        root / "explorer.ipynb", (SETUP_CELL, EXPLORE_CELL.format(curation=str(curation)))
    )
    quiet_lab(tmp_path / "settings")
    server = Server("lab", root, tmp_path)
    try:
        server.wait_ready()
        yield server, curation
    finally:
        server.stop()


def test_the_loop_by_clicks_in_jupyterlab(lab, chromium, artifacts):
    from test_gallery_kernel import DARK_THEME

    server, curation = lab
    page = chromium.new_page()
    page.set_viewport_size({"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        run_all(page, server, "lab/tree/explorer.ipynb")
        page.wait_for_selector(".rw-explorer .rw-x-heatmap canvas.rw-hm-matrix", timeout=60_000)
        # the map and the heatmap are drawn
        page.locator(".rw-x-heatmap").scroll_into_view_if_needed()
        page.wait_for_function(
            f"() => ({CANVAS_PAINTED})('.rw-x-heatmap canvas.rw-hm-matrix') > 1000 && "
            f"({CANVAS_PAINTED})('.rw-x-map canvas.rw-points') > 50",
            timeout=60_000,
        )
        facts = kernel_json(
            server,
            "{'top': int(x.outliers[0]), 'ids': x.map.heatmap.ids, "
            "'formula': x.data.label(int(x.outliers[0]))['formula'], 'neuron': x.neuron}",
        )
        unit, ids = facts["top"], facts["ids"]
        assert facts["neuron"] is None  # nothing opened yet: the click below opens it
        assert facts["formula"], facts  # INVERT labelled it

        # 1. pick the top DORA outlier in the heatmap: its panel opens with its label
        page.mouse.click(*heatmap_cell(page, ids.index(unit)))
        page.wait_for_function(
            "(u) => new RegExp('Neuron #' + u + '(?!\\\\d)')"
            ".test(document.querySelector('.rw-x-neuron').innerText)",
            arg=unit,
            timeout=60_000,
        )
        assert wait_kernel(server, "x.neuron", unit) == unit
        assert kernel_json(server, "x.selected_neurons") == [unit]
        formula = page.locator(".rw-x-neuron .rw-x-formula").inner_text().strip()
        assert formula == facts["formula"]
        assert page.locator(".rw-x-formula").is_visible()
        # its s-AMS and top-activating samples are shown
        page.wait_for_function(
            "() => { const i = document.querySelector('img.rw-x-sams');"
            " return !!i && i.complete && i.naturalWidth > 0; }",
            timeout=30_000,
        )
        page.wait_for_function(thumbs_loaded(".rw-x-top", f"neuron #{unit}"), timeout=60_000)
        top_shown = page.evaluate(CARDS_IN_ORDER, ".rw-x-top")
        top_kernel = kernel_json(server, "x.galleries['top'].ids")
        assert set(top_shown) <= set(top_kernel) and len(top_shown) > 0
        page.screenshot(path=str(artifacts / "explorer-neuron.png"))

        # 2. the training samples that taught it: open the tab, press the button
        page.locator(".rw-x-neuron .lm-TabBar-tab", has_text="taught by").click()
        click_with(page, "button.rw-x-attribute")
        page.wait_for_function(
            thumbs_loaded(".rw-x-taught", f"taught neuron #{unit}"), timeout=240_000
        )
        taught = page.evaluate(CARDS_IN_ORDER, ".rw-x-taught")
        top_attributed = kernel_json(
            server, "[int(i) for i in x.attributions[x.neuron].to_frame()['sample']][:48]"
        )
        assert len(taught) >= 3
        assert taught[:3] == top_attributed[:3]  # highest score first, as attributed
        page.screenshot(path=str(artifacts / "explorer-taught.png"))

        # 3. select three samples: a click, then a shift-click two cards on
        a, _b, c = taught[:3]
        click_with(page, f".rw-x-taught .rw-card[data-id='{a}'] .rw-card-label")
        click_with(page, f".rw-x-taught .rw-card[data-id='{c}'] .rw-card-label", "Shift")
        three = sorted(taught[:3])
        got = wait_kernel(server, "sorted(x.selected_samples)", three)
        assert got == three, (got, three)

        # 4. flag them spurious: the file on disk holds exactly these marks
        click_with(page, "button.rw-x-flag-spurious")
        deadline = time.time() + 30
        while time.time() < deadline and not (curation.exists() and file_marks(curation)):
            page.wait_for_timeout(200)
        assert file_marks(curation) == {i: "spurious" for i in three}

        # 5. retrain the last layer: the table shows ERM and the curated head
        click_with(page, "button.rw-x-retrain")
        page.wait_for_function(
            "() => { const t = document.querySelector('.rw-x-retrain-table table');"
            " return !!t && /ERM/.test(t.innerText) && /curated/.test(t.innerText); }",
            timeout=240_000,
        )
        rows = page.eval_on_selector_all(
            ".rw-x-retrain-table table tbody tr th", "els => els.map(e => e.innerText.trim())"
        )
        assert "ERM" in rows and "curated" in rows, rows
        assert file_marks(curation) == {i: "spurious" for i in three}  # retraining kept them

        # no broken image anywhere in the view; the panel still shows the neuron clicked
        state = page.evaluate(IMAGES_STATE)
        assert state["broken"] == [] and state["failed"] == 0, state
        assert state["loaded"] == state["with_src"] > 0, state
        assert f"Neuron #{unit}" in page.locator(".rw-x-neuron").inner_text()
        page.locator(".rw-x-retrain-table").scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts / "explorer-retrained.png"))

        # 6. the dark theme: the widgets and the labels follow it
        page.evaluate(DARK_THEME)
        page.wait_for_function(
            "() => document.body.dataset.jpThemeLight === 'false'", timeout=30_000
        )
        page.wait_for_timeout(800)
        bg = page.eval_on_selector(
            ".rw-x-heatmap .rw-heatmap", "e => getComputedStyle(e).backgroundColor"
        )
        assert sum(rgb(bg)) / 3 < 80, bg
        fg = page.eval_on_selector(".rw-x-formula", "e => getComputedStyle(e).color")
        assert sum(rgb(fg)) / 3 > 150, fg  # light text on the dark page
        page.locator(".rw-x-neuron").scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts / "explorer-dark.png"))
        assert not [e for e in errors if "rw" in e.lower()], errors
    except Exception as exc:
        page.screenshot(path=str(artifacts / "explorer-failed.png"))
        try:
            state = kernel_json(
                server,
                "{'neuron': x.neuron, 'neurons': x.selected_neurons, "
                "'samples': x.selected_samples, 'status': x.jobs.status.value}",
            )
        except Exception as why:  # a busy or broken kernel: say so, keep the first error
            state = f"not known ({type(why).__name__})"
        raise AssertionError(f"{exc}\nthe explorer in the kernel: {state}") from exc
    finally:
        page.close()
