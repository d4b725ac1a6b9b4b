// NeuronGallery: one card per neuron (or concept) with its label, scores, a small
// activation histogram and its images (fetched lazily for the cards on screen).
// Python side: repwidgets/widgets/gallery.py.

import type { AnyModel, RenderProps } from "@anywidget/types";
import { bytesToUrl, decodeArray, row, type ArrayMeta, type NDArray } from "./lib/codec";
import { h, setText, clear } from "./lib/dom";
import { keyId, type Key } from "./lib/fetcher";
import { fmt } from "./lib/format";
import { drawHistogram } from "./lib/histogram";
import { pythonImages, waitingText } from "./lib/images";
import { gridKey, suppressNotebookShortcuts } from "./lib/keyboard";
import { listen, oncePerTick, type Handlers } from "./lib/listen";
import { Selection, clickModifiers } from "./lib/selection";
import { THEME_CSS, applyAutoTheme, cssVar, injectStyle, watchTheme } from "./lib/theme";
import { VirtualGrid } from "./lib/vgrid";

export interface Card {
  id: number;
  label?: string;
  scores?: Record<string, number | null>;
  images?: Key[];
}

export interface HistogramState {
  counts?: ArrayMeta;
  ranges?: ArrayMeta;
}

export interface GalleryModel {
  cards: Card[];
  score_names: string[];
  histograms: HistogramState | null;
  selected: number[];
  sort_by: string;
  descending: boolean;
  query: string;
  title: string;
  noun: string;
  thumb_size: number;
  height: number;
  request_patience: number;
}

export interface GalleryOptions {
  /** Viewport size override (tests: jsdom has no layout). */
  measure?: () => { width: number; height: number };
  batchSize?: number;
  maxInFlight?: number;
  cacheSize?: number;
}

