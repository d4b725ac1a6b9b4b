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
  first screen only.

Usage: ``python benchmarks/bench_widgets.py [--quick]`` (needs /usr/bin/chromium and the JS build).
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="512 neurons only, front end only")
    args = parser.parse_args()

    bundle = ROOT / "repwidgets" / "static" / "gallery.js"
    if not bundle.is_file():
        raise SystemExit(
            "repwidgets/static/gallery.js is missing: run `cd js && npm ci && npm run build`."
        )
    pool = thumbnail_pool()
    figures: dict = {"wire": wire_figures(pool), "render": {}}
    sizes = [512] if args.quick else [512, 4096]
    modes = ["page"] if args.quick else ["page", "python"]
    with headless_chromium(extra_args=EXPOSE_GC) as context:
        figures["chromium"] = context.browser.version if context.browser else None
        for mode in modes:
            for n in sizes:
                label = "frontend" if mode == "page" else "python"
                # the Python path's scroll through 4,096 cards adds minutes and no news
                full = mode == "page" or n <= 512
                figures["render"][f"{label}_{n}"] = render_figures(
                    context, bundle, pool, n, mode, full=full
                )
    figures["bundle_kib"] = round(bundle.stat().st_size / 1024, 1)
    emit("widgets", figures)


if __name__ == "__main__":
    main()
