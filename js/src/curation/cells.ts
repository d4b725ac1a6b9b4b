// One sample of the curation grid: its image, score, label (and prediction when they
// differ), group and the K / S / X buttons; a pending mark shows dashed.

import { h, setText } from "../lib/dom";
import { fmt } from "../lib/format";
import type { Items } from "./marks";
import { MARKS, type Mark } from "./model";

const BUTTON_TEXT: Record<Mark, string> = { keep: "K", spurious: "S", exclude: "X" };

export interface Cell extends HTMLElement {
  _img: HTMLImageElement;
  _l1: HTMLElement;
  _l2: HTMLElement;
  _l3: HTMLElement;
  _btns: HTMLButtonElement[];
  _pos: number;
}

/** Cell size for thumbnails of side `t`. */
export function cellSize(t: number): { cellWidth: number; cellHeight: number } {
  return { cellWidth: Math.max(104, t + 10), cellHeight: t + 10 + 3 * 14 + 22 };
}

export function createCell(t: number): Cell {
  const img = h("img", { class: "rw-cur-img", attrs: { alt: "", draggable: "false" } });
  img.width = t;
  img.height = t;
  const l1 = h("div", { class: "rw-cur-line" });
  const l2 = h("div", { class: "rw-cur-line" });
  const l3 = h("div", { class: "rw-cur-line rw-dim" });
  const btns = MARKS.map((m) => {
    const attrs = { type: "button", "data-set": m, "aria-pressed": "false", tabindex: "-1" };
    return h("button", { text: BUTTON_TEXT[m], title: `${m} (${BUTTON_TEXT[m].toLowerCase()})`, attrs });
  });
  const children = [img, l1, l2, l3, h("div", { class: "rw-cur-btns" }, btns)];
  const cell = h("div", { class: "rw-cur-cell", attrs: { role: "gridcell" } }, children) as unknown as Cell;
  Object.assign(cell, { _img: img, _l1: l1, _l2: l2, _l3: l3, _btns: btns, _pos: -1 });
  return cell;
}

const names = (list: string[] | undefined, i: number) => (list && i >= 0 && i < list.length ? list[i] : String(i));

export interface CellFill {
  /** Position in the shown order, and in the items. */
  index: number;
  pos: number;
  mark: Mark | undefined;
  pending: boolean;
  cursor: boolean;
  scoreName: string;
  classNames: string[];
  groupNames: string[];
  url: string | undefined;
}

export function fillCell(cell: Cell, items: Items, f: CellFill): void {
  const p = f.pos;
  const sample = items.samples.data[p];
  cell._pos = f.index;
  cell.dataset.index = String(f.index);
  cell.dataset.sample = String(sample);
  if (f.mark) cell.dataset.mark = f.mark;
  else delete cell.dataset.mark;
  cell.classList.toggle("rw-pending", f.pending);
  cell.classList.toggle("rw-cursor", f.cursor);
  cell.setAttribute("aria-selected", f.cursor ? "true" : "false");
  for (const b of cell._btns) b.setAttribute("aria-pressed", b.dataset.set === f.mark ? "true" : "false");
  const score = items.scores ? items.scores.data[p] : NaN;
  setText(cell._l1, `#${sample} · ${fmt(score)}`);
  cell._l1.title = `sample ${sample}, ${f.scoreName || "score"} ${score}`;
  const y = items.labels ? items.labels.data[p] : -1;
  const yhat = items.predictions ? items.predictions.data[p] : -1;
  const cn = f.classNames;
  setText(cell._l2, y === yhat ? names(cn, y) : `${names(cn, y)} → ${names(cn, yhat)}`);
  cell._l2.title = `label ${names(cn, y)}, predicted ${names(cn, yhat)}`;
  cell._l2.classList.toggle("rw-wrong", y !== yhat);
  const g = items.groups ? items.groups.data[p] : -1;
  setText(cell._l3, g >= 0 ? names(f.groupNames, g) : "");
  cell._l3.title = cell._l3.textContent ?? "";
  if (f.url !== undefined) {
    if (cell._img.getAttribute("src") !== f.url) cell._img.src = f.url;
  } else if (cell._img.hasAttribute("src")) cell._img.removeAttribute("src");
}
