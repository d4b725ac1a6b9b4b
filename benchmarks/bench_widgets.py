"""Widget transport and rendering: bytes on the wire and time to screen in headless Chromium.

Prints one JSON object:

- ``wire``: for a batch of thumbnails as the kernel sends it (a Jupyter ``comm_msg``
  serialised by jupyter_client, binary buffers included), the bytes per thumbnail
  against the encoded image size, and what base64-in-JSON would cost instead;
- ``render``: for galleries of 512 and 4,096 neurons x 8 images, in Debian's
  Chromium (headless), with the widget's real Python object answering requests
  (``python``) and with an in-page responder (``frontend``, the browser side alone):
  time of the synchronous first render, time until every image on the first screen
  is decoded, time to scroll page by page through all cards with every image shown,
  frame times while scrolling continuously, how many image keys were requested and
  the live JS heap (after a forced GC). The Python path at 4,096 neurons measures the
  first screen only;
- ``scatter``: the ConceptBrowser at 100,000 and 1,000,000 points (``--quick``: 100,000):
  time to construct the Python widget, bytes of its state on the wire (binary buffers,
  the rest as JSON, and the module's code), time to the first picture in the page, and in Chromium the frame times
  (median and p95, from one requestAnimationFrame to the next) of a wheel zoom and pan
  redraw, of the frames while a lasso is drawn and of the frame that closes a lasso
  (hit test, selection, redraw), and the synchronous redraw time.

Usage: ``python benchmarks/bench_widgets.py [--quick] [--only gallery|scatter]`` (needs
/usr/bin/chromium and the JS build).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "browser"), str(ROOT / "benchmarks")]

from _common import emit, headless_chromium  # noqa: E402
from harness import VISIBLE_IMAGES_LOADED, Harness, make_cards  # noqa: E402

from repwidgets.widgets import NeuronGallery  # noqa: E402
from repwidgets.widgets._transport import encode_image_batch  # noqa: E402

#: so the heap figure counts live objects, not garbage
EXPOSE_GC = ["--js-flags=--expose-gc"]
POOL_SIZE = 256


def thumbnail_pool(n: int = POOL_SIZE, size: int = 64) -> list[bytes]:
    """Distinct PNG thumbnails like the demo's: a shape on a background, with noise."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    pool = []
    for i in range(n):
        img = Image.new("RGB", (size, size), tuple(int(x) for x in rng.integers(0, 120, 3)))
        d = ImageDraw.Draw(img)
        a, b = sorted(rng.integers(8, size - 8, 2))
        fill = tuple(int(x) for x in rng.integers(80, 256, 3))
        (d.ellipse if i % 2 else d.rectangle)((a, a, b + 4, b + 4), fill=fill)
        arr = np.asarray(img).astype(np.int16) + rng.integers(-6, 7, (size, size, 3))
        img = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        pool.append(buf.getvalue())
    return pool


def wire_figures(pool: list[bytes], batch: int = 48) -> dict:
    """Bytes of one fetch reply as a serialised Jupyter comm message."""
    from jupyter_client.session import Session

    keys = list(range(batch))
    images = [pool[k % len(pool)] for k in keys]
    meta, blob = encode_image_batch(images)
    content = {
        **meta,
        "keys": keys,
        "type": "fetch",
        "request_id": "abc123-x1y2z3-0:17",
        "ok": True,
    }
    session = Session(key=b"0" * 32)
    data = {"method": "custom", "content": content}
    msg = session.msg("comm_msg", content={"comm_id": "f" * 32, "data": data})
    msg["buffers"] = [blob]
    frames = session.serialize(msg)
    wire = sum(len(f) for f in frames) + len(blob)
    encoded = sum(len(i) for i in images)
    b64_json = len(json.dumps([__import__("base64").b64encode(i).decode() for i in images]))
    return {
        "batch_size": batch,
        "encoded_bytes_per_thumbnail": round(encoded / batch, 1),
        "wire_bytes_per_thumbnail": round(wire / batch, 1),
        "wire_over_encoded": round(wire / encoded, 4),
        "base64_json_over_encoded": round(b64_json / encoded, 4),
    }


