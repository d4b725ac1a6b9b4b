"""The explorer on the demo: opening it, time to an interactive view in JupyterLab,
switching neurons, and per-neuron attribution.

Prints one JSON object:

- ``python``: ``rw.explore(sess, "features.conv4")`` the first time (computing DORA,
  INVERT and concept discovery; the training split's activations are then read in the
  background, timed apart), again with the results remembered in memory, and again with them loaded from the ``cache=`` folder
  (memory cleared); switching the neuron panel with ``x.select_neuron`` on a neuron's
  first visit (its data computed) and on a later visit (cached), medians;
- ``attribution``: ``x.attribute(unit)`` (per-neuron TRAK with the explorer's
  settings) per neuron, median over the top DORA outliers, and a repeated call
  (cached);
- ``browser``: in headless Chromium, JupyterLab 4 with a kernel that holds the session
  and the cached results: from executing ``x = rw.explore(...); x`` to the map and the
  heatmap canvases painted, and to the neuron panel showing a neuron clicked in the
  heatmap; then from a click on another neuron in the heatmap to its panel (label) and
  to its top-activating images decoded, on its first visit and on a later one, medians.

Usage: ``python benchmarks/bench_explorer.py [--quick] [--no-browser]`` (the browser part
needs /usr/bin/chromium, JupyterLab and the JS build; the demo model trains once if it
is not cached).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "browser")]

import torch  # noqa: E402
from _common import emit, headless_chromium  # noqa: E402

LAYER = "features.conv4"
ARTIFACTS = ROOT / "tests" / "browser" / "artifacts"

#: Result settings of the quick run (the full run uses the explorer's defaults).
QUICK_SETTINGS = {
    "dora": {"steps": 16},
    "invert": {"max_length": 2, "beam_size": 3},
    "concepts": {"n_components": 8, "top_t": 50},
}
QUICK_ATTRIBUTION = {"proj_dim": 64, "max_train": 300, "n_targets": 8}


def median_ms(seconds: list[float]) -> float:
    return round(1000 * statistics.median(seconds), 1)


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def switch_units(x, k: int) -> list[int]:
    """``k`` live neurons spread over the layer, not yet visited, for switching."""
    data = x.data
    live = [u for p, u in enumerate(data.ids) if not data.dead[p]]
    step = max(1, len(live) // (k + 1))
    return [live[i * step] for i in range(1, k + 1)]


def python_figures(sess, cache: Path, folder: Path, quick: bool) -> tuple[dict, object]:
    import repwidgets as rw
    from repwidgets.views.explorer import data as explorer_data

    settings = QUICK_SETTINGS if quick else None
    curation = folder / "python-marks.json"
    first_s, x = timed(
        lambda: rw.explore(sess, LAYER, cache=cache, curation=curation, settings=settings)
    )
    activations_s = timed(x.data.activations)[0]  # read in the background after opening
    memory = [timed(lambda: rw.explore(sess, LAYER, curation=curation))[0] for _ in range(3)]
    disk = []
    for _ in range(3):
        explorer_data._MEMORY.clear()
        disk.append(timed(lambda: rw.explore(sess, LAYER, cache=cache, curation=curation))[0])
    x = rw.explore(sess, LAYER, cache=cache, curation=curation)
    units = switch_units(x, 4 if quick else 8)
    first = [timed(lambda u=u: x.select_neuron(u))[0] for u in units]
    again = [timed(lambda u=u: x.select_neuron(u))[0] for u in units]
    figures = {
        "layer": LAYER,
        "neurons": len(x.data.ids),
        "train_samples": sess.n("train"),
        "result_settings": "quick" if quick else "explorer defaults",
        "first_open_s": round(first_s, 2),
        "then_activations_ready_s": round(activations_s, 2),
        "open_results_in_memory_s": round(min(memory), 3),
        "open_results_from_cache_folder_s": round(min(disk), 3),
        "switch_neurons": len(units),
        "switch_first_visit_ms_median": median_ms(first),
        "switch_cached_ms_median": median_ms(again),
        "switch_first_visit_ms_max": round(1000 * max(first), 1),
    }
    return figures, x


def attribution_figures(x, quick: bool) -> dict:
    x.attribution_options = dict(QUICK_ATTRIBUTION) if quick else {}
    units = [int(u) for u in x.outliers[: 2 if quick else 3]] or switch_units(x, 2)
    seconds = []
    for u in units:
        x.select_neuron(u)
        seconds.append(timed(lambda u=u: x.attribute(u, wait=True))[0])
    cached = timed(lambda: x.attribute(units[0], wait=True))[0]
    result = x.attributions[units[0]]
    return {
        "units": units,
        "settings": {k: result.params.get(k) for k in ("proj_dim", "max_train", "n_targets")}
        if hasattr(result, "params")
        else x.attribution_options,
        "per_neuron_s_median": round(statistics.median(seconds), 2),
        "per_neuron_s": [round(s, 2) for s in seconds],
        "cached_ms": round(1000 * cached, 2),
    }


# --- the browser ----------------------------------------------------------------------

SETUP = """\
import sys
sys.path[:0] = [{root!r}]
import torch
torch.set_num_threads({threads})
import repwidgets as rw
sess = rw.demo_session(seed=0, progress=False)
sess.activations({layer!r}, split="train");"""

OPEN = """\
x = rw.explore(sess, {layer!r}, cache={cache!r}, curation={curation!r})
x"""

RUN_CELL = """(i) => {
  const nb = window.jupyterapp.shell.currentWidget;
  nb.content.activeCellIndex = i;
  window.__rwT0 = performance.now();
  window.jupyterapp.commands.execute('notebook:run-cell').catch(() => {});
  return true;
}"""

PAINTED_AFTER_RUN = """async (limitMs) => {
  const painted = (sel) => { const c = document.querySelector(sel);
    if (!c || c.width === 0 || c.height === 0) return 0;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let k = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) k++;
    return k; };
  const frame = () => new Promise((r) => setTimeout(r, 10));
  while (performance.now() - window.__rwT0 < limitMs) {
    if (painted('.rw-x-heatmap canvas.rw-hm-matrix') > 1000
        && painted('.rw-x-map canvas.rw-points') > 50) return performance.now() - window.__rwT0;
    await frame();
  }
  return null;
}"""

PANEL_SHOWS = """(u) => {
  const p = document.querySelector('.rw-x-neuron');
  const f = document.querySelector('.rw-x-neuron .rw-x-formula');
  return !!p && new RegExp('Neuron #' + u + '(?!\\\\d)').test(p.innerText)
    && !!f && f.innerText.trim().length > 0;
}"""


def open_notebook(page, server, path: str) -> None:
    from test_gallery_kernel import KERNEL_IDLE

    page.goto(f"{server.url}/{path}", timeout=120_000)
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.started", timeout=120_000)
    page.wait_for_function("() => window.jupyterapp.started.then(() => true)", timeout=120_000)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    page.wait_for_function(KERNEL_IDLE, timeout=180_000)


def click_neuron(page, ids: list[int], unit: int) -> None:
    from test_explorer_browser import heatmap_cell

    page.mouse.click(*heatmap_cell(page, ids.index(unit)))


def browser_figures(x, cache: Path, folder: Path, quick: bool) -> dict:
    """Figures in JupyterLab; ``x`` is this process's explorer over the same cache."""
    import json

    from test_explorer_browser import quiet_lab, thumbs_loaded
    from test_gallery_kernel import KERNEL_IDLE, Server, kernel_eval, write_notebook

    root = folder / "notebooks"
    root.mkdir()
    setup = SETUP.format(root=str(ROOT), threads=torch.get_num_threads(), layer=LAYER)
    cell = OPEN.format(layer=LAYER, cache=str(cache), curation=str(folder / "lab-marks.json"))
    write_notebook(root / "explorer.ipynb", (setup, cell))
    quiet_lab(folder / "settings")
    server = Server("lab", root, folder)
    errors: list[str] = []
    try:
        server.wait_ready()
        with headless_chromium(viewport={"width": 1400, "height": 1000}) as context:
            page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            open_notebook(page, server, "lab/tree/explorer.ipynb")
            page.evaluate(RUN_CELL, 0)  # the session and its activations: not timed
            page.wait_for_function(
                "() => window.jupyterapp.shell.currentWidget.content.widgets[0].model"
                ".executionCount !== null",
                timeout=600_000,
            )
            page.wait_for_function(KERNEL_IDLE, timeout=600_000)

            # the neuron ids and outliers are those of ``x`` in this process: the kernel
            # loads the same results from the cache folder (checked below)
            ids, dead = [int(u) for u in x.data.ids], [bool(d) for d in x.data.dead]
            live = [u for u, d in zip(ids, dead) if not d]
            first = int(x.outliers[0]) if x.outliers else live[0]
            page.evaluate(RUN_CELL, 1)
            painted_ms = page.evaluate(PAINTED_AFTER_RUN, 300_000)
            page.locator(".rw-x-heatmap").scroll_into_view_if_needed()
            click_neuron(page, ids, first)
            page.wait_for_function(PANEL_SHOWS, arg=first, timeout=120_000)
            interactive_ms = page.evaluate("() => performance.now() - window.__rwT0")
            page.wait_for_function(KERNEL_IDLE, timeout=120_000)
            facts = json.loads(
                kernel_eval(
                    server,
                    "import json; print(json.dumps({'ids': x.map.heatmap.ids, "
                    "'open_s': x.open_seconds}))",
                )
            )
            assert facts["ids"] == ids, "the kernel's explorer has other neurons"

            k = 4 if quick else 8
            step = max(1, len(live) // (k + 1))
            units = [u for u in (live[i * step] for i in range(1, k + 1)) if u != first]
            label_first, images_first, label_again, images_again = [], [], [], []
            for labels, images in ((label_first, images_first), (label_again, images_again)):
                for u in units:
                    page.locator(".rw-x-heatmap").scroll_into_view_if_needed()
                    start = time.perf_counter()
                    click_neuron(page, ids, u)
                    page.wait_for_function(PANEL_SHOWS, arg=u, timeout=60_000)
                    labels.append(time.perf_counter() - start)
                    shown = thumbs_loaded(".rw-x-top", f"neuron #{u}")
                    page.wait_for_function(shown, timeout=60_000)
                    images.append(time.perf_counter() - start)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "explorer-bench.png"))
            page.close()
        return {
            "app": "JupyterLab",
            "execute_to_canvases_painted_ms": round(painted_ms, 1) if painted_ms else None,
            "execute_to_neuron_panel_after_click_ms": round(interactive_ms, 1),
            "kernel_open_s": round(facts["open_s"], 3),
            "switch_neurons": len(units),
            "click_to_label_first_visit_ms_median": median_ms(label_first),
            "click_to_top_images_first_visit_ms_median": median_ms(images_first),
            "click_to_label_cached_ms_median": median_ms(label_again),
            "click_to_top_images_cached_ms_median": median_ms(images_again),
            "click_to_label_cached_ms_max": round(1000 * max(label_again), 1),
            "page_errors": errors,
        }
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small result and TRAK settings")
    parser.add_argument("--no-browser", action="store_true", help="the Python figures only")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import repwidgets as rw

    sess = rw.demo_session(seed=0, progress=False)
    # outside a kernel, the explorer's Output widgets clearing themselves write terminal
    # escapes to stdout; stdout is kept for the one JSON object
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        folder = Path(tmp)
        cache = folder / "cache"
        python, x = python_figures(sess, cache, folder, args.quick)
        attribution = attribution_figures(x, args.quick)
        browser = None if args.no_browser else browser_figures(x, cache, folder, args.quick)
    emit(
        "explorer",
        {"quick": args.quick, "python": python, "attribution": attribution, "browser": browser},
    )


if __name__ == "__main__":
    main()
