// CurationSelector: a grid of a mid-range band's samples to mark keep / spurious /
// exclude. Keys act on the focused sample (k keep, s spurious, x exclude, 0 or
// Backspace clears, u undo, arrows move); the K / S / X buttons do the same with the
// mouse. Every mark is sent to Python, which saves the curation file and then updates
// the `marks` trait; until then the cell shows the mark as pending. A slider pair
// moves the band; Python selects the new samples and replaces `items`.
// Python side: repwidgets/widgets/curation.py.

import type { AnyModel, RenderProps } from "@anywidget/types";
import { decodeArray, type ArrayMeta, type NDArray } from "./lib/codec";
import { clear, h, setText } from "./lib/dom";
import { fmt } from "./lib/format";
import { drawHistogram } from "./lib/histogram";
import { pythonImages, waitingText } from "./lib/images";
import { gridKey } from "./lib/keyboard";
import { listen, oncePerTick, type Handlers } from "./lib/listen";
import { THEME_CSS, applyAutoTheme, cssVar, injectStyle, watchTheme } from "./lib/theme";
import { VirtualGrid } from "./lib/vgrid";
import { drawable, watchVisibility } from "./lib/visibility";

export type Mark = "keep" | "spurious" | "exclude";
export const MARKS: Mark[] = ["keep", "spurious", "exclude"];
const KEY_TO_MARK: Record<string, Mark | null> = { k: "keep", s: "spurious", x: "exclude", "0": null, Backspace: null, Delete: null };

const BUTTON_TEXT: Record<Mark, string> = { keep: "K", spurious: "S", exclude: "X" };

export interface ItemsState {
  samples?: ArrayMeta;
  scores?: ArrayMeta;
  logits?: ArrayMeta;
  labels?: ArrayMeta;
  predictions?: ArrayMeta;
  groups?: ArrayMeta;
}

export interface CurationModel {
  items: ItemsState;
  class_names: string[];
  group_names: string[];
  marks: Record<string, Mark>;
  band: number[];
  absolute: boolean;
  limits: number[];
  histogram: { counts?: ArrayMeta; range?: number[] };
  title: string;
  score_name: string;
  file: string;
  error: string;
  version: number;
  thumb_size: number;
  height: number;
  can_move_band: boolean;
}

export interface CurationOptions {
  measure?: () => { width: number; height: number };
  batchSize?: number;
  /** Delay before a moved slider asks Python for the new band (ms). */
  bandDelay?: number;
}