FIRST_SCREEN = f"""async () => {{
  const ok = {VISIBLE_IMAGES_LOADED};
  while (!ok()) await new Promise((r) => requestAnimationFrame(r));
  return performance.now() - window.__rwT0;
}}"""

ALL_CARDS = f"""async () => {{
  const ok = {VISIBLE_IMAGES_LOADED};
  const vp = document.querySelector('.rw-viewport');
  const seen = new Set();
  const t0 = performance.now();
  let pages = 0;
  vp.scrollTop = 0;
  for (;;) {{
    await new Promise((r) => requestAnimationFrame(r));
    while (!ok()) await new Promise((r) => requestAnimationFrame(r));
    document.querySelectorAll('.rw-card').forEach((c) => {{ if (c.style.display !== 'none') seen.add(c.dataset.id); }});
    pages++;
    if (vp.scrollTop + vp.clientHeight >= vp.scrollHeight - 1) break;
    vp.scrollTop += vp.clientHeight;
  }}
  return {{ ms: performance.now() - t0, cards_seen: seen.size, pages }};
}}"""

SCROLL = """async () => {
  const vp = document.querySelector('.rw-viewport');
  vp.scrollTop = 0;
  await new Promise((r) => requestAnimationFrame(r));
  const deltas = [];
  let last = performance.now();
  for (let i = 0; i < 600 && vp.scrollTop + vp.clientHeight < vp.scrollHeight - 1; i++) {
    vp.scrollTop += 40;
    await new Promise((r) => requestAnimationFrame(r));
    const now = performance.now();
    deltas.push(now - last);
    last = now;
  }
  return deltas;
}"""


HEAP = """() => {
  if (window.gc) window.gc();
  return performance.memory ? performance.memory.usedJSHeapSize : null;
}"""


