"""Run a widget's built ES module (and its CSS) in a real browser page against a stand-in model.

The page gets the Python widget's real state (binary buffers as DataView, as
Jupyter delivers them) and a model object with anywidget's interface. Messages and
trait changes go either to the real Python widget object (``mode="python"``,
through Playwright's exposed functions, so Python's request handlers answer and
``widget.selected`` changes as in a kernel) or, for benchmarks of the front end
alone, to an in-page responder serving a pool of encoded images (``mode="page"``).
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

# Debian's Chromium (Playwright's own browser download is not used) and its flags.
CHROMIUM = os.environ.get("REPWIDGETS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

BASE = "http://repwidgets.test"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>repwidgets harness</title>
<style>body { margin: 16px; font-family: sans-serif; } #root { width: 1040px; }</style>
</head><body><div id="root"></div>
<script type="module">
const b64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0)).buffer;
const stats = { sent: 0, replies: 0, bytesIn: 0, jsonIn: 0, keysRequested: 0 };
window.__rwStats = stats;

class Model {
  constructor(state) { this.state = state; this.listeners = new Map(); this.dirty = {}; }
  get(k) { return this.state[k]; }
  set(k, v) { this.state[k] = v; this.dirty[k] = v; }
  on(ev, cb) { if (!this.listeners.has(ev)) this.listeners.set(ev, new Set()); this.listeners.get(ev).add(cb); }
  off(ev, cb) { if (ev && cb) this.listeners.get(ev)?.delete(cb); }
  save_changes() {
    const changes = this.dirty; this.dirty = {};
    if (window.rwPython) window.rwPython("state", JSON.stringify(changes));
    else window.__rwSaved = Object.assign(window.__rwSaved || {}, changes);
  }
  update(k, v) { this.state[k] = v; this.listeners.get(`change:${k}`)?.forEach((cb) => cb()); }
  emit(content, buffers) {
    stats.replies++; stats.jsonIn += JSON.stringify(content).length;
    for (const b of buffers) stats.bytesIn += b.byteLength;
    const views = buffers.map((b) => new DataView(b));
    this.listeners.get("msg:custom")?.forEach((cb) => cb(content, views));
  }
  send(content) {
    stats.sent++;
    if (content.type === "fetch") stats.keysRequested += content.keys.length;
    this.transport(content);
  }
  get widget_manager() { return {}; }
}

function setPath(obj, path, value) {
  for (let i = 0; i < path.length - 1; i++) obj = obj[path[i]];
  obj[path[path.length - 1]] = value;
}

const meta = await (await fetch("/state.json")).json();
for (let i = 0; i < meta.buffer_paths.length; i++) {
  const buf = await (await fetch(`/buffer/${i}`)).arrayBuffer();
  setPath(meta.state, meta.buffer_paths[i], new DataView(buf));
}
const model = new Model(meta.state);
window.__rwModel = model;

if (meta.mode === "python") {
  model.transport = async (content) => {
    const replies = JSON.parse(await window.rwPython("msg", JSON.stringify(content)));
    for (const r of replies) model.emit(r.content, r.buffers.map(b64));
  };
} else {
  const pool = await (await fetch("/pool.json")).json();
  const poolBytes = new Uint8Array(await (await fetch("/pool.bin")).arrayBuffer());
  const n = pool.mimes.length;
  model.transport = (content) => {
    if (content.type !== "fetch") return;
    const keys = content.keys;
    const parts = keys.map((k) => { const i = Number(k) % n; return poolBytes.subarray(pool.offsets[i], pool.offsets[i + 1]); });
    const offsets = [0];
    for (const p of parts) offsets.push(offsets[offsets.length - 1] + p.length);
    const buf = new Uint8Array(offsets[offsets.length - 1]);
    parts.forEach((p, i) => buf.set(p, offsets[i]));
    const reply = { type: "fetch", request_id: content.request_id, ok: true, keys, offsets, mimes: keys.map((k) => pool.mimes[Number(k) % n]) };
    setTimeout(() => model.emit(reply, [buf.buffer]), meta.latency_ms);
  };
}

// the widget's _css, where anywidget puts it in Jupyter: a <style> in the page's head
const css = await fetch("/widget.css");
if (css.ok) {
  const style = document.createElement("style");
  style.textContent = await css.text();
  document.head.appendChild(style);
}
const mod = await import("/widget.js");
const el = document.getElementById("root");
window.__rwT0 = performance.now();
window.__rwCleanup = await mod.default.render({ model, el, signal: new AbortController().signal });
window.__rwT1 = performance.now();
window.__rw_ready = true;
</script></body></html>
"""