const CSS = `
.rw-cur { display: flex; flex-direction: column; border: 1px solid var(--rw-border); border-radius: 4px;
  overflow: hidden; min-width: 260px; box-sizing: border-box; position: relative; }
.rw-cur *, .rw-cur *::before, .rw-cur *::after { box-sizing: border-box; }
.rw-cur-bar { display: flex; flex-wrap: wrap; align-items: center; gap: 8px; padding: 6px 8px;
  border-bottom: 1px solid var(--rw-border); background: var(--rw-bg2); }
.rw-cur-title { font-weight: 600; }
.rw-cur button, .rw-cur select { font: inherit; color: var(--rw-fg); background: var(--rw-bg);
  border: 1px solid var(--rw-border); border-radius: 3px; padding: 1px 6px; height: 24px; cursor: pointer; }
.rw-cur button:hover { border-color: var(--rw-accent); }
.rw-cur button:disabled { opacity: 0.5; cursor: default; }
.rw-cur-counts { display: flex; gap: 6px; font-variant-numeric: tabular-nums; }
.rw-cur-count { padding: 1px 6px; border-radius: 10px; border: 1px solid var(--rw-border); }
.rw-cur-count[data-mark="keep"] { border-color: #2e7d32; }
.rw-cur-count[data-mark="spurious"] { border-color: #ef6c00; }
.rw-cur-count[data-mark="exclude"] { border-color: #757575; }
.rw-cur-band { display: grid; grid-template-columns: 1fr auto; gap: 2px 10px; padding: 6px 8px;
  border-bottom: 1px solid var(--rw-border); align-items: center; }
.rw-cur-hist { position: relative; height: 40px; }
.rw-cur-hist canvas { position: absolute; left: 0; top: 0; width: 100%; height: 40px; }
.rw-cur-shade { position: absolute; top: 0; bottom: 0; background: var(--rw-accent-soft);
  border-left: 2px solid var(--rw-accent); border-right: 2px solid var(--rw-accent); pointer-events: none; }
.rw-cur-sliders { position: relative; height: 18px; }
.rw-cur-sliders input { position: absolute; left: 0; width: 100%; margin: 0; pointer-events: none;
  background: transparent; -webkit-appearance: none; appearance: none; height: 18px; }
.rw-cur-sliders input::-webkit-slider-thumb { pointer-events: auto; }
.rw-cur-sliders input::-moz-range-thumb { pointer-events: auto; }
.rw-cur-bandtext { color: var(--rw-fg2); font-variant-numeric: tabular-nums; white-space: nowrap; }
.rw-cur-outside { grid-column: 1 / -1; color: var(--rw-warn); white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.rw-cur-outside:empty { display: none; }
.rw-cur-viewport { position: relative; overflow-y: auto; overflow-x: hidden; outline: none; background: var(--rw-bg); }
.rw-cur-viewport:focus-visible { box-shadow: inset 0 0 0 2px var(--rw-accent); }
.rw-cur-cell { border: 2px solid var(--rw-border); border-radius: 4px; padding: 3px; background: var(--rw-bg2);
  overflow: hidden; user-select: none; cursor: pointer; contain: strict; font-size: 11px; line-height: 14px; }
.rw-cur-cell.rw-cursor { outline: 2px dashed var(--rw-accent); outline-offset: 1px; }
.rw-cur-cell[data-mark="keep"] { border-color: #2e7d32; background: rgba(46, 125, 50, 0.14); }
.rw-cur-cell[data-mark="spurious"] { border-color: #ef6c00; background: rgba(239, 108, 0, 0.16); }
.rw-cur-cell[data-mark="exclude"] { border-color: #757575; opacity: 0.55; }
.rw-cur-cell.rw-pending { border-style: dashed; }
.rw-cur-img { display: block; margin: 0 auto; background: var(--rw-bg3); image-rendering: pixelated; object-fit: contain; }
.rw-cur-line { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; font-variant-numeric: tabular-nums; }
.rw-cur-line.rw-wrong { color: var(--rw-error); }
.rw-cur-line.rw-dim { color: var(--rw-fg2); }
.rw-cur-btns { display: flex; gap: 2px; margin-top: 2px; }
.rw-cur-btns button { flex: 1; height: 18px; padding: 0; font-size: 10px; line-height: 14px; }
.rw-cur-btns button[aria-pressed="true"] { background: var(--rw-accent); color: var(--rw-bg); border-color: var(--rw-accent); }
.rw-cur-help { color: var(--rw-fg2); padding: 3px 8px; border-top: 1px solid var(--rw-border); font-size: 11px; }
.rw-cur-error { color: var(--rw-error); padding: 4px 8px; border-top: 1px solid var(--rw-border); white-space: pre-wrap; }
.rw-cur-error:empty { display: none; }
.rw-cur-waiting { padding: 4px 8px; color: var(--rw-fg2); border-top: 1px solid var(--rw-border); }
.rw-cur-waiting:empty { display: none; }
.rw-cur-empty { padding: 24px; text-align: center; color: var(--rw-fg2); }
`;

const PAD = 6;
const GAP = 6;

interface Items {
  samples: NDArray;
  scores: NDArray | null;
  labels: NDArray | null;
  predictions: NDArray | null;
  groups: NDArray | null;
}