def render_figures(
    context, bundle: Path, pool: list[bytes], n: int, mode: str, full: bool = True
) -> dict:
    """Open a gallery of ``n`` x 8 in a fresh page and time it.

    With ``full=False`` only the first screen is measured (the scroll through every card
    is left out, its figures are None).
    """
    cards = make_cards(n, 8)
    g = NeuronGallery(
        cards,
        image_source=lambda keys: [pool[int(k) % len(pool)] for k in keys],
        title=f"{n} neurons",
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        h = Harness(page, g, bundle, mode=mode, pool=pool if mode == "page" else None)
        t_open = time.perf_counter()
        h.open(timeout_ms=120_000)
        first_render_ms = page.evaluate("() => window.__rwT1 - window.__rwT0")
        first_screen_ms = page.evaluate(FIRST_SCREEN)
        open_to_first_screen_ms = (time.perf_counter() - t_open) * 1000
        cards_on_screen = page.evaluate(
            "() => [...document.querySelectorAll('.rw-card')]"
            ".filter(c => c.style.display !== 'none').length"
        )
        keys_first_screen = page.evaluate("() => window.__rwStats.keysRequested")
        heap_first = page.evaluate(HEAP)
        allc = page.evaluate(ALL_CARDS) if full else None
        stats = page.evaluate("() => window.__rwStats")
        deltas = sorted(page.evaluate(SCROLL)) if full else []
        heap = page.evaluate(HEAP) if full else None

        def mb(x):
            return round(x / 2**20, 1) if x else None

        return {
            "neurons": n,
            "images_per_card": 8,
            "first_render_ms": round(first_render_ms, 1),
            "first_screen_images_ms": round(first_screen_ms, 1),
            "page_load_to_first_screen_ms": round(open_to_first_screen_ms, 1),
            "cards_in_dom_first_screen": cards_on_screen,
            "keys_requested_first_screen": keys_first_screen,
            "all_cards_ms": round(allc["ms"], 1) if allc else None,
            "all_cards_seen": allc["cards_seen"] if allc else None,
            "pages_scrolled": allc["pages"] if allc else None,
            "fetch_requests": stats["sent"],
            "keys_requested_total": stats["keysRequested"],
            "image_bytes_received": stats["bytesIn"],
            "scroll_frames": len(deltas),
            "scroll_frame_ms_median": round(statistics.median(deltas), 2) if deltas else None,
            "scroll_frame_ms_p95": round(deltas[int(0.95 * (len(deltas) - 1))], 2)
            if deltas
            else None,
            "scroll_frame_ms_max": round(max(deltas), 2) if deltas else None,
            "js_heap_mb_first_screen": mb(heap_first),
            "js_heap_mb_after_scroll": mb(heap),
            "page_errors": errors,
        }
    finally:
        page.close()


SCATTER_PAN = """async (frames) => {
  const ov = document.querySelector('canvas.rw-overlay');
  const r = ov.getBoundingClientRect();
  const raf = () => new Promise((res) => requestAnimationFrame(res));
  await raf();
  const deltas = [];
  let last = performance.now();
  for (let i = 0; i < frames; i++) {
    const zoom = i % 40 < 20 ? -60 : 60;
    const x = r.left + r.width / 2 + 0.3 * r.width * Math.sin(i / 7);
    const y = r.top + r.height / 2 + 0.3 * r.height * Math.cos(i / 9);
    ov.dispatchEvent(new WheelEvent('wheel', { deltaY: zoom, clientX: x, clientY: y, cancelable: true, bubbles: true }));
    await raf();
    const now = performance.now();
    deltas.push(now - last);
    last = now;
  }
  return deltas;
}"""

SCATTER_LASSO = """async (rounds) => {
  const ov = document.querySelector('canvas.rw-overlay');
  const r = ov.getBoundingClientRect();
  const raf = () => new Promise((res) => requestAnimationFrame(res));
  const at = (x, y) => ({ clientX: r.left + x, clientY: r.top + y, button: 0, buttons: 1,
    pointerId: 1, isPrimary: true, pointerType: 'mouse', bubbles: true, cancelable: true });
  const moves = [], closes = [];
  for (let k = 0; k < rounds; k++) {
    const cx = r.width * (0.35 + 0.3 * (k % 3) / 2), cy = r.height / 2, rad = 0.18 * r.height * (1 + k % 2);
    ov.dispatchEvent(new PointerEvent('pointerdown', at(cx + rad, cy)));
    await raf();
    let last = performance.now();
    for (let s = 1; s <= 24; s++) {
      const a = (2 * Math.PI * s) / 24;
      ov.dispatchEvent(new PointerEvent('pointermove', at(cx + rad * Math.cos(a), cy + rad * Math.sin(a))));
      await raf();
      const now = performance.now();
      moves.push(now - last);
      last = now;
    }
    ov.dispatchEvent(new PointerEvent('pointerup', { ...at(cx + rad, cy), shiftKey: k % 2 === 1 }));
    await raf();
    closes.push(performance.now() - last);
    await raf();
  }
  const saved = (window.__rwSaved || {}).selected;
  return { moves, closes, selected: saved ? saved.length : null };
}"""

SCATTER_DRAW = """(k) => {
  const h = document.querySelector('.rw-browser').__rw;
  const out = [];
  for (let i = 0; i < k; i++) out.push(h.draw());
  return out;
}"""


def _quantiles(values: list[float]) -> dict:
    v = sorted(values)
    if not v:
        return {"median": None, "p95": None}
    return {"median": round(statistics.median(v), 2), "p95": round(v[int(0.95 * (len(v) - 1))], 2)}


def scatter_points(n: int, seed: int = 0):
    """``n`` points in 30 gaussian blobs (an embedding's look), a cluster id and a class each."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.uniform(-20, 20, size=(30, 2))
    member = rng.integers(0, 30, size=n)
    xy = (centres[member] + rng.normal(0, 1.5, size=(n, 2))).astype(np.float32)
    member[rng.random(n) < 0.1] = -1
    classes = rng.integers(0, 10, size=n)
    return xy, member, classes


def scatter_figures(context, bundle: Path, pool: list[bytes], n: int) -> dict:
    """Construct a ConceptBrowser of ``n`` points in Python and time it in a fresh page
    (thumbnails from ``pool``, served in the page)."""
    from ipywidgets.widgets.widget import _remove_buffers

    from repwidgets.widgets import ConceptBrowser

    xy, member, classes = scatter_points(n)
    colorings = {
        "concept": (member + 1, ["none", *[f"concept {j}" for j in range(30)]], True),
        "class": (classes, [f"class {j}" for j in range(10)]),
    }
    t0 = time.perf_counter()
    w = ConceptBrowser(xy, colorings, membership=member, title=f"{n} points")
    construct_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    state, _paths, buffers = _remove_buffers(w.get_state())
    state_s = time.perf_counter() - t0
    buffer_bytes = sum(memoryview(b).nbytes for b in buffers)
    code = ("_esm", "_css")  # the module's code and CSS, sent once per widget
    json_bytes = len(json.dumps({k: v for k, v in state.items() if k not in code}))
    code_bytes = sum(len(str(state.get(k) or "")) for k in code)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        Harness(page, w, bundle, mode="page", pool=pool).open(timeout_ms=120_000)
        first_render_ms = page.evaluate("() => window.__rwT1 - window.__rwT0")
        draw = _quantiles(page.evaluate(SCATTER_DRAW, 15))
        pan = _quantiles(page.evaluate(SCATTER_PAN, 120))
        # back to the whole embedding (the R key) so the lassos enclose points
        page.evaluate(
            "() => document.querySelector('.rw-browser')"
            ".dispatchEvent(new KeyboardEvent('keydown', { key: 'r', bubbles: true }))"
        )
        page.evaluate("() => document.querySelector('.rw-browser').__rw.draw()")
        lasso = page.evaluate(SCATTER_LASSO, 10)
        painted = page.evaluate(
            """() => { const c = document.querySelector('canvas.rw-points');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let k = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) k++; return k; }"""
        )
    finally:
        page.close()
    return {
        "points": n,
        "python_construct_s": round(construct_s, 3),
        "python_state_s": round(state_s, 4),
        "wire_buffer_bytes": buffer_bytes,
        "wire_json_bytes": json_bytes,
        "wire_code_bytes": code_bytes,
        "first_render_ms": round(first_render_ms, 1),
        "redraw_ms": draw,
        "pan_zoom_frame_ms": pan,
        "lasso_move_frame_ms": _quantiles(lasso["moves"]),
        "lasso_close_frame_ms": _quantiles(lasso["closes"]),
        "lasso_last_selected": lasso["selected"],
        "painted_pixels": painted,
        "page_errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="512 neurons only, front end only")
    parser.add_argument("--only", choices=["gallery", "scatter"], help="one part only")
    args = parser.parse_args()

    static = ROOT / "repwidgets" / "static"
    bundle = static / "gallery.js"
    scatter_bundle = static / "clusters.js"
    for b in (bundle, scatter_bundle):
        if not b.is_file():
            raise SystemExit(f"{b} is missing: run `cd js && npm ci && npm run build`.")
    pool = thumbnail_pool()
    figures: dict = {}
    if args.only != "scatter":
        figures["wire"] = wire_figures(pool)
        figures["render"] = {}
    sizes = [512] if args.quick else [512, 4096]
    modes = ["page"] if args.quick else ["page", "python"]
    with headless_chromium(extra_args=EXPOSE_GC) as context:
        figures["chromium"] = context.browser.version if context.browser else None
        if args.only != "scatter":
            for mode in modes:
                for n in sizes:
                    label = "frontend" if mode == "page" else "python"
                    # the Python path's scroll through 4,096 cards adds minutes and no news
                    full = mode == "page" or n <= 512
                    figures["render"][f"{label}_{n}"] = render_figures(
                        context, bundle, pool, n, mode, full=full
                    )
        if args.only != "gallery":
            figures["scatter"] = {
                f"points_{n}": scatter_figures(context, scatter_bundle, pool, n)
                for n in ([100_000] if args.quick else [100_000, 1_000_000])
            }
    figures["bundle_kib"] = round(bundle.stat().st_size / 1024, 1)
    figures["scatter_bundle_kib"] = round(scatter_bundle.stat().st_size / 1024, 1)
    emit("widgets", figures)


if __name__ == "__main__":
    main()
