// ConceptBrowser: a 2-D embedding of samples, coloured by concept, class or any label,
// with hover thumbnails, lasso / box selection and a side panel for the clicked
// cluster and the selection. Python side: repwidgets/widgets/clusters.py.
//
// Points are drawn into an ImageData buffer (one 32-bit write per pixel, no per-point
// canvas calls), which keeps 100,000 points fluid on a plain 2-D canvas, including in
// browsers without WebGL. Positions (float32 [n, 2]), colour codes ([n]) and cluster
// membership ([n]) arrive as binary arrays; thumbnails are fetched lazily on hover.

import type { AnyModel, RenderProps } from "@anywidget/types";
import { decodeArray, type ArrayMeta } from "./lib/codec";
import { clear, h, setStatus, setText } from "./lib/dom";
import { type Key } from "./lib/fetcher";
import { pythonImages } from "./lib/images";
import { listen, oncePerTick, type Handlers } from "./lib/listen";
import { NONE_COLOUR, PALETTE, distinctColours } from "./lib/palette";
import { Selection, clickModifiers } from "./lib/selection";
import {
  GridIndex,
  fitView,
  pointsInBox,
  pointsInPolygon,
  rasterize,
  toData,
  toScreen,
  type View,
} from "./lib/scatter";
import { THEME_CSS, applyAutoTheme, injectStyle, watchTheme } from "./lib/theme";
import { drawable, watchVisibility } from "./lib/visibility";

export { PALETTE } from "./lib/palette";
export * from "./lib/scatter";

export interface Coloring {
  name: string;
  categories: string[];
  /** Code 0 means "none" (drawn grey, listed last). */
  none?: boolean;
}

export interface ClusterInfo {
  id: number;
  label?: string;
  description?: string;
  size?: number;
  images?: number[];
  fields?: [string, string | number | null][];
}

export interface BrowserModel {
  points: { xy?: ArrayMeta; membership?: ArrayMeta } | null;
  codes: ArrayMeta | null;
  colorings: Coloring[];
  color_by: string;
  clusters: ClusterInfo[];
  selected: number[];
  focus: number;
  mode: string;
  title: string;
  height: number;
  point_size: number;
}

export interface BrowserOptions {
  /** Canvas size override (tests: jsdom has no layout). */
  measure?: () => { width: number; height: number };
}

export type Mode = "lasso" | "box" | "pan";
const MODES: Mode[] = ["lasso", "box", "pan"];

// ------------------------------------------------------------------ colours
const BINARY = ["#b9b9b9", "#d62728"];

/** The colour of category `code` of a colouring: distinct for every category. */
export function categoryColour(coloring: Coloring | undefined, code: number): string {
  if (!coloring) return PALETTE[0];
  const k = coloring.categories.length;
  if (coloring.none) return code === 0 ? NONE_COLOUR : distinctColours(k - 1)[code - 1] ?? NONE_COLOUR;
  if (k === 2) return BINARY[code] ?? NONE_COLOUR;
  return distinctColours(k)[code] ?? NONE_COLOUR;
}

/** "#rrggbb" -> RGBA packed for a little-endian Uint32 view of ImageData. */
export function packColour(hex: string, alpha = 255): number {
  const v = parseInt(hex.slice(1), 16);
  const r = (v >> 16) & 255;
  const g = (v >> 8) & 255;
  const b = v & 255;
  return ((alpha << 24) | (b << 16) | (g << 8) | r) >>> 0;
}

