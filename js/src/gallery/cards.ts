// The gallery's cards: their geometry (the virtual grid's cell size), the DOM of one
// card, and filling a card with its id, label, scores, thumbnails and histogram.

import { row } from "../lib/codec";
import { h, setText } from "../lib/dom";
import { keyId, type Key, type KeyedFetcher } from "../lib/fetcher";
import { fmt } from "../lib/format";
import { drawHistogram, type HistogramStyle } from "../lib/histogram";
import type { Histograms } from "./filter";
import type { Card } from "./model";

export const PAD = 8;
export const GAP = 8;
const IMG_GAP = 2;
/** Narrowest card: room for an id and a label beside small thumbnails. */
const MIN_CARD = 200;
/** Card padding and border, left and right together. */
export const CARD_INSET = 18;
const HEAD_H = 32;
export const DEFAULT_THUMB = 96;
const HIST_H = 24;

export interface CardCell extends HTMLElement {
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

export interface CardGeometry {
  /** Thumbnail side (px). */
  t: number;
  imgCols: number;
  /** The narrowest card; the grid widens cards to fill rows. */
  cellWidth: number;
  cellHeight: number;
}

/** The thumbnail size a `thumb_size` trait asks for (16..512, else the default). */
export function thumbSize(value: unknown): number {
  const t = Number(value);
  return Number.isFinite(t) && t >= 16 ? Math.min(t, 512) : DEFAULT_THUMB;
}

/** Card geometry for `k` images per card of side `t`, with or without histograms. */
export function cardGeometry(t: number, k: number, hasHists: boolean): CardGeometry {
  const imgCols = Math.max(1, Math.min(k, 4));
  const imgRows = Math.ceil(Math.max(k, 1) / imgCols);
  const thumbsH = k > 0 ? imgRows * t + (imgRows - 1) * IMG_GAP : 0;
  const histH = hasHists ? 4 + HIST_H + 13 : 0;
  const cellWidth = Math.max(MIN_CARD, imgCols * t + (imgCols - 1) * IMG_GAP + CARD_INSET);
  const cellHeight = 6 + HEAD_H + 2 + 16 + (k > 0 ? 4 + thumbsH : 0) + histH + 8;
  return { t, imgCols, cellWidth, cellHeight };
}

/** An empty card with `k` thumbnail slots (and a histogram when `hasHists`). */
export function createCard(g: CardGeometry, k: number, hasHists: boolean): CardCell {
  const id = h("span", { class: "rw-card-id" });
  const label = h("span", { class: "rw-card-label" });
  const head = h("div", { class: "rw-card-head" }, [id, label]);
  const scores = h("div", { class: "rw-card-scores" });
  const thumbs = h("div", { class: "rw-thumbs" });
  thumbs.style.gridTemplateColumns = `repeat(${g.imgCols}, ${g.t}px)`;
  const cell = h("div", { class: "rw-card", attrs: { role: "option" } }, [head, scores, thumbs]) as unknown as CardCell;
  Object.assign(cell, { _head: head, _id: id, _label: label, _scores: scores, _thumbs: thumbs, _imgs: [], _index: -1 });
  if (k === 0) thumbs.style.display = "none";
  for (let j = 0; j < k; j++) {
    const img = h("img", { class: "rw-thumb", attrs: { alt: "", draggable: "false", decoding: "async" } });
    img.width = g.t;
    img.height = g.t;
    thumbs.appendChild(img);
    cell._imgs.push(img);
  }
  cell._hist = cell._hmin = cell._hmax = null;
  if (hasHists) {
    const canvas = h("canvas", { class: "rw-hist" });
    canvas.style.height = `${HIST_H}px`;
    const hmin = h("span");
    const hmax = h("span");
    cell.append(canvas, h("div", { class: "rw-hist-range" }, [hmin, hmax]));
    Object.assign(cell, { _hist: canvas, _hmin: hmin, _hmax: hmax });
  }
  return cell;
}

/** "name value · name value" for the card's scores listed in `names`. */
export function scoreText(card: Card, names: readonly string[]): string {
  const parts: string[] = [];
  for (const n of names) {
    const v = card.scores?.[n];
    if (v === undefined) continue;
    parts.push(`${n} ${fmt(v)}`);
  }
  return parts.join(" · ");
}

/** Show the fetched image of `key` in `img` (or nothing, marked when it failed). */
export function setImage(img: HTMLImageElement, key: Key, fetcher: KeyedFetcher): void {
  const url = fetcher.get(key);
  if (url !== undefined) {
    if (img.getAttribute("src") !== url) img.src = url;
    img.classList.remove("rw-failed");
  } else {
    if (img.hasAttribute("src")) img.removeAttribute("src");
    img.classList.toggle("rw-failed", fetcher.error(key) !== undefined);
  }
}

/** What one card shows besides the card itself. */
export interface CardFill {
  /** Position in the view order. */
  index: number;
  /** Row of the card in the cards trait (and in the histograms). */
  row: number;
  selected: boolean;
  cursor: boolean;
  scoreNames: readonly string[];
  fetcher: KeyedFetcher;
  hists: Histograms | null;
  histWidth: number;
  histStyle: HistogramStyle;
}

/** Fill `cell` with `card`: text as text, thumbnails from the fetcher, the histogram. */
export function fillCard(cell: CardCell, card: Card, f: CardFill): void {
  cell._index = f.index;
  cell.dataset.index = String(f.index);
  cell.dataset.id = String(card.id);
  cell.classList.toggle("rw-selected", f.selected);
  cell.classList.toggle("rw-cursor", f.cursor);
  cell.setAttribute("aria-selected", f.selected ? "true" : "false");
  setText(cell._id, `#${card.id}`);
  const label = card.label ?? "";
  setText(cell._label, label);
  // the whole label on hover, when two lines cut it
  cell._head.title = label ? `#${card.id} ${label}` : `#${card.id}`;
  cell._label.title = label;
  const st = scoreText(card, f.scoreNames);
  setText(cell._scores, st);
  cell._scores.title = st;
  fillThumbs(cell, card.images ?? [], f.fetcher);
  if (cell._hist && f.hists) fillHistogram(cell, f.hists, f.row, f.histWidth, f.histStyle);
}

function fillThumbs(cell: CardCell, keys: readonly Key[], fetcher: KeyedFetcher): void {
  for (let j = 0; j < cell._imgs.length; j++) {
    const img = cell._imgs[j];
    if (j < keys.length) {
      img.style.visibility = "";
      img.dataset.key = keyId(keys[j]);
      img.dataset.slot = String(j);
      setImage(img, keys[j], fetcher);
    } else {
      img.style.visibility = "hidden";
      delete img.dataset.key;
      img.removeAttribute("src");
    }
  }
}

function fillHistogram(cell: CardCell, hists: Histograms, r: number, w: number, style: HistogramStyle): void {
  cell._hist!.style.width = `${w}px`;
  drawHistogram(cell._hist!, row(hists.counts, r), w, HIST_H, style);
  if (hists.ranges && cell._hmin && cell._hmax) {
    const range = row(hists.ranges, r);
    setText(cell._hmin, fmt(range[0]));
    setText(cell._hmax, fmt(range[1]));
  }
}
