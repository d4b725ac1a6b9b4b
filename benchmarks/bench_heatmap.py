"""DistanceHeatmap: bytes on the wire, Python-side cost and time to screen in headless Chromium.

Prints one JSON object:

- ``wire``: for a k = 2,048 distance matrix, the widget state as the kernel sends it
  (JSON part plus binary buffers) against the raw float64 matrix (and float32), and
  the largest quantisation error relative to the matrix's range;
- ``python``: seconds to encode the matrix, to cluster it (average linkage), and to
  build the whole widget (both plus checks);
- ``browser``: in Debian's Chromium (headless) with the widget's real Python object
  answering requests: time of the synchronous first render (decode + first frame),
  redraw time at fit and zoomed in, time from a pointer move to the tooltip showing
  the hovered value, and to both neurons' thumbnails being decoded.

Usage: ``python benchmarks/bench_heatmap.py [--k 2048]`` (needs /usr/bin/chromium and the JS build).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "browser"), str(ROOT / "benchmarks")]

from _common import best_of, emit, headless_chromium  # noqa: E402
from harness import Harness, thumbnail  # noqa: E402

from repwidgets.widgets.heatmap import (  # noqa: E402
    DistanceHeatmap,
    cluster_order,
    decode_matrix,
    encode_matrix,
)


def planted_distances(k: int, n_blocks: int = 12, seed: int = 0) -> np.ndarray:
    """Euclidean distances of k points around ``n_blocks`` centres (float64 [k, k])."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, n_blocks, size=k)
    X = rng.normal(size=(n_blocks, 16))[group] * 4 + rng.normal(size=(k, 16))
    sq = (X**2).sum(1)
    D = np.sqrt(np.maximum(sq[:, None] + sq[None] - 2 * X @ X.T, 0))
    np.fill_diagonal(D, 0)
    return (D + D.T) / 2


def wire_figures(hm: DistanceHeatmap, D: np.ndarray) -> dict:
    from ipywidgets.widgets.widget import _remove_buffers

    state, _paths, buffers = _remove_buffers(hm.get_state())
    json_bytes = len(json.dumps(state))
    buffer_bytes = sum(len(bytes(b)) for b in buffers)
    total = json_bytes + buffer_bytes
    span = float(D.max() - D.min())
    err = float(np.abs(decode_matrix(hm.values) - D).max())
    return {
        "k": int(D.shape[0]),
        "encoding": hm.values["values"].dtype.name,
        "packing": hm.values["packing"],
        "state_json_bytes": json_bytes,
        "state_buffer_bytes": buffer_bytes,
        "state_total_bytes": total,
        "raw_float64_bytes": int(D.size * 8),
        "raw_float32_bytes": int(D.size * 4),
        "float64_over_wire": round(D.size * 8 / total, 2),
        "max_abs_error_over_range": err / span if span else 0.0,
    }


HOVER = """async ([x, y]) => {
  const overlay = document.querySelector('canvas.rw-hm-overlay');
  const tip = document.querySelector('.rw-hm-tip');
  const r = overlay.getBoundingClientRect();
  const t0 = performance.now();
  overlay.dispatchEvent(new PointerEvent('pointermove', { clientX: r.left + x, clientY: r.top + y, bubbles: true }));
  const shown = !tip.hidden ? performance.now() - t0 : null;
  await new Promise((res) => requestAnimationFrame(() => res()));
  const painted = performance.now() - t0;
  const imgs = [...tip.querySelectorAll('.rw-hm-imgs img')];
  const ok = () => imgs.every((i) => i.getAttribute('src') && i.complete && i.naturalWidth > 0);
  while (!ok()) {
    await new Promise((res) => setTimeout(res, 1));
    if (performance.now() - t0 > 30000) break;
  }
  return { tooltip_ms: shown, next_frame_ms: painted, images_ms: performance.now() - t0,
           i: tip.dataset.i, j: tip.dataset.j, value: Number(tip.dataset.value) };
}"""


def browser_figures(context, bundle: Path, hm: DistanceHeatmap, D: np.ndarray) -> dict:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        h = Harness(page, hm, bundle)
        t_open = time.perf_counter()
        h.open(timeout_ms=120_000)
        open_ms = (time.perf_counter() - t_open) * 1000
        first_render_ms = page.evaluate("() => window.__rwT1 - window.__rwT0")
        handle = "document.querySelector('.rw-heatmap').__rw"
        fit_draw = [page.evaluate(f"() => {handle}.draw()") for _ in range(5)]
        page.evaluate(f"() => {handle}.setView({{x0: 700, y0: 900, s: 12}})")
        zoom_draw = [page.evaluate(f"() => {handle}.draw()") for _ in range(5)]
        page.evaluate(f"() => {handle}.setView({{x0: 0, y0: 0, s: 0}})")  # clamps to fit
        size = page.evaluate(f"() => {handle}.view().s") * hm.k
        rng = np.random.default_rng(1)
        hovers = []
        for x, y in rng.uniform(5, size - 5, size=(6, 2)):
            res = page.evaluate(HOVER, [float(x) + 10, float(y) + 10])  # + the gutter
            a, b = hm.ids.index(int(res["i"])), hm.ids.index(int(res["j"]))
            res["abs_error"] = abs(res["value"] - D[a, b])
            hovers.append(res)
        return {
            "page_load_to_ready_ms": round(open_ms, 1),
            "first_render_ms": round(first_render_ms, 1),
            "redraw_fit_ms_median": round(statistics.median(fit_draw), 2),
            "redraw_zoomed_ms_median": round(statistics.median(zoom_draw), 2),
            "hover_tooltip_ms_median": round(statistics.median(r["tooltip_ms"] for r in hovers), 2),
            "hover_next_frame_ms_median": round(
                statistics.median(r["next_frame_ms"] for r in hovers), 2
            ),
            "hover_images_ms_median": round(statistics.median(r["images_ms"] for r in hovers), 1),
            "hover_value_max_abs_error": max(r["abs_error"] for r in hovers),
            "fetch_requests": hm._router.requests,
            "page_errors": errors,
        }
    finally:
        page.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, default=2048, help="matrix size (default 2048)")
    args = parser.parse_args()
    bundle = ROOT / "repwidgets" / "static" / "heatmap.js"
    if not bundle.is_file():
        raise SystemExit("repwidgets/static/heatmap.js is missing: run `cd js && npm run build`.")

    D = planted_distances(args.k)
    thumbs: dict[int, bytes] = {}

    def source(keys):
        return [thumbs.setdefault(int(k), thumbnail(int(k))) for k in keys]

    figures: dict = {
        "python": {
            "encode_s": round(best_of(lambda: encode_matrix(D)), 4),
            "cluster_s": round(best_of(lambda: cluster_order(D)), 4),
            "widget_s": round(best_of(lambda: DistanceHeatmap(D, thumbnails=source)), 4),
        }
    }
    hm = DistanceHeatmap(D, thumbnails=source, title=f"{args.k} neurons")
    figures["wire"] = wire_figures(hm, D)
    with headless_chromium() as context:
        figures["chromium"] = context.browser.version if context.browser else None
        figures["browser"] = browser_figures(context, bundle, hm, D)
    figures["bundle_kib"] = round(bundle.stat().st_size / 1024, 1)
    emit("heatmap", figures)


if __name__ == "__main__":
    main()