const CSS = `
.rw-gallery { display: flex; flex-direction: column; border: 1px solid var(--rw-border); border-radius: 4px;
  position: relative; overflow: hidden; min-width: 220px; box-sizing: border-box; }
.rw-gallery *, .rw-gallery *::before, .rw-gallery *::after { box-sizing: border-box; }
.rw-toolbar { display: flex; flex-wrap: wrap; align-items: center; gap: 6px; padding: 6px 8px;
  border-bottom: 1px solid var(--rw-border); background: var(--rw-bg2); }
.rw-title { font-weight: 600; margin-right: 4px; }
.rw-toolbar input, .rw-toolbar select, .rw-toolbar button, .rw-lightbox button {
  font: inherit; color: var(--rw-fg); background: var(--rw-bg); border: 1px solid var(--rw-border);
  border-radius: 3px; padding: 2px 6px; height: 24px; }
.rw-toolbar input { width: 14em; }
.rw-toolbar button { cursor: pointer; }
.rw-toolbar button:hover, .rw-lightbox button:hover { border-color: var(--rw-accent); }
.rw-status { color: var(--rw-fg2); margin-left: auto; white-space: nowrap; }
.rw-viewport { position: relative; overflow-y: auto; overflow-x: hidden; outline: none; background: var(--rw-bg);
  scrollbar-gutter: stable; }
.rw-viewport:focus-visible { box-shadow: inset 0 0 0 2px var(--rw-accent); }
.rw-card { border: 1px solid var(--rw-border); border-radius: 4px; padding: 6px 8px; background: var(--rw-bg2);
  cursor: pointer; overflow: hidden; user-select: none; contain: strict; }
.rw-card:hover { border-color: var(--rw-fg2); }
.rw-card.rw-selected { border-color: var(--rw-accent); box-shadow: 0 0 0 1px var(--rw-accent); background: var(--rw-accent-soft); }
.rw-card.rw-cursor { outline: 2px dashed var(--rw-accent); outline-offset: 1px; }
.rw-card-head { display: -webkit-box; -webkit-box-orient: vertical; -webkit-line-clamp: 2; line-clamp: 2;
  overflow: hidden; height: 32px; line-height: 16px; overflow-wrap: anywhere; }
.rw-card-id { font-family: var(--rw-mono); font-weight: 600; margin-right: 6px; }
.rw-card-scores { color: var(--rw-fg2); font-size: 0.9em; height: 16px; margin-top: 2px; white-space: nowrap;
  overflow: hidden; text-overflow: ellipsis; font-variant-numeric: tabular-nums; }
.rw-thumbs { display: grid; gap: 2px; margin-top: 4px; }
.rw-thumb { display: block; background: var(--rw-bg3); object-fit: contain; image-rendering: pixelated;
  border-radius: 2px; cursor: zoom-in; }
.rw-thumb:not([src]) { visibility: visible; }
.rw-thumb.rw-failed { outline: 1px solid var(--rw-error); }
.rw-hist { display: block; margin-top: 4px; }
.rw-hist-range { display: flex; justify-content: space-between; color: var(--rw-fg2); font-size: 0.8em;
  height: 13px; line-height: 13px; font-variant-numeric: tabular-nums; }
.rw-waiting { padding: 4px 8px; color: var(--rw-fg2); border-top: 1px solid var(--rw-border); }
.rw-waiting:empty { display: none; }
.rw-message { padding: 4px 8px; color: var(--rw-error); border-top: 1px solid var(--rw-border); white-space: pre-wrap; }
.rw-message:empty { display: none; }
.rw-empty { padding: 24px; text-align: center; color: var(--rw-fg2); }
.rw-lightbox { position: absolute; inset: 0; background: rgba(0, 0, 0, 0.45); display: flex; align-items: center;
  justify-content: center; z-index: 10; }
.rw-lightbox[hidden] { display: none; }
.rw-lightbox-panel { background: var(--rw-bg); color: var(--rw-fg); border: 1px solid var(--rw-border);
  border-radius: 6px; padding: 12px; display: flex; gap: 12px; max-width: calc(100% - 24px);
  max-height: calc(100% - 24px); overflow: auto; box-shadow: 0 4px 16px rgba(0, 0, 0, 0.3); }
.rw-lightbox-img { width: 224px; height: 224px; object-fit: contain; image-rendering: pixelated; background: var(--rw-bg3); flex: none; }
.rw-lightbox-side { display: flex; flex-direction: column; gap: 6px; min-width: 180px; }
.rw-lightbox-head { display: flex; justify-content: space-between; align-items: center; gap: 8px; font-weight: 600; }
.rw-details { display: grid; grid-template-columns: auto 1fr; gap: 2px 10px; margin: 0; }
.rw-details dt { color: var(--rw-fg2); }
.rw-details dd { margin: 0; overflow-wrap: anywhere; font-variant-numeric: tabular-nums; }
`;

const PAD = 8;
const GAP = 8;
const IMG_GAP = 2;
/** Narrowest card: room for an id and a label beside small thumbnails. */
const MIN_CARD = 200;
/** Card padding and border, left and right together. */
const CARD_INSET = 18;
const HEAD_H = 32;
const DEFAULT_THUMB = 96;

/** Decoded histograms: counts [n_cards, bins] and per-card [min, max]. */
interface Histograms {
  counts: NDArray;
  ranges: NDArray | null;
}

function decodeHistograms(state: HistogramState | null | undefined, n: number): Histograms | null {
  if (!state || !state.counts || state.counts.buffer === undefined || state.counts.buffer === null) return null;
  const counts = decodeArray(state.counts);
  if (counts.shape.length !== 2 || counts.shape[0] !== n) return null;
  const ranges =
    state.ranges && state.ranges.buffer !== undefined && state.ranges.buffer !== null ? decodeArray(state.ranges) : null;
  return { counts, ranges };
}

