// DistanceHeatmap: a k x k matrix drawn on a canvas, rows/columns in clustered order,
// with a colour legend, hover details (both neurons' ids, labels, images and the
// value), wheel zoom, drag pan, click and brush (shift-drag) selection of rows.
// Python side: repwidgets/widgets/heatmap.py.
//
// Every frame rasterises only what is on screen (see lib/matrix.ts), so a 2,048 x 2,048
// matrix needs no k x k image and zoom stays exact.

import type { AnyModel, RenderProps } from "@anywidget/types";
import { decodeArray, type ArrayMeta } from "./lib/codec";
import { h, setStatus, setText } from "./lib/dom";
import { fmt } from "./lib/format";
import { pythonImages } from "./lib/images";
import { suppressNotebookShortcuts } from "./lib/keyboard";
import { listen, type Handlers } from "./lib/listen";
import {
  COLORMAPS,
  buildLut,
  cellAt,
  cellCentre,
  clampView,
  codeColours,
  decodeMatrix,
  fitView,
  inversePermutation,
  matrixRange,
  panBy,
  rasterize,
  rowAt,
  rowsToIds,
  scaleT,
  valueAt,
  zoomAt,
  type HView,
  type Matrix,
  type MatrixState,
} from "./lib/matrix";
import { Selection, clickModifiers } from "./lib/selection";
import { THEME_CSS, applyAutoTheme, injectStyle, watchTheme } from "./lib/theme";
import { drawable, watchVisibility } from "./lib/visibility";

export * from "./lib/matrix";

export interface HeatmapModel {
  values: MatrixState | null;
  permutation: ArrayMeta | null;
  neuron_ids: ArrayMeta | null;
  labels: string[];
  order: string;
  selected: number[];
  colormap: string;
  vmin: number | null;
  vmax: number | null;
  value_name: string;
  has_thumbnails: boolean;
  title: string;
  height: number;
}

export interface HeatmapOptions {
  /** Plot size override (tests: jsdom has no layout). */
  measure?: () => { width: number; height: number };
}

// ------------------------------------------------------------------ widget
const GUTTER = 10; // px: selection marks left of and above the matrix
const LEGEND_W = 64;

const CSS = `
.rw-heatmap { display: flex; flex-direction: column; border: 1px solid var(--rw-border); border-radius: 4px;
  position: relative; min-width: 320px; box-sizing: border-box; outline: none; }
.rw-heatmap *, .rw-heatmap *::before, .rw-heatmap *::after { box-sizing: border-box; }
.rw-heatmap .rw-toolbar { display: flex; flex-wrap: wrap; align-items: center; gap: 6px; padding: 6px 8px;
  border-bottom: 1px solid var(--rw-border); background: var(--rw-bg2); }
.rw-heatmap .rw-title { font-weight: 600; margin-right: 4px; }
.rw-heatmap select, .rw-heatmap button { font: inherit; color: var(--rw-fg); background: var(--rw-bg);
  border: 1px solid var(--rw-border); border-radius: 3px; padding: 2px 6px; height: 24px; cursor: pointer; }
.rw-hm-body { display: flex; gap: 8px; padding: 8px 8px 26px; align-items: flex-start; }
.rw-hm-plot { position: relative; flex: none; }
.rw-hm-plot canvas { position: absolute; left: 0; top: 0; }
.rw-hm-plot .rw-hm-overlay { cursor: crosshair; touch-action: none; }
.rw-hm-plot.rw-panning .rw-hm-overlay { cursor: grabbing; }
.rw-hm-legend { position: relative; flex: none; width: ${LEGEND_W}px; font-size: 0.85em; color: var(--rw-fg2);
  font-variant-numeric: tabular-nums; }
.rw-hm-legend canvas { display: block; width: 14px; border: 1px solid var(--rw-border); }
.rw-hm-legend .rw-hm-tick { position: absolute; left: 20px; transform: translateY(-50%); white-space: nowrap; }
.rw-hm-legend .rw-hm-name { position: absolute; left: 0; bottom: -18px; white-space: nowrap; }
.rw-hm-legend .rw-hm-mark { position: absolute; left: -3px; width: 20px; height: 0; border-top: 2px solid var(--rw-fg); }
.rw-hm-tip { position: absolute; pointer-events: none; background: var(--rw-bg); color: var(--rw-fg);
  border: 1px solid var(--rw-border); border-radius: 4px; padding: 4px 6px; box-shadow: 0 2px 8px rgba(0,0,0,0.25);
  z-index: 5; font-size: 0.9em; max-width: 320px; }
.rw-hm-tip[hidden] { display: none; }
.rw-hm-tip .rw-hm-who { display: grid; grid-template-columns: auto 1fr; gap: 0 6px; }
.rw-hm-tip .rw-hm-id { font-family: var(--rw-mono); font-weight: 600; }
.rw-hm-tip .rw-hm-label { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.rw-hm-tip .rw-hm-value { margin-top: 2px; font-variant-numeric: tabular-nums; }
.rw-hm-tip .rw-hm-imgs { display: flex; gap: 4px; margin-top: 4px; }
.rw-hm-tip .rw-hm-imgs[hidden] { display: none; }
.rw-hm-tip img { display: block; max-width: 150px; height: 56px; object-fit: contain; image-rendering: pixelated;
  background: var(--rw-bg3); }
.rw-heatmap .rw-message { padding: 4px 8px; color: var(--rw-error); border-top: 1px solid var(--rw-border); white-space: pre-wrap; }
.rw-heatmap .rw-message:empty { display: none; }
`;