// ------------------------------------------------------------------ widget
const CSS = `
.rw-browser { display: flex; flex-direction: column; border: 1px solid var(--rw-border); border-radius: 4px;
  position: relative; min-width: 320px; box-sizing: border-box; outline: none; }
.rw-browser *, .rw-browser *::before, .rw-browser *::after { box-sizing: border-box; }
.rw-browser .rw-toolbar { display: flex; flex-wrap: wrap; align-items: center; gap: 6px; padding: 6px 8px;
  border-bottom: 1px solid var(--rw-border); background: var(--rw-bg2); }
.rw-browser .rw-title { font-weight: 600; margin-right: 4px; }
.rw-browser select, .rw-browser button { font: inherit; color: var(--rw-fg); background: var(--rw-bg);
  border: 1px solid var(--rw-border); border-radius: 3px; padding: 2px 6px; height: 24px; cursor: pointer; }
.rw-browser button.rw-on { border-color: var(--rw-accent); background: var(--rw-accent-soft); }
.rw-body { display: flex; min-height: 0; }
.rw-plot { position: relative; flex: 1 1 auto; min-width: 200px; overflow: hidden; background: var(--rw-bg); }
.rw-plot canvas { position: absolute; left: 0; top: 0; }
.rw-plot .rw-overlay { cursor: crosshair; touch-action: none; }
.rw-plot.rw-pan .rw-overlay { cursor: grab; }
.rw-tip { position: absolute; pointer-events: none; background: var(--rw-bg); border: 1px solid var(--rw-border);
  border-radius: 4px; padding: 4px; box-shadow: 0 2px 8px rgba(0,0,0,0.25); z-index: 5; font-size: 0.9em; max-width: 180px; }
.rw-tip[hidden] { display: none; }
.rw-tip img { display: block; width: 96px; height: 96px; object-fit: contain; image-rendering: pixelated; background: var(--rw-bg3); }
.rw-side { flex: 0 0 260px; border-left: 1px solid var(--rw-border); overflow-y: auto; padding: 6px 8px; background: var(--rw-bg2); }
.rw-side h4 { margin: 6px 0 4px; font-size: 1em; }
.rw-legend { display: flex; flex-direction: column; gap: 1px; margin-bottom: 6px; }
.rw-legend-item { display: flex; gap: 6px; align-items: center; cursor: pointer; padding: 1px 3px; border-radius: 3px; white-space: nowrap; }
.rw-legend-item:hover { background: var(--rw-bg3); }
.rw-legend-item.rw-on { outline: 1px solid var(--rw-accent); }
.rw-swatch { width: 10px; height: 10px; border-radius: 2px; flex: none; }
.rw-legend-name { overflow: hidden; text-overflow: ellipsis; flex: 1 1 auto; min-width: 0; }
.rw-legend-count { color: var(--rw-fg2); font-variant-numeric: tabular-nums; }
.rw-desc { color: var(--rw-fg); margin: 2px 0 4px; overflow-wrap: anywhere; }
.rw-details { display: grid; grid-template-columns: auto 1fr; gap: 1px 8px; margin: 0 0 4px; }
.rw-details dt { color: var(--rw-fg2); }
.rw-details dd { margin: 0; overflow-wrap: anywhere; font-variant-numeric: tabular-nums; }
.rw-imgs { display: grid; grid-template-columns: repeat(4, 1fr); gap: 2px; }
.rw-imgs img { width: 100%; aspect-ratio: 1; object-fit: contain; image-rendering: pixelated; background: var(--rw-bg3); border-radius: 2px; }
.rw-imgs img.rw-failed { outline: 1px solid var(--rw-error); }
.rw-browser .rw-message { padding: 4px 8px; color: var(--rw-error); border-top: 1px solid var(--rw-border); white-space: pre-wrap; }
.rw-browser .rw-message:empty { display: none; }
`;

function hasBuffer(meta: ArrayMeta | null | undefined): meta is ArrayMeta {
  return !!meta && meta.buffer !== undefined && meta.buffer !== null;
}

export interface BrowserHandle {
  /** Redraw now; returns the milliseconds it took (used by tests and benchmarks). */
  draw(): number;
  /** Screen position (CSS px, relative to the plot) of point i. */
  screenOf(i: number): [number, number];
  view(): View;
  count(): number;
}