/** Indices into `cards` of the cards matching `query`, ordered by `sortBy`. */
export function viewOrder(cards: readonly Card[], query: string, sortBy: string, descending: boolean): number[] {
  const terms = query.toLowerCase().split(/\s+/).filter((t) => t.length > 0);
  const idx: number[] = [];
  for (let i = 0; i < cards.length; i++) {
    if (terms.length === 0) {
      idx.push(i);
      continue;
    }
    const c = cards[i];
    const text = `#${c.id} ${c.label ?? ""}`.toLowerCase();
    if (terms.every((t) => text.includes(t))) idx.push(i);
  }
  if (sortBy) {
    const val = (i: number): number => {
      const v = cards[i].scores?.[sortBy];
      return typeof v === "number" && Number.isFinite(v) ? v : NaN;
    };
    const sign = descending ? -1 : 1;
    idx.sort((a, b) => {
      const va = val(a);
      const vb = val(b);
      const na = Number.isNaN(va);
      const nb = Number.isNaN(vb);
      if (na || nb) return na === nb ? a - b : na ? 1 : -1; // missing scores last
      return va === vb ? a - b : sign * (va - vb);
    });
  }
  return idx;
}

interface CardCell extends HTMLElement {
  _head: HTMLElement;
  _id: HTMLElement;
  _label: HTMLElement;
  _scores: HTMLElement;
  _thumbs: HTMLElement;
  _imgs: HTMLImageElement[];
  _hist: HTMLCanvasElement | null;
  _hmin: HTMLElement | null;
  _hmax: HTMLElement | null;
  _index: number;
}