class Harness:
    """Serve ``widget`` (its bundle at ``bundle``) in ``page`` at http://repwidgets.test/."""

    def __init__(
        self,
        page: Any,
        widget: Any,
        bundle: Path,
        mode: str = "python",
        pool: list[bytes] | None = None,
        latency_ms: float = 0.0,
    ) -> None:
        from ipywidgets.widgets.widget import _remove_buffers

        self.page = page
        self.widget = widget
        self.mode = mode
        state, paths, buffers = _remove_buffers(widget.get_state())
        self._state_json = json.dumps(
            {"state": state, "buffer_paths": paths, "mode": mode, "latency_ms": latency_ms}
        )
        self._buffers = [bytes(b) for b in buffers]
        self._bundle = Path(bundle).read_bytes()
        css = Path(bundle).with_suffix(".css")
        self._css = css.read_bytes() if css.is_file() else None
        self.messages: list[dict] = []
        self.replies: list[tuple[dict, list[bytes]]] = []
        if mode == "python":
            widget.send = self._capture  # replies go to the page instead of a comm
        if pool is not None:
            from repwidgets.widgets._transport import encode_image_batch

            meta, blob = encode_image_batch(pool)
            self._pool = (json.dumps(meta), blob)
        else:
            self._pool = None
        self._outbox: list[tuple[dict, list[bytes]]] = []

    def _capture(self, content: dict, buffers: list | None = None) -> None:
        self._outbox.append((content, [bytes(b) for b in (buffers or [])]))

    def _python(self, kind: str, payload: str) -> str | None:
        data = json.loads(payload)
        if kind == "state":
            self.widget.set_state(data)
            return None
        self.messages.append(data)
        self._outbox = []
        self.widget._router.handle(data, [])
        out = self._outbox
        self.replies.extend(out)
        return json.dumps(
            [
                {"content": c, "buffers": [base64.b64encode(b).decode("ascii") for b in bufs]}
                for c, bufs in out
            ]
        )

    def _route(self, route: Any) -> None:
        path = route.request.url[len(BASE) :].split("?")[0]
        if path in ("/", "/index.html"):
            route.fulfill(status=200, content_type="text/html", body=PAGE)
        elif path == "/widget.js":
            route.fulfill(status=200, content_type="text/javascript", body=self._bundle)
        elif path == "/widget.css" and self._css is not None:
            route.fulfill(status=200, content_type="text/css", body=self._css)
        elif path == "/state.json":
            route.fulfill(status=200, content_type="application/json", body=self._state_json)
        elif path.startswith("/buffer/"):
            body = self._buffers[int(path.rsplit("/", 1)[1])]
            route.fulfill(status=200, content_type="application/octet-stream", body=body)
        elif path == "/pool.json" and self._pool:
            route.fulfill(status=200, content_type="application/json", body=self._pool[0])
        elif path == "/pool.bin" and self._pool:
            route.fulfill(status=200, content_type="application/octet-stream", body=self._pool[1])
        else:
            route.fulfill(status=404, body="not found")

    def open(self, timeout_ms: int = 30_000) -> Harness:
        if self.mode == "python":
            self.page.expose_function("rwPython", self._python)
        self.page.route(f"{BASE}/**", self._route)
        self.page.goto(f"{BASE}/index.html")
        self.page.wait_for_function("window.__rw_ready === true", timeout=timeout_ms)
        return self

    def push(self, *names: str) -> None:
        """Send Python-side trait values to the page (as a kernel would)."""
        state = self.widget.get_state(list(names))
        for name in names:
            self.page.evaluate("([k, v]) => window.__rwModel.update(k, v)", [name, state[name]])

    def wait_images(self, timeout_ms: int = 30_000) -> None:
        """Wait until every visible card's images have loaded."""
        self.page.wait_for_function(VISIBLE_IMAGES_LOADED, timeout=timeout_ms)