export function renderBrowser(model: AnyModel<BrowserModel>, el: HTMLElement, options: BrowserOptions = {}): () => void {
  injectStyle("rw-theme-css", THEME_CSS);
  injectStyle("rw-browser-css", CSS);
  const get = <K extends keyof BrowserModel>(k: K): BrowserModel[K] => model.get(k);

  const root = h("div", {
    class: "rw-root rw-browser",
    attrs: { tabindex: "0", "data-lm-suppress-shortcuts": "true" },
  });
  el.appendChild(root);
  applyAutoTheme(root);

  // ----- toolbar -----
  const title = h("span", { class: "rw-title" });
  const colourSelect = h("select", { attrs: { "aria-label": "colour by" } });
  const modeButtons = new Map<Mode, HTMLButtonElement>();
  const modeTips: Record<Mode, string> = {
    lasso: "lasso select (L); shift or ctrl adds, alt removes; click: one point, ctrl-click toggles",
    box: "box select (B); shift or ctrl adds, alt removes; click: one point, ctrl-click toggles",
    pan: "pan (P); the wheel zooms in every mode",
  };
  for (const m of MODES) {
    modeButtons.set(m, h("button", { text: m, title: modeTips[m], attrs: { type: "button", "data-mode": m } }));
  }
  const resetButton = h("button", { text: "reset", title: "fit all points (R)", attrs: { type: "button" } });
  const clearButton = h("button", { text: "clear", title: "clear the selection (Esc)", attrs: { type: "button" } });
  const status = h("span", { class: "rw-status rw-statusline", attrs: { "aria-live": "polite" } });
  const toolbar = h("div", { class: "rw-toolbar" }, [
    title,
    h("span", { text: "colour" }),
    colourSelect,
    ...modeButtons.values(),
    resetButton,
    clearButton,
    status,
  ]);

  // ----- plot -----
  const base = h("canvas", { class: "rw-points" });
  const overlay = h("canvas", { class: "rw-overlay" });
  const tipImg = h("img", { attrs: { alt: "" } });
  const tipText = h("div");
  const tip = h("div", { class: "rw-tip" }, [tipImg, tipText]);
  tip.hidden = true;
  const plot = h("div", { class: "rw-plot" }, [base, overlay, tip]);

  // ----- side panel -----
  const legend = h("div", { class: "rw-legend" });
  const clusterHead = h("h4");
  const clusterDesc = h("div", { class: "rw-desc" });
  const clusterFields = h("dl", { class: "rw-details" });
  const clusterImgs = h("div", { class: "rw-imgs rw-cluster-imgs" });
  const clusterBox = h("div", { class: "rw-cluster" }, [clusterHead, clusterDesc, clusterFields, clusterImgs]);
  const selHead = h("h4");
  const selSummary = h("div", { class: "rw-desc" });
  const selImgs = h("div", { class: "rw-imgs rw-selection-imgs" });
  const selBox = h("div", { class: "rw-selection" }, [selHead, selSummary, selImgs]);
  const side = h("div", { class: "rw-side" }, [legend, clusterBox, selBox]);
  const message = h("div", { class: "rw-message", attrs: { role: "status" } });
  root.append(toolbar, h("div", { class: "rw-body" }, [plot, side]), message);

  // ----- state -----
  let xy: Float32Array = new Float32Array(0);
  let n = 0;
  let membership: ArrayLike<number> | null = null;
  let codes: ArrayLike<number> | null = null;
  let index: GridIndex | null = null;
  let view: View = { cx: 0, cy: 0, scale: 1 };
  let viewFitted = false;
  // the view follows the plot's size (refit on resize) until the user pans or zooms
  let autoFit = true;
  let width = 0;
  let height = 0;
  let dpr = 1;
  let selectedMask: Uint8Array | null = null;
  let selectedList: number[] = [];
  let hover = -1;
  let image: ImageData | null = null;
  let pixels: Uint32Array | null = null;
  let frameRequested = false;
  let colours = new Uint32Array(1);
  let dimmed = new Uint32Array(1);
  const ctx = safeContext(base);
  const octx = safeContext(overlay);

  // ----- transport -----
  const { rpc, fetcher } = pythonImages(model, { batchSize: 32, maxInFlight: 2, cacheSize: 2000 });
  const scheduleImages = oncePerTick(() => fillImages());
  fetcher.onLoad(scheduleImages);
  fetcher.onError((keys, err) => {
    setText(message, `Could not load ${keys.length} image(s): ${err.message}`);
    scheduleImages();
  });

  function safeContext(c: HTMLCanvasElement): CanvasRenderingContext2D | null {
    try {
      return c.getContext("2d");
    } catch {
      return null;
    }
  }

  function coloring(): Coloring | undefined {
    const name = get("color_by");
    return (get("colorings") ?? []).find((c) => c.name === name);
  }

  function pointSize(): number {
    const s = Number(get("point_size"));
    return Number.isFinite(s) && s >= 1 ? Math.min(s, 12) : 3;
  }

  function mode(): Mode {
    const m = get("mode") as Mode;
    return MODES.includes(m) ? m : "lasso";
  }

  // ----- loading -----
  function loadPoints() {
    const pts = get("points");
    if (pts && hasBuffer(pts.xy)) {
      const arr = decodeArray(pts.xy);
      xy = arr.data instanceof Float32Array ? (arr.data as Float32Array) : Float32Array.from(arr.data);
      n = arr.shape[0] ?? 0;
    } else {
      xy = new Float32Array(0);
      n = 0;
    }
    membership = pts && hasBuffer(pts.membership) ? decodeArray(pts.membership).data : null;
    index = new GridIndex(xy, n);
    viewFitted = false;
    loadSelection();
    loadCodes();
  }

  function loadCodes() {
    const meta = get("codes");
    codes = hasBuffer(meta) ? decodeArray(meta).data : null;
    if (codes && codes.length !== n) codes = null;
    const col = coloring();
    const k = Math.max(1, col?.categories.length ?? 1);
    colours = new Uint32Array(k);
    dimmed = new Uint32Array(k);
    for (let c = 0; c < k; c++) {
      const hex = categoryColour(col, c);
      colours[c] = packColour(hex, col?.none && c === 0 ? 170 : 235);
      dimmed[c] = packColour(hex, 45);
    }
    fillColourOptions();
    renderLegend();
    renderSelectionPanel();
    requestFrame();
  }

  function loadSelection() {
    const sel = (get("selected") ?? []).filter((i) => Number.isInteger(i) && i >= 0 && i < n);
    selectedList = sel;
    if (sel.length === 0) selectedMask = null;
    else {
      selectedMask = new Uint8Array(n);
      for (const i of sel) selectedMask[i] = 1;
    }
  }

  // ----- drawing -----
  function measure() {
    if (options.measure) return options.measure();
    const r = plot.getBoundingClientRect();
    return { width: Math.floor(r.width), height: Math.floor(r.height) };
  }

  /** Size the canvases to the plot; false (canvases and view untouched) while it is hidden. */
  function resize(): boolean {
    const hh = Number(get("height"));
    plot.style.height = `${Number.isFinite(hh) && hh >= 150 ? hh : 480}px`;
    side.style.maxHeight = plot.style.height;
    const m = measure();
    if (!drawable(m.width, m.height)) return false;
    dpr = typeof devicePixelRatio === "number" && devicePixelRatio > 0 ? devicePixelRatio : 1;
    const device = Math.round(m.width * dpr);
    if (m.width === width && m.height === height && image && base.width === device) {
      if (!viewFitted) fit();
      return true;
    }
    width = m.width;
    height = m.height;
    for (const c of [base, overlay]) {
      c.width = Math.max(1, Math.round(width * dpr));
      c.height = Math.max(1, Math.round(height * dpr));
      c.style.width = `${width}px`;
      c.style.height = `${height}px`;
    }
    image = ctx ? ctx.createImageData(base.width, base.height) : null;
    pixels = image ? new Uint32Array(image.data.buffer) : null;
    if (!viewFitted || autoFit) fit();
    return true;
  }

  function fit() {
    autoFit = true;
    viewFitted = n > 0 && drawable(width, height);
    if (viewFitted) view = fitView(xy, n, width, height);
  }

  function draw(): number {
    const t0 = performance.now();
    updateStatus();
    if (!resize()) return 0;
    if (ctx && image && pixels) {
      const size = Math.max(1, Math.round(pointSize() * dpr));
      rasterize(pixels, base.width, base.height, dpr, view, xy, n, codes, colours, dimmed, selectedMask, size);
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

  function drawOverlay() {
    if (!octx) return;
    octx.setTransform(dpr, 0, 0, dpr, 0, 0);
    octx.clearRect(0, 0, width, height);
    const focus = Number(get("focus"));
    if (drag && (drag.kind === "lasso" || drag.kind === "box")) {
      octx.strokeStyle = "#1976d2";
      octx.fillStyle = "rgba(25, 118, 210, 0.12)";
      octx.lineWidth = 1.5;
      octx.beginPath();
      if (drag.kind === "box") {
        const [ax, ay] = toScreen(view, width, height, drag.path[0], drag.path[1]);
        const [bx, by] = toScreen(view, width, height, drag.path[2], drag.path[3]);
        octx.rect(Math.min(ax, bx), Math.min(ay, by), Math.abs(bx - ax), Math.abs(by - ay));
      } else {
        for (let k = 0; k < drag.path.length; k += 2) {
          const [sx, sy] = toScreen(view, width, height, drag.path[k], drag.path[k + 1]);
          if (k === 0) octx.moveTo(sx, sy);
          else octx.lineTo(sx, sy);
        }
        octx.closePath();
      }
      octx.fill();
      octx.stroke();
    }
    if (hover >= 0 && hover < n) {
      const [sx, sy] = toScreen(view, width, height, xy[2 * hover], xy[2 * hover + 1]);
      octx.strokeStyle = "#000";
      octx.lineWidth = 1.5;
      octx.beginPath();
      octx.arc(sx, sy, pointSize() + 3, 0, 2 * Math.PI);
      octx.stroke();
    }
    if (focus >= 0 && membership && n <= 20000) {
      // outline the focused cluster's members (skipped for very large clouds)
      octx.strokeStyle = "rgba(0,0,0,0.55)";
      octx.lineWidth = 1;
      const r = pointSize() / 2 + 1.5;
      octx.beginPath();
      for (let i = 0; i < n; i++) {
        if (membership[i] !== focus) continue;
        const [sx, sy] = toScreen(view, width, height, xy[2 * i], xy[2 * i + 1]);
        octx.moveTo(sx + r, sy);
        octx.arc(sx, sy, r, 0, 2 * Math.PI);
      }
      octx.stroke();
    }
  }

  function updateStatus() {
    const sel = selectedList.length;
    setStatus(status, `${n.toLocaleString()} points${sel ? ` · ${sel.toLocaleString()} selected` : ""}`);
  }

  // ----- controls -----
  function fillColourOptions() {
    const list = get("colorings") ?? [];
    const names = list.map((c) => c.name).join("\u0000");
    if (colourSelect.dataset.names !== names) {
      clear(colourSelect);
      for (const c of list) colourSelect.appendChild(h("option", { text: c.name, attrs: { value: c.name } }));
      colourSelect.dataset.names = names;
    }
    colourSelect.value = get("color_by");
  }

  function syncControls() {
    setText(title, get("title") ?? "");
    title.hidden = !get("title");
    const m = mode();
    for (const [k, b] of modeButtons) b.classList.toggle("rw-on", k === m);
    plot.classList.toggle("rw-pan", m === "pan");
  }

  // ----- side panel -----
  function renderLegend() {
    clear(legend);
    const col = coloring();
    if (!col) return;
    const counts = new Array(col.categories.length).fill(0);
    if (codes) for (let i = 0; i < n; i++) if (codes[i] < counts.length) counts[codes[i]]++;
    const order = col.categories.map((_, c) => c);
    if (col.none) order.push(order.shift() as number); // "none" last
    const focus = Number(get("focus"));
    for (const c of order) {
      if (counts[c] === 0 && codes) continue;
      const sw = h("span", { class: "rw-swatch" });
      sw.style.background = categoryColour(col, c);
      const item = h("div", { class: "rw-legend-item", title: "click: select these points; shift- or ctrl-click: add" }, [
        sw,
        h("span", { class: "rw-legend-name", text: col.categories[c] }),
        h("span", { class: "rw-legend-count", text: String(counts[c]) }),
      ]);
      item.dataset.code = String(c);
      if (col.none && c - 1 === focus && focus >= 0 && isClusterColouring(col)) item.classList.add("rw-on");
      legend.appendChild(item);
    }
  }

  function isClusterColouring(col: Coloring | undefined): boolean {
    return !!col && col.none === true && col.name === "concept";
  }

  function clusterById(id: number): ClusterInfo | undefined {
    return (get("clusters") ?? []).find((c) => c.id === id);
  }

  function renderClusterPanel() {
    const focus = Number(get("focus"));
    const info = focus >= 0 ? clusterById(focus) : undefined;
    clusterBox.hidden = !info;
    clear(clusterFields);
    clear(clusterImgs);
    if (!info) return;
    setText(clusterHead, info.label || `cluster ${info.id}`);
    setText(clusterDesc, info.description ?? "");
    for (const [k, v] of info.fields ?? []) {
      clusterFields.append(h("dt", { text: k }), h("dd", { text: v === null ? "–" : String(v) }));
    }
    for (const key of (info.images ?? []).slice(0, 24)) clusterImgs.appendChild(thumb(key));
    scheduleImages();
  }

  function renderSelectionPanel() {
    const sel = selectedList;
    selBox.hidden = sel.length === 0;
    clear(selImgs);
    if (sel.length === 0) return;
    setText(selHead, `${sel.length.toLocaleString()} selected`);
    const col = coloring();
    if (col && codes) {
      const counts = new Map<number, number>();
      for (const i of sel) counts.set(codes[i], (counts.get(codes[i]) ?? 0) + 1);
      const top = [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 4);
      setText(selSummary, top.map(([c, k]) => `${col.categories[c] ?? c}: ${k}`).join(" · "));
    } else setText(selSummary, "");
    for (const key of sel.slice(0, 24)) selImgs.appendChild(thumb(key));
    scheduleImages();
  }

  function thumb(key: number): HTMLImageElement {
    const img = h("img", { attrs: { alt: `sample ${key}`, draggable: "false" } });
    img.dataset.key = String(key);
    return img;
  }

  function fillImages() {
    const keys: Key[] = [];
    if (hover >= 0) keys.push(hover);
    const imgs = root.querySelectorAll<HTMLImageElement>(".rw-imgs img");
    imgs.forEach((img) => keys.push(Number(img.dataset.key)));
    for (const img of imgs) {
      const key = Number(img.dataset.key);
      const url = fetcher.get(key);
      if (url && img.getAttribute("src") !== url) img.src = url;
      img.classList.toggle("rw-failed", fetcher.error(key) !== undefined);
    }
    if (hover >= 0) {
      const url = fetcher.get(hover);
      if (url) {
        if (tipImg.getAttribute("src") !== url) tipImg.src = url;
        tipImg.dataset.key = String(hover);
      }
    }
    fetcher.want(keys);
  }

  // ----- selection -----
  function pushSelection(ids: number[]) {
    model.set("selected", ids);
    model.save_changes();
    applySelection();
  }

  function applySelection() {
    loadSelection();
    updateStatus();
    renderSelectionPanel();
    requestFrame();
  }

  /** Lasso, box and legend: plain replaces the selection, shift or ctrl / cmd adds, alt removes. */
  function combine(found: number[], ev: { shiftKey: boolean; altKey: boolean; ctrlKey: boolean; metaKey: boolean }): number[] {
    if (ev.altKey) {
      const drop = new Set(found);
      return selectedList.filter((i) => !drop.has(i));
    }
    if (ev.shiftKey || ev.ctrlKey || ev.metaKey) {
      const have = new Set(selectedList);
      const out = [...selectedList];
      for (const i of found) if (!have.has(i)) out.push(i);
      return out;
    }
    return found;
  }

  // ----- pointer interaction -----
  interface Drag {
    kind: "lasso" | "box" | "pan";
    path: number[]; // data coordinates
    sx: number;
    sy: number;
    moved: boolean;
    view0: View;
  }
  let drag: Drag | null = null;

  function local(ev: MouseEvent): [number, number] {
    const r = overlay.getBoundingClientRect();
    return [ev.clientX - r.left, ev.clientY - r.top];
  }

  function pick(sx: number, sy: number): number {
    if (!index || n === 0) return -1;
    const [x, y] = toData(view, width, height, sx, sy);
    return index.nearest(x, y, Math.max(pointSize(), 4) / view.scale);
  }

  function onPointerDown(ev: PointerEvent) {
    if (ev.button !== 0 && ev.button !== 1) return;
    const [sx, sy] = local(ev);
    const kind: Drag["kind"] = ev.button === 1 ? "pan" : mode();
    const [x, y] = toData(view, width, height, sx, sy);
    drag = { kind, path: kind === "box" ? [x, y, x, y] : [x, y], sx, sy, moved: false, view0: { ...view } };
    overlay.setPointerCapture?.(ev.pointerId);
    setHover(-1, 0, 0);
    ev.preventDefault();
  }

  function onPointerMove(ev: PointerEvent) {
    const [sx, sy] = local(ev);
    if (!drag) {
      setHover(pick(sx, sy), sx, sy);
      return;
    }
    if (Math.abs(sx - drag.sx) + Math.abs(sy - drag.sy) > 3) drag.moved = true;
    const [x, y] = toData(view, width, height, sx, sy);
    if (drag.kind === "pan") {
      autoFit = false;
      view = { ...drag.view0, cx: drag.view0.cx - (sx - drag.sx) / view.scale, cy: drag.view0.cy + (sy - drag.sy) / view.scale };
      requestFrame();
      return;
    }
    if (drag.kind === "box") {
      drag.path[2] = x;
      drag.path[3] = y;
    } else drag.path.push(x, y);
    drawOverlay();
  }

  function onPointerUp(ev: PointerEvent) {
    if (!drag) return;
    const d = drag;
    drag = null;
    overlay.releasePointerCapture?.(ev.pointerId);
    if (!d.moved) {
      const i = pick(d.sx, d.sy);
      onClickPoint(i, ev);
      drawOverlay();
      return;
    }
    if (d.kind === "lasso") pushSelection(combine(pointsInPolygon(xy, n, d.path), ev));
    else if (d.kind === "box") pushSelection(combine(pointsInBox(xy, n, d.path[0], d.path[1], d.path[2], d.path[3]), ev));
    drawOverlay();
  }

  // plain click: only this point; ctrl / cmd: toggle it; shift: add it (a scatter has
  // no order to take a range in); alt: remove it. The point's cluster opens in the panel.
  let anchor: number | null = null;
  function onClickPoint(i: number, ev: MouseEvent) {
    if (i < 0) return;
    if (membership) {
      const c = Number(membership[i]);
      setFocus(c >= 0 ? c : -1);
    }
    if (ev.altKey) {
      pushSelection(combine([i], ev));
      return;
    }
    const selection = new Selection(selectedList);
    selection.anchor = anchor;
    const mods = clickModifiers(ev);
    if (mods.extend) selection.add(i);
    else selection.click(i, mods, []);
    anchor = selection.anchor;
    pushSelection(selection.values());
  }

  function setFocus(c: number) {
    if (Number(get("focus")) === c) return;
    model.set("focus", c);
    model.save_changes();
    renderClusterPanel();
    renderLegend();
    requestFrame();
  }

  function setHover(i: number, sx: number, sy: number) {
    if (i !== hover) {
      hover = i;
      drawOverlay();
    }
    if (i < 0) {
      tip.hidden = true;
      return;
    }
    const col = coloring();
    const code = codes ? Number(codes[i]) : -1;
    const cat = col && code >= 0 ? col.categories[code] ?? "" : "";
    setText(tipText, `#${i}${cat ? ` · ${cat}` : ""}`);
    tip.dataset.key = String(i);
    const url = fetcher.get(i);
    if (url) {
      tipImg.src = url;
      tipImg.dataset.key = String(i);
    } else {
      tipImg.removeAttribute("src");
      delete tipImg.dataset.key;
    }
    tip.hidden = false;
    const left = sx + 14 + 130 > width ? sx - 14 - 110 : sx + 14;
    const top = Math.max(0, Math.min(sy + 14, height - 130));
    tip.style.left = `${left}px`;
    tip.style.top = `${top}px`;
    scheduleImages();
  }

  function onWheel(ev: WheelEvent) {
    ev.preventDefault();
    const [sx, sy] = local(ev);
    const [x, y] = toData(view, width, height, sx, sy);
    const factor = Math.exp(-ev.deltaY * 0.0015);
    const scale = Math.min(Math.max(view.scale * factor, 1e-9), 1e12);
    // keep the data point under the cursor in place
    autoFit = false;
    view = { scale, cx: x - (sx - width / 2) / scale, cy: y - (height / 2 - sy) / scale };
    requestFrame();
  }

  function onLeave() {
    if (!drag) setHover(-1, 0, 0);
  }

  function onKey(ev: KeyboardEvent) {
    if (ev.ctrlKey || ev.metaKey) return;
    const k = ev.key.toLowerCase();
    const modes: Record<string, Mode> = { l: "lasso", b: "box", p: "pan" };
    if (k in modes) setMode(modes[k]);
    else if (k === "r") {
      fit();
      requestFrame();
    } else if (k === "escape") pushSelection([]);
    else return;
    ev.preventDefault();
    ev.stopPropagation();
  }

  function setMode(m: Mode) {
    model.set("mode", m);
    model.save_changes();
    syncControls();
  }

  function onLegendClick(ev: MouseEvent) {
    const item = (ev.target as HTMLElement).closest<HTMLElement>(".rw-legend-item");
    if (!item || !codes) return;
    const code = Number(item.dataset.code);
    const found: number[] = [];
    for (let i = 0; i < n; i++) if (codes[i] === code) found.push(i);
    const col = coloring();
    if (isClusterColouring(col)) setFocus(code - 1);
    pushSelection(combine(found, ev));
  }

  overlay.addEventListener("pointerdown", onPointerDown);
  overlay.addEventListener("pointermove", onPointerMove);
  overlay.addEventListener("pointerup", onPointerUp);
  overlay.addEventListener("pointerleave", onLeave);
  overlay.addEventListener("wheel", onWheel, { passive: false });
  root.addEventListener("keydown", onKey);
  legend.addEventListener("click", onLegendClick);
  colourSelect.addEventListener("change", () => {
    model.set("color_by", colourSelect.value);
    model.save_changes();
  });
  for (const [m, b] of modeButtons) b.addEventListener("click", () => setMode(m));
  resetButton.addEventListener("click", () => {
    fit();
    requestFrame();
  });
  clearButton.addEventListener("click", () => pushSelection([]));

  // ----- Python -> view -----
  const handlers: Handlers = [
    ["change:points", () => { loadPoints(); requestFrame(); }],
    ["change:codes", () => loadCodes()],
    ["change:colorings", () => loadCodes()],
    ["change:color_by", () => fillColourOptions()],
    ["change:selected", () => applySelection()],
    ["change:focus", () => { renderClusterPanel(); renderLegend(); requestFrame(); }],
    ["change:clusters", () => renderClusterPanel()],
    ["change:mode", () => syncControls()],
    ["change:title", () => syncControls()],
    ["change:height", () => { resize(); requestFrame(); }],
    ["change:point_size", () => requestFrame()],
  ];
  const unlisten = listen(model, handlers);

  const stopVisibility = watchVisibility(plot, requestFrame);
  const stopTheme = watchTheme(() => {
    applyAutoTheme(root);
    requestFrame();
  });

  const handle: BrowserHandle = {
    draw,
    screenOf: (i) => toScreen(view, width, height, xy[2 * i], xy[2 * i + 1]),
    view: () => ({ ...view }),
    count: () => n,
  };
  (root as unknown as { __rw: BrowserHandle }).__rw = handle;

  syncControls();
  loadPoints();
  renderClusterPanel();
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
  render({ model, el }: RenderProps<BrowserModel>) {
    return renderBrowser(model, el);
  },
};