function decodeItems(state: ItemsState | undefined): Items | null {
  if (!state || !state.samples || state.samples.buffer == null) return null;
  const opt = (m?: ArrayMeta) => (m && m.buffer != null ? decodeArray(m) : null);
  return {
    samples: decodeArray(state.samples),
    scores: opt(state.scores),
    labels: opt(state.labels),
    predictions: opt(state.predictions),
    groups: opt(state.groups),
  };
}

/** Positions (into the items) shown for a filter: all, unmarked or one mark. */
export function filterItems(samples: ArrayLike<number>, marks: Record<string, Mark>, filter: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < samples.length; i++) {
    const m = marks[String(samples[i])];
    if (filter === "all" || (filter === "unmarked" && m === undefined) || m === filter) out.push(i);
  }
  return out;
}

/** The fraction of samples below `value`, from a histogram over `range` (linear in a bin). */
export function quantileOf(value: number, counts: ArrayLike<number>, range: number[]): number {
  const n = counts.length;
  let total = 0;
  for (let i = 0; i < n; i++) total += counts[i];
  if (n === 0 || total <= 0) return 0;
  const span = range[1] - range[0];
  if (!(span > 0)) return value < range[0] ? 0 : 1;
  const pos = ((value - range[0]) / span) * n;
  if (pos <= 0) return 0;
  if (pos >= n) return 1;
  const bin = Math.floor(pos);
  let below = 0;
  for (let i = 0; i < bin; i++) below += counts[i];
  return Math.min(1, Math.max(0, (below + counts[bin] * (pos - bin)) / total));
}

export type BandEnd = "low" | "high";

/** The band after one end moved to `value`: the other end keeps its exact value, and
 * the moved end stops at it rather than push it. */
export function moveBandEnd(band: readonly number[], end: BandEnd, value: number): [number, number] {
  const [a, b] = [band[0], band[1]];
  return end === "low" ? [Math.min(value, b), b] : [a, Math.max(value, a)];
}

function bandPair(v: readonly number[] | undefined): [number, number] {
  return [Number(v?.[0] ?? 0), Number(v?.[1] ?? 0)];
}

/** Marked samples that `samples` (the band) does not hold. */
export function marksOutside(samples: ArrayLike<number>, marks: Record<string, Mark>): number {
  const shown = new Set<string>();
  for (let i = 0; i < samples.length; i++) shown.add(String(samples[i]));
  let n = 0;
  for (const s of Object.keys(marks)) if (!shown.has(s)) n++;
  return n;
}

/** Counts per mark over all marks (the band's and earlier bands'). */
export function countMarks(marks: Record<string, Mark>): Record<Mark, number> {
  const c: Record<Mark, number> = { keep: 0, spurious: 0, exclude: 0 };
  for (const m of Object.values(marks)) if (m in c) c[m]++;
  return c;
}

interface Cell extends HTMLElement {
  _img: HTMLImageElement;
  _l1: HTMLElement;
  _l2: HTMLElement;
  _l3: HTMLElement;
  _btns: HTMLButtonElement[];
  _pos: number;
}