#: JS predicate: all thumbnails of rendered cards have a decoded image.
VISIBLE_IMAGES_LOADED = """() => {
  const cards = [...document.querySelectorAll('.rw-card')].filter((c) => c.style.display !== 'none');
  if (cards.length === 0) return false;
  const imgs = cards.flatMap((c) => [...c.querySelectorAll('img.rw-thumb')])
    .filter((i) => i.style.visibility !== 'hidden');
  return imgs.every((i) => i.getAttribute('src') && i.complete && i.naturalWidth > 0);
}"""


def wait_until(predicate, page=None, timeout: float = 15.0) -> bool:
    """Poll ``predicate()`` until it holds or ``timeout`` seconds pass; returns its last value.

    With ``page``, waits through Playwright, so the page's pending calls into Python
    (trait changes saved by the widget) are delivered while it waits.
    """
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        if page is not None:
            page.wait_for_timeout(20)
        else:
            time.sleep(0.05)
    return bool(predicate())


def thumbnail(key: int, size: int = 64) -> bytes:
    """A distinct small PNG for an int key: a coloured shape on a tinted background."""
    import colorsys
    import io

    from PIL import Image, ImageDraw

    h = (key * 0.618034) % 1.0
    fg = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h, 0.75, 0.95))
    bg = tuple(int(255 * c) for c in colorsys.hsv_to_rgb((h + 0.5) % 1.0, 0.25, 0.35))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    m = size // 5
    box = (m, m, size - m, size - m)
    shape = key % 3
    if shape == 0:
        d.ellipse(box, fill=fg)
    elif shape == 1:
        d.rectangle(box, fill=fg)
    else:
        d.polygon([(size // 2, m), (size - m, size - m), (m, size - m)], fill=fg)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def make_cards(n: int, k: int = 8, bins: int = 24, seed: int = 0) -> list[dict]:
    """``n`` cards with scores, ``k`` image keys each and a histogram of fake activations."""
    import numpy as np

    rng = np.random.default_rng(seed)
    shapes = ["circle", "square", "triangle"]
    cards = []
    for i in range(n):
        acts = rng.gamma(1.0 + (i % 5), 1.0, size=400)
        cards.append(
            {
                "id": i,
                "label": f"{shapes[i % 3]} detector" if i % 4 else f"{shapes[i % 3]} & stripes",
                "scores": {"auc": float(0.5 + 0.5 * rng.random()), "dora": float(rng.gamma(2.0))},
                "images": [int(x) for x in rng.choice(10 * n, size=k, replace=False)],
                "histogram": acts,
            }
        )
    return cards


def canvas_paint(page, selector: str) -> dict:
    """Size (device px and CSS px) of the canvas at ``selector`` and how many of its
    pixels are painted (alpha > 0)."""
    return page.evaluate(
        """(sel) => { const c = document.querySelector(sel);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let painted = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) painted++;
        const r = c.getBoundingClientRect();
        return { width: c.width, height: c.height, cssWidth: r.width, cssHeight: r.height, painted }; }""",
        selector,
    )


def switch_theme(page, dark: bool = True) -> None:
    """Switch the page's theme as JupyterLab does (attributes on <body>) and the OS
    preference with it."""
    page.emulate_media(color_scheme="dark" if dark else "light")
    page.evaluate(
        """(dark) => { document.body.dataset.jpThemeLight = String(!dark);
        document.body.dataset.jpThemeName = dark ? 'JupyterLab Dark' : 'JupyterLab Light'; }""",
        dark,
    )


def set_hidden(page, selector: str, hidden: bool) -> None:
    """Hide (display: none) or show the element at ``selector``."""
    page.evaluate(
        "([sel, hide]) => { document.querySelector(sel).style.display = hide ? 'none' : ''; }",
        [selector, hidden],
    )