function safeContext(c: HTMLCanvasElement): CanvasRenderingContext2D | null {
  try {
    return c.getContext("2d");
  } catch {
    return null;
  }
}

export interface HeatmapHandle {
  /** Redraw now; returns the milliseconds it took. */
  draw(): number;
  /** Screen centre (CSS px, relative to the matrix canvas) of matrix entry (a, b), or null when off screen. */
  screenOf(a: number, b: number): [number, number] | null;
  view(): HView;
  setView(v: HView): void;
  k(): number;
}

export function renderHeatmap(model: AnyModel<HeatmapModel>, el: HTMLElement, options: HeatmapOptions = {}): () => void {
  injectStyle("rw-theme-css", THEME_CSS);
  injectStyle("rw-heatmap-css", CSS);
  const get = <K extends keyof HeatmapModel>(key: K): HeatmapModel[K] => model.get(key);

  const root = h("div", { class: "rw-root rw-heatmap", attrs: { tabindex: "0" } });
  el.appendChild(root);
  applyAutoTheme(root);

  // ----- toolbar -----
  const title = h("span", { class: "rw-title" });
  const orderSelect = h("select", { attrs: { "aria-label": "order" } });
  for (const [v, t] of [["cluster", "clustered"], ["none", "original order"]]) {
    orderSelect.appendChild(h("option", { text: t, attrs: { value: v } }));
  }
  const cmapSelect = h("select", { attrs: { "aria-label": "colour map" } });
  for (const name of Object.keys(COLORMAPS)) cmapSelect.appendChild(h("option", { text: name, attrs: { value: name } }));
  const resetButton = h("button", { text: "reset", title: "show the whole matrix (R)", attrs: { type: "button" } });
  const clearButton = h("button", { text: "clear", title: "clear the selection (Esc)", attrs: { type: "button" } });
  const status = h("span", { class: "rw-status rw-statusline", attrs: { "aria-live": "polite" } });
  root.appendChild(h("div", { class: "rw-toolbar" }, [title, orderSelect, cmapSelect, resetButton, clearButton, status]));
  suppressNotebookShortcuts(root, orderSelect, cmapSelect, resetButton, clearButton);

  // ----- plot, legend, tooltip -----
  const base = h("canvas", { class: "rw-hm-matrix" });
  const overlay = h("canvas", { class: "rw-hm-overlay" });
  const tipA = h("span", { class: "rw-hm-id" });
  const tipALabel = h("span", { class: "rw-hm-label" });
  const tipB = h("span", { class: "rw-hm-id" });
  const tipBLabel = h("span", { class: "rw-hm-label" });
  const tipValue = h("div", { class: "rw-hm-value" });
  const imgA = h("img", { attrs: { alt: "" } });
  const imgB = h("img", { attrs: { alt: "" } });
  const tipImgs = h("div", { class: "rw-hm-imgs" }, [imgA, imgB]);
  const tip = h("div", { class: "rw-hm-tip", attrs: { role: "tooltip" } }, [
    h("div", { class: "rw-hm-who" }, [tipA, tipALabel, tipB, tipBLabel]),
    tipValue,
    tipImgs,
  ]);
  tip.hidden = true;
  const plot = h("div", { class: "rw-hm-plot" }, [base, overlay, tip]);
  const legendBar = h("canvas", { attrs: { width: "1", height: "256" } });
  const tickHi = h("span", { class: "rw-hm-tick" });
  const tickMid = h("span", { class: "rw-hm-tick" });
  const tickLo = h("span", { class: "rw-hm-tick" });
  const legendName = h("span", { class: "rw-hm-name" });
  const legendMark = h("div", { class: "rw-hm-mark" });
  legendMark.hidden = true;
  const legend = h("div", { class: "rw-hm-legend" }, [legendBar, tickHi, tickMid, tickLo, legendName, legendMark]);
  const message = h("div", { class: "rw-message", attrs: { role: "status" } });
  root.append(h("div", { class: "rw-hm-body" }, [plot, legend]), message);

  // ----- state -----
  let m: Matrix | null = null;
  let k = 0;
  let perm: Int32Array = new Int32Array(0);
  let inv: Int32Array = new Int32Array(0);
  let ids: Int32Array = new Int32Array(0);
  let idPos = new Map<number, number>(); // id -> matrix row
  let range: [number, number] = [0, 1];
  let lut = buildLut("viridis");
  let codes: Uint32Array | null = null;
  let view: HView = { x0: 0, y0: 0, s: 1 };
  let size = 0; // matrix area side, CSS px
  let dpr = 1;
  let image: ImageData | null = null;
  let pixels: Uint32Array | null = null;
  let hover: [number, number] | null = null; // display (row, col)
  let selected: number[] = [];
  let frameRequested = false;
  const ctx = safeContext(base);
  const octx = safeContext(overlay);
  const lctx = safeContext(legendBar);

  // ----- transport -----
  const { rpc, fetcher } = pythonImages(model, { batchSize: 8, maxInFlight: 2, cacheSize: 512 });
  fetcher.onLoad(() => fillTipImages());
  fetcher.onError((keys, err) => setText(message, `Could not load ${keys.length} image(s): ${err.message}`));

  // ----- loading -----
  function scale(): [number, number] {
    const lo = get("vmin");
    const hi = get("vmax");
    return [lo === null || lo === undefined ? range[0] : Number(lo), hi === null || hi === undefined ? range[1] : Number(hi)];
  }

  function loadMatrix() {
    setText(message, "");
    try {
      const st = get("values");
      m = st && st.values ? decodeMatrix(st) : null;
    } catch (e) {
      m = null;
      setText(message, `Cannot read the matrix: ${(e as Error).message}`);
    }
    k = m?.k ?? 0;
    range = m ? matrixRange(m) : [0, 1];
    const idm = get("neuron_ids");
    ids = new Int32Array(k);
    const raw = idm && idm.buffer ? decodeArray(idm).data : null;
    for (let i = 0; i < k; i++) ids[i] = raw && raw.length === k ? raw[i] : i;
    idPos = new Map();
    ids.forEach((id, p) => idPos.set(id, p));
    loadPermutation();
    loadColours();
    view = fitView(k, size || 1);
  }

  function loadPermutation() {
    const pm = get("permutation");
    const raw = pm && pm.buffer ? decodeArray(pm).data : null;
    perm = new Int32Array(k);
    let ok = !!raw && raw.length === k;
    if (ok) {
      const seen = new Uint8Array(k);
      for (let r = 0; r < k; r++) {
        const p = raw![r];
        if (!(p >= 0 && p < k) || seen[p]) {
          ok = false;
          break;
        }
        seen[p] = 1;
        perm[r] = p;
      }
    }
    if (!ok) for (let r = 0; r < k; r++) perm[r] = r;
    inv = inversePermutation(perm);
  }

  function loadColours() {
    const name = get("colormap") in COLORMAPS ? get("colormap") : "viridis";
    lut = buildLut(name, 256);
    const [lo, hi] = scale();
    codes = m ? codeColours(m, lut, lo, hi) : null;
    cmapSelect.value = name;
    drawLegend();
  }

  function drawLegend() {
    const [lo, hi] = scale();
    if (lctx) {
      const img = lctx.createImageData(1, 256);
      const px = new Uint32Array(img.data.buffer);
      for (let y = 0; y < 256; y++) px[y] = lut[255 - y];
      lctx.putImageData(img, 0, 0);
    }
    const hh = size || 256;
    legendBar.style.height = `${hh}px`;
    legend.style.height = `${hh}px`;
    setText(tickHi, fmt(hi));
    setText(tickMid, fmt((lo + hi) / 2));
    setText(tickLo, fmt(lo));
    tickHi.style.top = "1px";
    tickMid.style.top = `${hh / 2}px`;
    tickLo.style.top = `${hh - 1}px`;
    setText(legendName, get("value_name") ?? "");
  }

  function loadSelection() {
    selected = (get("selected") ?? []).filter((i) => idPos.has(i));
  }

  // ----- drawing -----
  /** Side of the matrix area (CSS px), or 0 while the widget is hidden. */
  function measure(): number {
    if (options.measure) {
      const r = options.measure();
      return drawable(r.width, r.height) ? Math.max(50, Math.min(r.width, r.height)) : 0;
    }
    const box = root.getBoundingClientRect();
    if (!drawable(box.width, box.height)) return 0;
    const hh = Number(get("height"));
    const want = Number.isFinite(hh) && hh >= 150 ? hh : 520;
    const avail = box.width - LEGEND_W - 24 - GUTTER;
    return Math.max(120, Math.floor(avail > 0 ? Math.min(want, avail) : want));
  }

  /** Size the canvases; false (canvases and view untouched) while the widget is hidden. */
  function resize(): boolean {
    const sz = measure();
    if (sz === 0) return false;
    const d = typeof devicePixelRatio === "number" && devicePixelRatio > 0 ? devicePixelRatio : 1;
    if (sz === size && d === dpr && image && base.width === Math.round(sz * d)) return true;
    const old = size;
    size = sz;
    dpr = d;
    const full = size + GUTTER;
    plot.style.width = `${full}px`;
    plot.style.height = `${full}px`;
    base.width = Math.round(size * dpr);
    base.height = Math.round(size * dpr);
    base.style.width = `${size}px`;
    base.style.height = `${size}px`;
    base.style.left = `${GUTTER}px`;
    base.style.top = `${GUTTER}px`;
    overlay.width = Math.round(full * dpr);
    overlay.height = Math.round(full * dpr);
    overlay.style.width = `${full}px`;
    overlay.style.height = `${full}px`;
    image = ctx ? ctx.createImageData(base.width, base.height) : null;
    pixels = image ? new Uint32Array(image.data.buffer) : null;
    view = old > 0 ? clampView({ ...view, s: (view.s * size) / old }, k, size) : fitView(k, size);
    drawLegend();
    return true;
  }

  function draw(): number {
    const t0 = performance.now();
    updateStatus();
    if (!resize()) return 0;
    if (ctx && image && pixels && m) {
      const [lo, hi] = scale();
      rasterize(pixels, base.width, base.height, dpr, view, m, perm, lut, codes, lo, hi, 0);
      ctx.putImageData(image, 0, 0);
    }
    drawOverlay();
    return performance.now() - t0;
  }

  function requestFrame() {
    if (frameRequested) return;
    frameRequested = true;
    const raf = typeof requestAnimationFrame === "function" ? requestAnimationFrame : (cb: () => void) => setTimeout(cb, 0);
    raf(() => {
      frameRequested = false;
      draw();
    });
  }

  /** Screen y range (CSS px, matrix coordinates) of display rows a..b. */
  function band(a: number, b: number): [number, number] {
    return [(a - view.y0) * view.s, (b + 1 - view.y0) * view.s];
  }

  function drawOverlay() {
    if (!octx) return;
    const full = size + GUTTER;
    octx.setTransform(dpr, 0, 0, dpr, 0, 0);
    octx.clearRect(0, 0, full, full);
    octx.save();
    octx.translate(GUTTER, GUTTER);
    // selection: marks in the gutters and a light band over the selected rows
    if (selected.length) {
      const rows = selected.map((id) => inv[idPos.get(id)!]).sort((a, b) => a - b);
      octx.fillStyle = "#1976d2";
      for (const r of rows) {
        const [y0, y1] = band(r, r);
        if (y1 < 0 || y0 > size) continue;
        const top = Math.max(0, y0);
        const hgt = Math.max(1, Math.min(size, y1) - top);
        octx.fillRect(-GUTTER, top, GUTTER - 2, hgt);
        const x0 = (r - view.x0) * view.s;
        const x1 = (r + 1 - view.x0) * view.s;
        if (x1 >= 0 && x0 <= size) octx.fillRect(Math.max(0, x0), -GUTTER, Math.max(1, Math.min(size, x1) - Math.max(0, x0)), GUTTER - 2);
      }
      octx.fillStyle = "rgba(25, 118, 210, 0.18)";
      octx.beginPath();
      octx.rect(0, 0, size, size);
      octx.clip();
      for (const r of rows) {
        const [y0, y1] = band(r, r);
        if (y1 < 0 || y0 > size) continue;
        octx.fillRect(0, y0, size, Math.max(1, y1 - y0));
      }
    }
    if (brush) {
      const [y0, y1] = band(Math.min(brush.r0, brush.r1), Math.max(brush.r0, brush.r1));
      octx.fillStyle = "rgba(25, 118, 210, 0.25)";
      octx.strokeStyle = "#1976d2";
      octx.lineWidth = 1.5;
      octx.fillRect(-GUTTER, y0, size + GUTTER, y1 - y0);
      octx.strokeRect(-GUTTER, y0, size + GUTTER, y1 - y0);
    }
    if (hover) {
      const [r, c] = hover;
      octx.strokeStyle = "rgba(255, 255, 255, 0.9)";
      octx.lineWidth = 1;
      const w = Math.max(view.s, 1);
      octx.strokeRect((c - view.x0) * view.s - 0.5, -GUTTER, w + 1, size + GUTTER);
      octx.strokeRect(-GUTTER, (r - view.y0) * view.s - 0.5, size + GUTTER, w + 1);
      octx.strokeStyle = "#000";
      octx.strokeRect((c - view.x0) * view.s - 1.5, (r - view.y0) * view.s - 1.5, w + 3, w + 3);
    }
    octx.restore();
  }

  function updateStatus() {
    const zoom = k > 0 && size > 0 ? view.s / (size / k) : 1;
    const parts = [`${k.toLocaleString()} × ${k.toLocaleString()}`];
    if (zoom > 1.01) parts.push(`zoom ${zoom < 10 ? zoom.toFixed(1) : Math.round(zoom)}×`);
    if (selected.length) parts.push(`${selected.length.toLocaleString()} selected`);
    setStatus(status, parts.join(" · "));
  }

  function syncControls() {
    setText(title, get("title") ?? "");
    title.hidden = !get("title");
    orderSelect.value = get("order") === "none" ? "none" : "cluster";
  }

  // ----- hover -----
  function setHover(cell: [number, number] | null, sx: number, sy: number) {
    const changed = cell?.[0] !== hover?.[0] || cell?.[1] !== hover?.[1];
    hover = cell;
    if (changed) drawOverlay();
    if (!cell || !m) {
      tip.hidden = true;
      legendMark.hidden = true;
      return;
    }
    const [r, c] = cell;
    const a = perm[r];
    const b = perm[c];
    const labels = get("labels") ?? [];
    const v = valueAt(m, a, b);
    setText(tipA, `#${ids[a]}`);
    setText(tipALabel, labels[a] ?? "");
    setText(tipB, `#${ids[b]}`);
    setText(tipBLabel, labels[b] ?? "");
    setText(tipValue, `${get("value_name") || "value"}: ${fmt(v)}${m.quantized ? " (±" + fmt(m.step / 2) + ")" : ""}`);
    tip.dataset.i = String(ids[a]);
    tip.dataset.j = String(ids[b]);
    tip.dataset.value = String(v);
    tip.hidden = false;
    const tw = tip.offsetWidth || 200;
    const th = tip.offsetHeight || 80;
    const px = sx + GUTTER;
    const py = sy + GUTTER;
    tip.style.left = `${px + 14 + tw > size + GUTTER ? Math.max(0, px - 14 - tw) : px + 14}px`;
    tip.style.top = `${py + 14 + th > size + GUTTER ? Math.max(0, py - 14 - th) : py + 14}px`;
    const [lo, hi] = scale();
    legendMark.hidden = false;
    legendMark.style.top = `${(1 - scaleT(v, lo, hi)) * (size || 256)}px`;
    fillTipImages();
  }

  function fillTipImages() {
    const show = !!get("has_thumbnails") && hover !== null && !!m;
    tipImgs.hidden = !show;
    if (!show || !hover) {
      fetcher.want([]);
      return;
    }
    const a = ids[perm[hover[0]]];
    const b = ids[perm[hover[1]]];
    for (const [img, id] of [[imgA, a], [imgB, b]] as [HTMLImageElement, number][]) {
      const url = fetcher.get(id);
      if (url) {
        if (img.getAttribute("src") !== url) img.src = url;
        img.dataset.key = String(id);
      } else {
        img.removeAttribute("src");
        delete img.dataset.key;
      }
      img.alt = `neuron ${id}`;
    }
    fetcher.want(a === b ? [a] : [a, b]);
  }

  // ----- selection -----
  function pushSelection(next: number[]) {
    selected = [...new Set(next)];
    model.set("selected", selected);
    model.save_changes();
    updateStatus();
    drawOverlay();
  }

  // plain click: only this row; ctrl / cmd: toggle it; shift: the rows from the anchor
  let anchor: number | null = null;
  function clickRow(r: number, ev: MouseEvent) {
    const selection = new Selection(selected);
    selection.anchor = anchor;
    selection.click(ids[perm[r]], clickModifiers(ev), rowsToIds(0, k - 1, perm, ids));
    anchor = selection.anchor;
    pushSelection(selection.values());
  }

  // ----- pointer interaction -----
  interface Drag {
    kind: "pan" | "brush";
    sx: number;
    sy: number;
    moved: boolean;
    view0: HView;
  }
  let drag: Drag | null = null;
  let brush: { r0: number; r1: number } | null = null;

  /** Pointer position relative to the matrix's top-left corner (CSS px). */
  function local(ev: MouseEvent): [number, number] {
    const rect = overlay.getBoundingClientRect();
    return [ev.clientX - rect.left - GUTTER, ev.clientY - rect.top - GUTTER];
  }

  function onPointerDown(ev: PointerEvent) {
    if (ev.button !== 0 || k === 0) return;
    const [sx, sy] = local(ev);
    const kind: Drag["kind"] = ev.shiftKey ? "brush" : "pan";
    drag = { kind, sx, sy, moved: false, view0: { ...view } };
    if (kind === "brush") {
      const r = rowAt(view, sy, k);
      brush = { r0: r, r1: r };
    }
    overlay.setPointerCapture?.(ev.pointerId);
    root.focus({ preventScroll: true });
    ev.preventDefault();
  }

  function onPointerMove(ev: PointerEvent) {
    const [sx, sy] = local(ev);
    if (!drag) {
      const inside = sx >= 0 && sy >= 0 && sx < size && sy < size;
      setHover(inside ? cellAt(view, sx, sy, k) : null, sx, sy);
      return;
    }
    if (Math.abs(sx - drag.sx) + Math.abs(sy - drag.sy) > 3) drag.moved = true;
    if (drag.kind === "pan") {
      if (!drag.moved) return;
      plot.classList.add("rw-panning");
      view = panBy(drag.view0, sx - drag.sx, sy - drag.sy, k, size);
      setHover(null, 0, 0);
      requestFrame();
    } else if (brush) {
      brush.r1 = rowAt(view, sy, k);
      setHover(null, 0, 0);
      drawOverlay();
    }
  }

  function onPointerUp(ev: PointerEvent) {
    if (!drag) return;
    const d = drag;
    drag = null;
    plot.classList.remove("rw-panning");
    overlay.releasePointerCapture?.(ev.pointerId);
    const b = brush;
    brush = null;
    if (d.kind === "brush" && b && (d.moved || b.r0 !== b.r1)) {
      const found = rowsToIds(b.r0, b.r1, perm, ids);
      pushSelection(ev.ctrlKey || ev.metaKey ? [...selected, ...found] : found);
      return;
    }
    if (!d.moved) {
      const r = d.sy >= 0 && d.sy < size ? rowAt(view, d.sy, k) : -1;
      const inMatrixOrGutter = d.sx < size && d.sy >= 0 && d.sy < size;
      if (r >= 0 && inMatrixOrGutter) clickRow(r, ev);
    }
    drawOverlay();
  }

  function onWheel(ev: WheelEvent) {
    if (k === 0) return;
    ev.preventDefault();
    const [sx, sy] = local(ev);
    const factor = Math.exp(-ev.deltaY * (ev.deltaMode === 1 ? 0.05 : 0.0015));
    view = zoomAt(view, sx, sy, factor, k, size);
    setHover(cellAt(view, sx, sy, k), sx, sy);
    requestFrame();
  }

  function onLeave() {
    if (!drag) setHover(null, 0, 0);
  }

  function onKey(ev: KeyboardEvent) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const key = ev.key;
    if (key === "Escape") pushSelection([]);
    else if (key === "r" || key === "R") resetView();
    else if (key === "+" || key === "=" || key === "-") {
      view = zoomAt(view, size / 2, size / 2, key === "-" ? 1 / 1.5 : 1.5, k, size);
      requestFrame();
    } else return;
    ev.preventDefault();
    ev.stopPropagation();
  }

  function resetView() {
    view = fitView(k, size);
    requestFrame();
  }

  overlay.addEventListener("pointerdown", onPointerDown);
  overlay.addEventListener("pointermove", onPointerMove);
  overlay.addEventListener("pointerup", onPointerUp);
  overlay.addEventListener("pointerleave", onLeave);
  overlay.addEventListener("wheel", onWheel, { passive: false });
  root.addEventListener("keydown", onKey);
  resetButton.addEventListener("click", resetView);
  clearButton.addEventListener("click", () => pushSelection([]));
  orderSelect.addEventListener("change", () => {
    model.set("order", orderSelect.value);
    model.save_changes();
  });
  cmapSelect.addEventListener("change", () => {
    model.set("colormap", cmapSelect.value);
    model.save_changes();
    loadColours();
    requestFrame();
  });

  // ----- Python -> view -----
  const handlers: Handlers = [
    ["change:values", () => { loadMatrix(); loadSelection(); requestFrame(); }],
    ["change:neuron_ids", () => { loadMatrix(); loadSelection(); requestFrame(); }],
    ["change:permutation", () => { loadPermutation(); setHover(null, 0, 0); requestFrame(); }],
    ["change:selected", () => { loadSelection(); updateStatus(); drawOverlay(); }],
    ["change:colormap", () => { loadColours(); requestFrame(); }],
    ["change:vmin", () => { loadColours(); requestFrame(); }],
    ["change:vmax", () => { loadColours(); requestFrame(); }],
    ["change:value_name", () => drawLegend()],
    ["change:order", () => syncControls()],
    ["change:title", () => syncControls()],
    ["change:height", () => requestFrame()],
    ["change:has_thumbnails", () => fillTipImages()],
  ];
  const unlisten = listen(model, handlers);

  const stopVisibility = watchVisibility(root, requestFrame);
  const stopTheme = watchTheme(() => {
    applyAutoTheme(root);
    requestFrame();
  });

  const handle: HeatmapHandle = {
    draw,
    screenOf: (a, b) => {
      if (!(a >= 0 && a < k && b >= 0 && b < k)) return null;
      const [x, y] = cellCentre(view, inv[a], inv[b]);
      return x < 0 || y < 0 || x > size || y > size ? null : [x, y];
    },
    view: () => ({ ...view }),
    setView: (v) => {
      view = clampView(v, k, size);
      draw();
    },
    k: () => k,
  };
  (root as unknown as { __rw: HeatmapHandle }).__rw = handle;

  syncControls();
  resize();
  loadMatrix();
  loadSelection();
  draw();

  return () => {
    unlisten();
    stopVisibility();
    stopTheme();
    fetcher.dispose();
    rpc?.dispose();
    root.remove();
  };
}

export default {
  render({ model, el }: RenderProps<HeatmapModel>) {
    return renderHeatmap(model, el);
  },
};