export function renderGallery(model: AnyModel<GalleryModel>, el: HTMLElement, options: GalleryOptions = {}): () => void {
  injectStyle("rw-theme-css", THEME_CSS);
  injectStyle("rw-gallery-css", CSS);

  const get = <K extends keyof GalleryModel>(k: K): GalleryModel[K] => model.get(k);
  const root = h("div", { class: "rw-root rw-gallery" });
  el.appendChild(root);
  applyAutoTheme(root);

  // ----- toolbar -----
  const title = h("span", { class: "rw-title" });
  const search = h("input", {
    attrs: { type: "search", placeholder: "filter labels…", "aria-label": "filter by label", spellcheck: "false" },
  });
  const sortSelect = h("select", { attrs: { "aria-label": "sort by" } });
  const orderButton = h("button", { attrs: { type: "button", "aria-label": "sort order" } });
  const clearButton = h("button", { text: "clear", attrs: { type: "button", title: "clear the selection" } });
  const status = h("span", { class: "rw-status", attrs: { "aria-live": "polite" } });
  const toolbar = h("div", { class: "rw-toolbar" }, [title, search, sortSelect, orderButton, clearButton, status]);

  const viewport = h("div", {
    class: "rw-viewport",
    attrs: { tabindex: "0", role: "listbox", "aria-multiselectable": "true" },
  });
  const empty = h("div", { class: "rw-empty" });
  const message = h("div", { class: "rw-message", attrs: { role: "status" } });
  const waiting = h("div", { class: "rw-waiting", attrs: { role: "status", "aria-live": "polite" } });

  // ----- lightbox -----
  const lbImg = h("img", { class: "rw-lightbox-img", attrs: { alt: "" } });
  const lbTitle = h("span");
  const lbClose = h("button", { text: "×", attrs: { type: "button", "aria-label": "close" } });
  const lbDetails = h("dl", { class: "rw-details" });
  const lbStatus = h("div", { class: "rw-status" });
  const lbPanel = h("div", { class: "rw-lightbox-panel", attrs: { role: "dialog", "aria-modal": "true" } }, [
    lbImg,
    h("div", { class: "rw-lightbox-side" }, [h("div", { class: "rw-lightbox-head" }, [lbTitle, lbClose]), lbDetails, lbStatus]),
  ]);
  const lightbox = h("div", { class: "rw-lightbox" }, [lbPanel]);
  lightbox.hidden = true;

  root.append(toolbar, viewport, empty, waiting, message, lightbox);
  // arrows and space reach the grid, and typing in the filter box runs no notebook command
  suppressNotebookShortcuts(viewport, search, sortSelect, orderButton, clearButton, lbClose);

  // ----- state -----
  let cards: Card[] = [];
  let order: number[] = [];
  let orderIds: number[] = [];
  let posOfId = new Map<number, number>();
  let hists: Histograms | null = null;
  let cursor = -1;
  let k = 1;
  const selection = new Selection(get("selected") ?? []);
  let lbToken = 0;
  let lbLoading = false;
  let lbBigUrl: string | null = null;

  // ----- transport -----
  const { rpc, fetcher } = pythonImages(model, { batchSize: options.batchSize ?? 48, maxInFlight: options.maxInFlight ?? 2, cacheSize: options.cacheSize ?? 6000 });

  // keys whose last request failed; their message goes once they load after all
  const failedKeys = new Set<string>();
  let lastImageError = "";
  const showImageErrors = () =>
    setText(message, failedKeys.size ? `Could not load ${failedKeys.size} image(s): ${lastImageError}` : "");
  const refill = oncePerTick(() => {
    showImageErrors();
    fillImages();
  });
  fetcher.onLoad((key) => {
    failedKeys.delete(keyId(key));
    refill();
  });
  fetcher.onError((keys, err) => {
    keys.forEach((key) => failedKeys.add(keyId(key)));
    lastImageError = err.message;
    refill();
  });
  const stopWaiting = rpc?.onWait((s) => {
    const text = waitingText(s);
    setText(waiting, text);
    if (!lightbox.hidden && lbLoading) setText(lbStatus, text || "loading details…");
  });

  // ----- grid -----
  let grid: VirtualGrid | null = null;
  let geometryKey = "";

  function thumbSize(): number {
    const t = Number(get("thumb_size"));
    return Number.isFinite(t) && t >= 16 ? Math.min(t, 512) : DEFAULT_THUMB;
  }

  /** Card geometry: `cellWidth` is the narrowest card; the grid widens cards to fill rows. */
  function layout() {
    const t = thumbSize();
    const imgCols = Math.max(1, Math.min(k, 4));
    const imgRows = Math.ceil(Math.max(k, 1) / imgCols);
    const thumbsH = k > 0 ? imgRows * t + (imgRows - 1) * IMG_GAP : 0;
    const histH = hists ? 4 + 24 + 13 : 0;
    const cellWidth = Math.max(MIN_CARD, imgCols * t + (imgCols - 1) * IMG_GAP + CARD_INSET);
    const cellHeight = 6 + HEAD_H + 2 + 16 + (k > 0 ? 4 + thumbsH : 0) + histH + 8;
    return { t, imgCols, cellWidth, cellHeight };
  }

  function histWidth(): number {
    return (grid?.cellWidthNow ?? layout().cellWidth) - CARD_INSET;
  }

  function ensureGrid() {
    const g = layout();
    const key = `${g.cellWidth}x${g.cellHeight}x${g.t}x${g.imgCols}x${hists ? 1 : 0}`;
    const h0 = Number(get("height"));
    viewport.style.height = `${Number.isFinite(h0) && h0 > 80 ? h0 : 520}px`;
    if (grid && key === geometryKey) return;
    const scrollTop = viewport.scrollTop;
    grid?.dispose();
    geometryKey = key;
    grid = new VirtualGrid(viewport, {
      cellWidth: g.cellWidth,
      cellHeight: g.cellHeight,
      gap: GAP,
      padding: PAD,
      overscan: 1,
      stretch: true,
      measure: options.measure,
      createCell: () => createCell(g.t, g.imgCols),
      updateCell: (cell, i) => updateCell(cell as CardCell, i),
      onRender: (start, end) => wantImages(start, end),
    });
    grid.setCount(order.length);
    viewport.scrollTop = scrollTop;
    grid.update();
  }

  function createCell(t: number, imgCols: number): CardCell {
    const id = h("span", { class: "rw-card-id" });
    const label = h("span", { class: "rw-card-label" });
    const head = h("div", { class: "rw-card-head" }, [id, label]);
    const scores = h("div", { class: "rw-card-scores" });
    const thumbs = h("div", { class: "rw-thumbs" });
    thumbs.style.gridTemplateColumns = `repeat(${imgCols}, ${t}px)`;
    const cell = h("div", { class: "rw-card", attrs: { role: "option" } }, [head, scores, thumbs]) as unknown as CardCell;
    cell._head = head;
    cell._id = id;
    cell._label = label;
    cell._scores = scores;
    cell._thumbs = thumbs;
    cell._imgs = [];
    cell._index = -1;
    if (k === 0) thumbs.style.display = "none";
    for (let j = 0; j < k; j++) {
      const img = h("img", { class: "rw-thumb", attrs: { alt: "", draggable: "false", decoding: "async" } });
      img.width = t;
      img.height = t;
      thumbs.appendChild(img);
      cell._imgs.push(img);
    }
    if (hists) {
      const canvas = h("canvas", { class: "rw-hist" });
      canvas.style.height = "24px";
      const hmin = h("span");
      const hmax = h("span");
      cell.append(canvas, h("div", { class: "rw-hist-range" }, [hmin, hmax]));
      cell._hist = canvas;
      cell._hmin = hmin;
      cell._hmax = hmax;
    } else {
      cell._hist = null;
      cell._hmin = null;
      cell._hmax = null;
    }
    return cell;
  }

  function scoreText(card: Card): string {
    const names = get("score_names") ?? [];
    const parts: string[] = [];
    for (const n of names) {
      const v = card.scores?.[n];
      if (v === undefined) continue;
      parts.push(`${n} ${fmt(v)}`);
    }
    return parts.join(" · ");
  }

  let histStyle = { bar: "#1976d2", baseline: "#999" };
  function readHistStyle() {
    histStyle = { bar: cssVar(root, "--rw-accent", "#1976d2"), baseline: cssVar(root, "--rw-border", "#999") };
  }

  function updateCell(cell: CardCell, i: number) {
    const ci = order[i];
    const card = cards[ci];
    cell._index = i;
    cell.dataset.index = String(i);
    cell.dataset.id = String(card.id);
    const sel = selection.has(card.id);
    cell.classList.toggle("rw-selected", sel);
    cell.classList.toggle("rw-cursor", i === cursor);
    cell.setAttribute("aria-selected", sel ? "true" : "false");
    setText(cell._id, `#${card.id}`);
    const label = card.label ?? "";
    setText(cell._label, label);
    // the whole label on hover, when two lines cut it
    cell._head.title = label ? `#${card.id} ${label}` : `#${card.id}`;
    cell._label.title = label;
    const st = scoreText(card);
    setText(cell._scores, st);
    cell._scores.title = st;
    const keys = card.images ?? [];
    for (let j = 0; j < cell._imgs.length; j++) {
      const img = cell._imgs[j];
      if (j < keys.length) {
        img.style.visibility = "";
        img.dataset.key = keyId(keys[j]);
        img.dataset.slot = String(j);
        setImage(img, keys[j]);
      } else {
        img.style.visibility = "hidden";
        delete img.dataset.key;
        img.removeAttribute("src");
      }
    }
    if (cell._hist && hists) {
      const w = histWidth();
      cell._hist.style.width = `${w}px`;
      drawHistogram(cell._hist, row(hists.counts, ci), w, 24, histStyle);
      if (hists.ranges && cell._hmin && cell._hmax) {
        const r = row(hists.ranges, ci);
        setText(cell._hmin, fmt(r[0]));
        setText(cell._hmax, fmt(r[1]));
      }
    }
  }

  function setImage(img: HTMLImageElement, key: Key) {
    const url = fetcher.get(key);
    if (url !== undefined) {
      if (img.getAttribute("src") !== url) img.src = url;
      img.classList.remove("rw-failed");
    } else {
      if (img.hasAttribute("src")) img.removeAttribute("src");
      img.classList.toggle("rw-failed", fetcher.error(key) !== undefined);
    }
  }

  function fillImages() {
    if (!grid) return;
    const { start, end } = grid.rendered;
    for (let i = start; i < end; i++) {
      const cell = grid.cellAt(i) as CardCell | undefined;
      if (!cell) continue;
      const keys = cards[order[i]].images ?? [];
      for (let j = 0; j < Math.min(keys.length, cell._imgs.length); j++) setImage(cell._imgs[j], keys[j]);
    }
  }

  function wantImages(start: number, end: number) {
    const keys: Key[] = [];
    for (let i = start; i < end; i++) for (const key of cards[order[i]].images ?? []) keys.push(key);
    fetcher.want(keys);
  }

  // ----- data -----
  function loadCards() {
    cards = Array.isArray(get("cards")) ? get("cards") : [];
    k = 0;
    for (const c of cards) k = Math.max(k, c.images?.length ?? 0);
    try {
      hists = decodeHistograms(get("histograms"), cards.length);
    } catch (e) {
      hists = null;
      setText(message, `Could not read histograms: ${(e as Error).message}`);
    }
    readHistStyle();
    fillSortOptions();
    recomputeOrder();
  }

  function fillSortOptions() {
    const names = get("score_names") ?? [];
    clear(sortSelect);
    sortSelect.appendChild(h("option", { text: "order: id", attrs: { value: "" } }));
    for (const n of names) sortSelect.appendChild(h("option", { text: `sort: ${n}`, attrs: { value: n } }));
    sortSelect.value = names.includes(get("sort_by")) ? get("sort_by") : "";
    sortSelect.disabled = names.length === 0;
  }

  function recomputeOrder() {
    const sortBy = (get("score_names") ?? []).includes(get("sort_by")) ? get("sort_by") : "";
    const cursorId = cursor >= 0 && cursor < orderIds.length ? orderIds[cursor] : null;
    order = viewOrder(cards, get("query") ?? "", sortBy, get("descending") ?? true);
    orderIds = order.map((i) => cards[i].id);
    posOfId = new Map(orderIds.map((id, i) => [id, i]));
    cursor = cursorId !== null ? posOfId.get(cursorId) ?? -1 : -1;
    ensureGrid();
    grid?.setCount(order.length);
    syncControls();
  }

  function syncControls() {
    const t = get("title") ?? "";
    setText(title, t);
    title.style.display = t ? "" : "none";
    if (document.activeElement !== search && search.value !== (get("query") ?? "")) search.value = get("query") ?? "";
    const desc = get("descending") ?? true;
    setText(orderButton, desc ? "↓" : "↑");
    orderButton.title = desc ? "descending (click for ascending)" : "ascending (click for descending)";
    orderButton.disabled = !sortSelect.value;
    updateStatus();
    const noun = get("noun") || "items";
    if (cards.length === 0) setText(empty, `no ${noun}`);
    else if (order.length === 0) setText(empty, `no ${noun} match “${get("query")}”`);
    else setText(empty, "");
    empty.style.display = order.length === 0 ? "" : "none";
  }

  function updateStatus() {
    const noun = get("noun") || "items";
    const shown = order.length === cards.length ? `${cards.length} ${noun}` : `${order.length} of ${cards.length} ${noun}`;
    setText(status, `${shown} · ${selection.size} selected`);
    clearButton.disabled = selection.size === 0;
  }

  // ----- selection -----
  function pushSelection() {
    const values = selection.values();
    if (!selection.equals(get("selected") ?? []) || values.length !== (get("selected") ?? []).length) {
      model.set("selected", values);
      model.save_changes();
    }
    grid?.refresh();
    updateStatus();
  }

  function moveCursor(next: number) {
    const prev = cursor;
    cursor = next;
    if (prev >= 0) grid?.refreshIndex(prev);
    grid?.scrollToIndex(cursor);
    grid?.refreshIndex(cursor);
  }

  function cellFromEvent(ev: Event): CardCell | null {
    const t = ev.target as HTMLElement | null;
    const cell = t?.closest?.(".rw-card") as CardCell | null;
    return cell && viewport.contains(cell) ? cell : null;
  }

  viewport.addEventListener("click", (ev) => {
    const cell = cellFromEvent(ev);
    if (!cell || cell._index < 0 || cell._index >= order.length) return;
    const target = ev.target as HTMLElement;
    const i = cell._index;
    const card = cards[order[i]];
    const modified = ev.shiftKey || ev.ctrlKey || ev.metaKey;
    if (target.classList.contains("rw-thumb") && target.dataset.slot !== undefined && !modified) {
      const key = (card.images ?? [])[Number(target.dataset.slot)];
      if (key !== undefined) openDetails(card, key);
      return;
    }
    viewport.focus({ preventScroll: true });
    selection.click(card.id, clickModifiers(ev), orderIds);
    moveCursor(i);
    pushSelection();
  });
  // keep shift-click from selecting text
  viewport.addEventListener("mousedown", (ev) => {
    if (ev.shiftKey) ev.preventDefault();
  });

  viewport.addEventListener("keydown", (ev) => {
    if (!lightbox.hidden) return;
    const r = gridKey(ev, cursor, order.length, grid?.columns ?? 1, grid?.pageRows ?? 3);
    if (!r.handled) return;
    ev.preventDefault();
    ev.stopPropagation();
    switch (r.action) {
      case "move":
        moveCursor(r.cursor);
        break;
      case "range":
        moveCursor(r.cursor);
        selection.selectRange(orderIds[r.cursor], orderIds);
        if (ev.key === " " || ev.key === "Spacebar") selection.anchor = orderIds[r.cursor];
        pushSelection();
        break;
      case "toggle":
        moveCursor(r.cursor);
        selection.toggle(orderIds[r.cursor]);
        pushSelection();
        break;
      case "open": {
        const card = cards[order[r.cursor]];
        const key = (card.images ?? [])[0];
        if (key !== undefined) openDetails(card, key);
        break;
      }
      case "escape":
        moveCursor(-1);
        break;
      case "select-all":
        for (const id of orderIds) selection.add(id);
        pushSelection();
        break;
    }
  });

  // Keys typed into our controls belong to us, not to the notebook's shortcuts
  // (but let Shift/Ctrl+Enter through so "run cell" still works).
  root.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.shiftKey || ev.ctrlKey || ev.metaKey)) return;
    if (ev.key === "Escape" && !lightbox.hidden) {
      ev.preventDefault();
      closeDetails();
    }
    ev.stopPropagation();
  });

  clearButton.addEventListener("click", () => {
    selection.clear();
    pushSelection();
  });

  let queryTimer: ReturnType<typeof setTimeout> | null = null;
  search.addEventListener("input", () => {
    model.set("query", search.value);
    recomputeOrder();
    if (queryTimer) clearTimeout(queryTimer);
    queryTimer = setTimeout(() => model.save_changes(), 200);
  });
  sortSelect.addEventListener("change", () => {
    model.set("sort_by", sortSelect.value);
    model.save_changes();
    recomputeOrder();
  });
  orderButton.addEventListener("click", () => {
    model.set("descending", !(get("descending") ?? true));
    model.save_changes();
    recomputeOrder();
  });

  // ----- details (lightbox) -----
  function showField(name: string, value: unknown) {
    let text: string;
    if (typeof value === "number") text = fmt(value);
    else if (Array.isArray(value)) text = value.length ? value.map((v) => (typeof v === "number" ? fmt(v) : String(v))).join(", ") : "–";
    else if (value === null || value === undefined) text = "–";
    else text = String(value);
    lbDetails.append(h("dt", { text: name }), h("dd", { text }));
  }

  function openDetails(card: Card, key: Key) {
    const token = ++lbToken;
    lightbox.hidden = false;
    clear(lbDetails);
    setText(lbTitle, `#${card.id}${card.label ? ` ${card.label}` : ""}`);
    lbTitle.title = card.label ?? "";
    showField("image", key);
    lbLoading = true;
    setText(lbStatus, (rpc ? waitingText(rpc.state) : "") || "loading details…");
    const thumb = fetcher.get(key);
    if (thumb) lbImg.src = thumb;
    else lbImg.removeAttribute("src");
    lbClose.focus({ preventScroll: true });
    if (!rpc) {
      setText(lbStatus, "");
      return;
    }
    rpc
      .request("details", { card: card.id, key })
      .then(({ content, buffers }) => {
        if (token !== lbToken || lightbox.hidden) return;
        lbLoading = false;
        setText(lbStatus, "");
        clear(lbDetails);
        const fields = Array.isArray(content.fields) ? (content.fields as [string, unknown][]) : [];
        for (const [name, value] of fields) showField(String(name), value);
        if (content.image && buffers.length > 0) {
          const url = bytesToUrl(buffers[0], String(content.image.mime ?? ""));
          if (lbBigUrl) URL.revokeObjectURL(lbBigUrl);
          lbBigUrl = url;
          lbImg.src = url;
        }
      })
      .catch((e: Error) => {
        if (token !== lbToken) return;
        lbLoading = false;
        setText(lbStatus, `could not load details: ${e.message}`);
      });
  }

  function closeDetails() {
    lbToken++;
    lbLoading = false;
    lightbox.hidden = true;
    if (lbBigUrl) {
      URL.revokeObjectURL(lbBigUrl);
      lbBigUrl = null;
    }
    viewport.focus({ preventScroll: true });
  }

  lbClose.addEventListener("click", () => closeDetails());
  lightbox.addEventListener("click", (ev) => {
    if (ev.target === lightbox) closeDetails();
  });

  // ----- model events -----
  const onCards = () => {
    geometryKey = "";
    loadCards();
  };
  const onSelected = () => {
    const vals = get("selected") ?? [];
    if (!selection.equals(vals)) {
      selection.replace(vals);
      grid?.refresh();
      updateStatus();
    }
  };
  const onView = () => {
    fillSortOptions();
    recomputeOrder();
  };
  const onLayout = () => {
    ensureGrid();
  };
  const onTitle = () => syncControls();
  const handlers: Handlers = [
    ["change:cards", onCards],
    ["change:histograms", onCards],
    ["change:score_names", onView],
    ["change:selected", onSelected],
    ["change:sort_by", onView],
    ["change:descending", onView],
    ["change:query", onView],
    ["change:thumb_size", onLayout],
    ["change:height", onLayout],
    ["change:title", onTitle],
    ["change:noun", onTitle],
  ];
  const unlisten = listen(model, handlers);

  const stopTheme = watchTheme(() => {
    applyAutoTheme(root);
    readHistStyle();
    grid?.refresh();
  });

  loadCards();

  return () => {
    unlisten();
    stopTheme();
    stopWaiting?.();
    if (queryTimer) clearTimeout(queryTimer);
    grid?.dispose();
    fetcher.dispose();
    rpc?.dispose();
    if (lbBigUrl) URL.revokeObjectURL(lbBigUrl);
    root.remove();
  };
}

export default {
  render({ model, el }: RenderProps<GalleryModel>) {
    return renderGallery(model, el);
  },
};