export function renderCuration(model: AnyModel<CurationModel>, el: HTMLElement, options: CurationOptions = {}): () => void {
  injectStyle("rw-theme-css", THEME_CSS);
  injectStyle("rw-curation-css", CSS);
  const get = <K extends keyof CurationModel>(k: K): CurationModel[K] => model.get(k);

  const root = h("div", { class: "rw-root rw-cur", attrs: { "data-lm-suppress-shortcuts": "true" } });
  el.appendChild(root);
  applyAutoTheme(root);

  // ----- toolbar -----
  const title = h("span", { class: "rw-cur-title" });
  const countEls: Record<Mark, HTMLElement> = {
    keep: h("span", { class: "rw-cur-count", attrs: { "data-mark": "keep" } }),
    spurious: h("span", { class: "rw-cur-count", attrs: { "data-mark": "spurious" } }),
    exclude: h("span", { class: "rw-cur-count", attrs: { "data-mark": "exclude" } }),
  };
  const counts = h("span", { class: "rw-cur-counts", attrs: { "aria-live": "polite" } }, MARKS.map((m) => countEls[m]));
  const undoButton = h("button", { text: "undo (u)", attrs: { type: "button", class: "rw-cur-undo", title: "undo the last mark" } });
  const filter = h("select", { attrs: { "aria-label": "show", class: "rw-cur-filter" } });
  for (const f of ["all", "unmarked", ...MARKS]) filter.appendChild(h("option", { text: `show: ${f}`, attrs: { value: f } }));
  const status = h("span", { class: "rw-cur-status rw-statusline", attrs: { "aria-live": "polite" } });
  const toolbar = h("div", { class: "rw-cur-bar" }, [title, counts, undoButton, filter, status]);

  // ----- band -----
  const canvas = h("canvas");
  const shade = h("div", { class: "rw-cur-shade" });
  const hist = h("div", { class: "rw-cur-hist" }, [canvas, shade]);
  const lo = h("input", { attrs: { type: "range", min: "0", max: "1", step: "0.01", "aria-label": "band low", class: "rw-cur-lo" } });
  const hi = h("input", { attrs: { type: "range", min: "0", max: "1", step: "0.01", "aria-label": "band high", class: "rw-cur-hi" } });
  const sliders = h("div", { class: "rw-cur-sliders" }, [lo, hi]);
  const bandText = h("div", { class: "rw-cur-bandtext" });
  const outsideNote = h("div", { class: "rw-cur-outside", attrs: { role: "status" } });
  const bandPanel = h("div", { class: "rw-cur-band" }, [h("div", {}, [hist, sliders]), bandText, outsideNote]);

  const viewport = h("div", { class: "rw-cur-viewport", attrs: { tabindex: "0", role: "grid", "aria-label": "band samples" } });
  const empty = h("div", { class: "rw-cur-empty" });
  const errorBox = h("div", { class: "rw-cur-error", attrs: { role: "alert" } });
  const waiting = h("div", { class: "rw-cur-waiting", attrs: { role: "status", "aria-live": "polite" } });
  const help = h("div", {
    class: "rw-cur-help",
    text: "click a sample, then: k keep · s spurious · x exclude · 0 clear · u undo · arrows move",
  });
  root.append(toolbar, bandPanel, viewport, empty, waiting, errorBox, help);

  // ----- state -----
  let items: Items | null = null;
  let order: number[] = [];
  let cursor = -1;
  const pending = new Map<number, Mark | null>();
  let marks: Record<string, Mark> = {};

  const { rpc, fetcher } = pythonImages(model, { batchSize: options.batchSize ?? 48, maxInFlight: 2, cacheSize: 3000 });
  fetcher.onLoad(oncePerTick(() => grid?.refresh()));
  const IMAGE_ERROR = "Could not load ";
  fetcher.onError((keys, err) => setText(errorBox, `${IMAGE_ERROR}${keys.length} image(s): ${err.message}`));
  fetcher.onLoad(() => {
    if (errorBox.textContent?.startsWith(IMAGE_ERROR)) setText(errorBox, "");
  });
  const stopWaiting = rpc?.onWait((s) => setText(waiting, waitingText(s)));

  // ----- grid -----
  let grid: VirtualGrid | null = null;
  let geometry = "";
  function thumb(): number {
    const t = Number(get("thumb_size"));
    return Number.isFinite(t) && t >= 24 ? Math.min(t, 256) : 72;
  }
  function ensureGrid() {
    const t = thumb();
    const cellWidth = Math.max(104, t + 10);
    const cellHeight = t + 10 + 3 * 14 + 22;
    const h0 = Number(get("height"));
    viewport.style.height = `${Number.isFinite(h0) && h0 > 100 ? h0 : 480}px`;
    const key = `${cellWidth}x${cellHeight}`;
    if (grid && key === geometry) return;
    grid?.dispose();
    geometry = key;
    grid = new VirtualGrid(viewport, {
      cellWidth,
      cellHeight,
      gap: GAP,
      padding: PAD,
      overscan: 1,
      measure: options.measure,
      createCell: () => createCell(t),
      updateCell: (c, i) => updateCell(c as Cell, i),
      onRender: (start, end) => {
        if (!items) return;
        const keys: number[] = [];
        for (let i = start; i < end; i++) keys.push(items.samples.data[order[i]]);
        fetcher.want(keys);
      },
    });
    grid.setCount(order.length);
  }

  function createCell(t: number): Cell {
    const img = h("img", { class: "rw-cur-img", attrs: { alt: "", draggable: "false" } });
    img.width = t;
    img.height = t;
    const l1 = h("div", { class: "rw-cur-line" });
    const l2 = h("div", { class: "rw-cur-line" });
    const l3 = h("div", { class: "rw-cur-line rw-dim" });
    const btns = MARKS.map((m) =>
      h("button", { text: BUTTON_TEXT[m], title: `${m} (${BUTTON_TEXT[m].toLowerCase()})`, attrs: { type: "button", "data-set": m, "aria-pressed": "false", tabindex: "-1" } }),
    );
    const cell = h("div", { class: "rw-cur-cell", attrs: { role: "gridcell" } }, [img, l1, l2, l3, h("div", { class: "rw-cur-btns" }, btns)]) as unknown as Cell;
    cell._img = img;
    cell._l1 = l1;
    cell._l2 = l2;
    cell._l3 = l3;
    cell._btns = btns;
    cell._pos = -1;
    return cell;
  }

  const names = (list: string[] | undefined, i: number) => (list && i >= 0 && i < list.length ? list[i] : String(i));

  function markOf(sample: number): { mark: Mark | undefined; isPending: boolean } {
    if (pending.has(sample)) return { mark: pending.get(sample) ?? undefined, isPending: true };
    return { mark: marks[String(sample)], isPending: false };
  }

  function updateCell(cell: Cell, i: number) {
    if (!items) return;
    const p = order[i];
    const sample = items.samples.data[p];
    cell._pos = i;
    cell.dataset.index = String(i);
    cell.dataset.sample = String(sample);
    const { mark, isPending } = markOf(sample);
    if (mark) cell.dataset.mark = mark;
    else delete cell.dataset.mark;
    cell.classList.toggle("rw-pending", isPending);
    cell.classList.toggle("rw-cursor", i === cursor);
    cell.setAttribute("aria-selected", i === cursor ? "true" : "false");
    for (const b of cell._btns) b.setAttribute("aria-pressed", b.dataset.set === mark ? "true" : "false");
    const score = items.scores ? items.scores.data[p] : NaN;
    setText(cell._l1, `#${sample} · ${fmt(score)}`);
    cell._l1.title = `sample ${sample}, ${get("score_name") || "score"} ${score}`;
    const classNames = get("class_names");
    const y = items.labels ? items.labels.data[p] : -1;
    const yhat = items.predictions ? items.predictions.data[p] : -1;
    const text2 = y === yhat ? names(classNames, y) : `${names(classNames, y)} → ${names(classNames, yhat)}`;
    setText(cell._l2, text2);
    cell._l2.title = `label ${names(classNames, y)}, predicted ${names(classNames, yhat)}`;
    cell._l2.classList.toggle("rw-wrong", y !== yhat);
    const g = items.groups ? items.groups.data[p] : -1;
    setText(cell._l3, g >= 0 ? names(get("group_names"), g) : "");
    cell._l3.title = cell._l3.textContent ?? "";
    const url = fetcher.get(sample);
    if (url !== undefined) {
      if (cell._img.getAttribute("src") !== url) cell._img.src = url;
    } else if (cell._img.hasAttribute("src")) cell._img.removeAttribute("src");
  }

  function refreshOrder() {
    const cursorSample = items && cursor >= 0 && cursor < order.length ? items.samples.data[order[cursor]] : null;
    order = items ? filterItems(items.samples.data, marks, filter.value) : [];
    cursor = -1;
    if (cursorSample !== null && items) {
      const at = order.findIndex((p) => items!.samples.data[p] === cursorSample);
      cursor = at;
    }
    ensureGrid();
    grid?.setCount(order.length);
    setText(empty, items && items.samples.data.length === 0 ? "no samples in this band" : order.length === 0 ? `no ${filter.value} samples in this band` : "");
    empty.style.display = order.length === 0 ? "" : "none";
  }

  function updateCounts() {
    const c = countMarks(marks);
    for (const m of MARKS) setText(countEls[m], `${m} ${c[m]}`);
    updateOutside();
  }

  function updateOutside() {
    const n = items ? marksOutside(items.samples.data, marks) : 0;
    const where = get("file") ? "kept in the file" : "kept in memory";
    const text = n === 0 ? "" : `${n} marked sample${n === 1 ? " is" : "s are"} outside the band (${where})`;
    setText(outsideNote, text);
    outsideNote.title = text;
  }

  // ----- band panel -----
  function drawBand() {
    const { counts: countsArr, range } = histState();
    const width = options.measure ? Math.max(100, options.measure().width - 200) : hist.clientWidth;
    // hidden: keep the last picture; the visibility watcher redraws once the band shows
    if (!drawable(width, 40)) return;
    drawHistogram(canvas as HTMLCanvasElement, countsArr, width, 40, {
      bar: cssVar(root, "--rw-fg2", "#888"),
      baseline: cssVar(root, "--rw-border", "#999"),
    });
    const limits = get("limits") ?? [0, 0];
    const span = range[1] - range[0] || 1;
    const a = Math.max(0, Math.min(1, (limits[0] - range[0]) / span));
    const b = Math.max(0, Math.min(1, (limits[1] - range[0]) / span));
    shade.style.left = `${a * 100}%`;
    shade.style.width = `${Math.max(0, b - a) * 100}%`;
  }

  // The sliders move over score values, aligned with the histogram above them; for a
  // band of quantiles the values are turned into quantiles with the histogram's
  // cumulative counts (linear inside a bin), and Python places the exact band.
  function histState(): { counts: ArrayLike<number>; range: number[] } {
    const state = get("histogram") ?? {};
    let counts: ArrayLike<number> = [];
    try {
      if (state.counts && state.counts.buffer != null) counts = decodeArray(state.counts).data;
    } catch {
      counts = [];
    }
    return { counts, range: state.range ?? [0, 1] };
  }

  function syncSliders() {
    const { range } = histState();
    const step = String((range[1] - range[0]) / 500 || 0.01);
    for (const s of [lo, hi]) {
      s.min = String(range[0]);
      s.max = String(range[1]);
      s.step = step;
      s.disabled = !get("can_move_band");
    }
    const limits = get("limits") ?? [0, 0];
    if (document.activeElement !== lo) lo.value = String(limits[0]);
    if (document.activeElement !== hi) hi.value = String(limits[1]);
    const band = get("band") ?? [0.25, 0.75];
    updateBandText(band[0], band[1], limits[0], limits[1]);
  }

  function updateBandText(a: number, b: number, va: number, vb: number, waiting = false) {
    const n = items ? items.samples.data.length : 0;
    const score = get("score_name") || "score";
    const what = get("absolute") ? `${score} ${fmt(va)} … ${fmt(vb)}` : `quantiles ${fmt(a)} – ${fmt(b)} → ${score} ${fmt(va)} … ${fmt(vb)}`;
    setText(bandText, `band ${what} · ${waiting ? "…" : `${n} samples`}`);
  }

  // A handle moves only its own end: the other end keeps its exact value (never read
  // back from its slider, whose position is rounded to the slider's step).
  let bandTimer: ReturnType<typeof setTimeout> | null = null;
  let bandToken = 0;
  let asked: { band: [number, number]; limits: [number, number] } | null = null;
  const moved = new Set<BandEnd>();
  function onSlider(ev: Event) {
    const end: BandEnd = ev.target === lo ? "low" : "high";
    const slider = end === "low" ? lo : hi;
    const base = asked ?? { band: bandPair(get("band")), limits: bandPair(get("limits")) };
    const otherValue = end === "low" ? base.limits[1] : base.limits[0];
    let v = Number(slider.value);
    if (end === "low" ? v > otherValue : v < otherValue) {
      v = otherValue;
      slider.value = String(v);
    }
    const { counts, range } = histState();
    const q = get("absolute") ? v : Math.round(quantileOf(v, counts, range) * 1000) / 1000;
    const band = moveBandEnd(base.band, end, q);
    const limits = moveBandEnd(base.limits, end, v);
    asked = { band, limits };
    moved.add(end);
    updateBandText(band[0], band[1], limits[0], limits[1], true);
    if (bandTimer) clearTimeout(bandTimer);
    bandTimer = setTimeout(() => requestBand(band), options.bandDelay ?? 250);
  }
  function requestBand(band: [number, number]) {
    if (!rpc) return;
    const token = ++bandToken;
    const ends = [...moved];
    moved.clear();
    setText(status, "selecting…");
    rpc
      .request("band", { band, moved: ends })
      .then(() => {
        if (token === bandToken) setText(status, "");
      })
      .catch((e: Error) => {
        if (token !== bandToken) return;
        asked = null;
        setText(status, "");
        setText(errorBox, `Could not move the band: ${e.message}`);
        syncSliders();
      });
  }
  lo.addEventListener("input", onSlider);
  hi.addEventListener("input", onSlider);

  // ----- marking -----
  function setMark(sample: number, mark: Mark | null) {
    const current = markOf(sample).mark ?? null;
    if (current === mark) return;
    pending.set(sample, mark);
    grid?.refresh();
    if (!rpc) return;
    setText(status, "saving…");
    rpc
      .request("mark", { sample, mark })
      .then(() => {
        if (pending.get(sample) === mark) pending.delete(sample);
        if (pending.size === 0) setText(status, "saved");
        setText(errorBox, "");
        grid?.refresh();
      })
      .catch((e: Error) => {
        pending.delete(sample);
        setText(status, "");
        setText(errorBox, `Not saved: ${e.message}`);
        grid?.refresh();
      });
  }

  function undo() {
    if (!rpc) return;
    setText(status, "undoing…");
    rpc
      .request("undo", {})
      .then(({ content }) => setText(status, content.sample === null ? "nothing to undo" : `undid #${content.sample}`))
      .catch((e: Error) => {
        setText(status, "");
        setText(errorBox, `Undo failed: ${e.message}`);
      });
  }

  function moveCursor(next: number) {
    const prev = cursor;
    cursor = next;
    if (prev >= 0) grid?.refreshIndex(prev);
    if (cursor >= 0) {
      grid?.scrollToIndex(cursor);
      grid?.refreshIndex(cursor);
    }
  }

  viewport.addEventListener("click", (ev) => {
    const t = ev.target as HTMLElement;
    const cell = t.closest?.(".rw-cur-cell") as Cell | null;
    if (!cell || !items || cell._pos < 0) return;
    viewport.focus({ preventScroll: true });
    moveCursor(cell._pos);
    const set = t.closest?.("button")?.getAttribute("data-set") as Mark | null;
    if (set) {
      const sample = items.samples.data[order[cell._pos]];
      setMark(sample, markOf(sample).mark === set ? null : set);
    }
  });

  viewport.addEventListener("keydown", (ev) => {
    if (!items || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const key = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
    if (key === "u") {
      ev.preventDefault();
      undo();
      return;
    }
    if (key in KEY_TO_MARK) {
      ev.preventDefault();
      if (cursor < 0 && order.length > 0) moveCursor(0);
      if (cursor < 0) return;
      const sample = items.samples.data[order[cursor]];
      setMark(sample, KEY_TO_MARK[key]);
      // move on to the next sample, as in any labelling tool (not after clearing)
      if (KEY_TO_MARK[key] !== null && cursor + 1 < order.length && filter.value === "all") moveCursor(cursor + 1);
      return;
    }
    const r = gridKey(ev, cursor, order.length, grid?.columns ?? 1, grid?.pageRows ?? 3);
    if (!r.handled) return;
    ev.preventDefault();
    if (r.action === "move" || r.action === "range") moveCursor(r.cursor);
    else if (r.action === "escape") moveCursor(-1);
  });

  // keys typed in the widget belong to it, not to the notebook (but let run-cell through)
  root.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.shiftKey || ev.ctrlKey || ev.metaKey)) return;
    ev.stopPropagation();
  });
  undoButton.addEventListener("click", () => undo());
  filter.addEventListener("change", () => {
    refreshOrder();
    viewport.focus({ preventScroll: true });
  });

  // ----- model events -----
  function loadItems() {
    try {
      items = decodeItems(get("items"));
    } catch (e) {
      items = null;
      setText(errorBox, `Could not read the band: ${(e as Error).message}`);
    }
    geometry = "";
    cursor = -1;
    refreshOrder();
    syncSliders();
    drawBand();
    updateOutside();
  }
  function loadMarks() {
    marks = { ...(get("marks") ?? {}) };
    for (const [s, m] of [...pending]) if ((marks[String(s)] ?? null) === m) pending.delete(s);
    updateCounts();
    if (filter.value !== "all") refreshOrder();
    else grid?.refresh();
  }
  function loadTexts() {
    setText(title, get("title") ?? "");
    const file = get("file") ?? "";
    status.title = file ? `saved to ${file}` : "marks kept in memory (no file)";
    if (!status.textContent) setText(status, file ? file.split(/[\\/]/).pop() ?? file : "in memory");
    setText(errorBox, get("error") ?? "");
  }
  const handlers: Handlers = [
    ["change:items", loadItems],
    ["change:version", () => {}],
    ["change:marks", loadMarks],
    ["change:band", () => {
      asked = null;
      syncSliders();
    }],
    ["change:limits", () => {
      drawBand();
      syncSliders();
    }],
    ["change:histogram", drawBand],
    ["change:title", loadTexts],
    ["change:file", loadTexts],
    ["change:error", loadTexts],
    ["change:thumb_size", () => {
      geometry = "";
      ensureGrid();
      grid?.setCount(order.length);
    }],
    ["change:height", ensureGrid],
    ["change:can_move_band", syncSliders],
  ];
  const unlisten = listen(model, handlers);
  const stopTheme = watchTheme(() => {
    applyAutoTheme(root);
    drawBand();
  });
  const stopVisibility = watchVisibility(hist, drawBand);

  marks = { ...(get("marks") ?? {}) };
  updateCounts();
  loadTexts();
  loadItems();
  const raf = typeof requestAnimationFrame === "function" ? requestAnimationFrame : (cb: () => void) => setTimeout(cb, 16);
  raf(() => drawBand());

  return () => {
    unlisten();
    stopWaiting?.();
    stopTheme();
    stopVisibility();
    if (bandTimer) clearTimeout(bandTimer);
    grid?.dispose();
    fetcher.dispose();
    rpc?.dispose();
    clear(root);
    root.remove();
  };
}

export default {
  render({ model, el }: RenderProps<CurationModel>) {
    return renderCuration(model, el);
  },
};
