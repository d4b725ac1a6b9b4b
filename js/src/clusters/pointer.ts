// The browser's pointer and keys: hover, lasso / box / pan drags, clicks on points and
// legend entries, wheel zoom, and the L / B / P / R / Esc keys.

import { toData, type View } from "../lib/scatter";
import { Selection, clickModifiers } from "../lib/selection";
import type { Shape } from "./canvas";
import { isClusterColouring, type Mode } from "./model";
import { boxHits, lassoHits } from "./raster";
import type { BrowserView } from "./view";

interface Drag {
  kind: "lasso" | "box" | "pan";
  path: number[]; // data coordinates
  sx: number;
  sy: number;
  moved: boolean;
  view0: View;
}

interface Modifiers {
  shiftKey: boolean;
  altKey: boolean;
  ctrlKey: boolean;
  metaKey: boolean;
}

/** A 0 / 1 flag per index of `list` (its length: one past the largest index of `both`). */
function flags(list: readonly number[], both: readonly (readonly number[])[]): Uint8Array {
  let top = -1;
  for (const a of both) for (const i of a) if (i > top) top = i;
  const f = new Uint8Array(top + 1);
  for (const i of list) f[i] = 1;
  return f;
}

/**
 * Lasso, box and legend: plain replaces the selection, shift or ctrl / cmd adds, alt
 * removes. Flags in a typed array, not a Set, so a lasso over a million points stays quick.
 */
export function combine(selected: readonly number[], found: number[], ev: Modifiers): number[] {
  if (ev.altKey) {
    const drop = flags(found, [found, selected]);
    return selected.filter((i) => drop[i] !== 1);
  }
  if (ev.shiftKey || ev.ctrlKey || ev.metaKey) {
    const have = flags(selected, [found, selected]);
    const out = selected.slice();
    for (const i of found)
      if (have[i] !== 1) {
        have[i] = 1;
        out.push(i);
      }
    return out;
  }
  return found;
}

const MODE_KEYS: Record<string, Mode> = { l: "lasso", b: "box", p: "pan" };

export class PointerControl {
  private drag: Drag | null = null;
  /** Shift-click extends from here. */
  private anchor: number | null = null;

  constructor(private readonly v: BrowserView) {
    const { d, canvas, root, side } = v;
    d.on(canvas.overlay, "pointerdown", (ev) => this.onPointerDown(ev));
    d.on(canvas.overlay, "pointermove", (ev) => this.onPointerMove(ev));
    d.on(canvas.overlay, "pointerup", (ev) => this.onPointerUp(ev));
    d.on(canvas.overlay, "pointerleave", () => {
      if (!this.drag) v.setHover(-1, 0, 0);
    });
    d.on(canvas.overlay, "wheel", (ev) => this.onWheel(ev), { passive: false });
    d.on(root, "keydown", (ev) => this.onKey(ev));
    d.on(side.legend, "click", (ev) => this.onLegendClick(ev));
  }

  /** The lasso or box being drawn, if any. */
  shape(): Shape | null {
    const d = this.drag;
    return d && (d.kind === "lasso" || d.kind === "box") ? { kind: d.kind, path: d.path } : null;
  }

  private local(ev: MouseEvent): [number, number] {
    const r = this.v.canvas.overlay.getBoundingClientRect();
    return [ev.clientX - r.left, ev.clientY - r.top];
  }

  private toData(sx: number, sy: number): [number, number] {
    const { width, height } = this.v.canvas;
    return toData(this.v.view, width, height, sx, sy);
  }

  /** The point under (sx, sy), or -1. */
  private pick(sx: number, sy: number): number {
    const v = this.v;
    if (v.n === 0) return -1;
    const [x, y] = this.toData(sx, sy);
    return v.cells.nearest(x, y, Math.max(v.pointSize(), 4) / v.view.scale);
  }

  private onPointerDown(ev: PointerEvent): void {
    if (ev.button !== 0 && ev.button !== 1) return;
    const [sx, sy] = this.local(ev);
    const kind: Drag["kind"] = ev.button === 1 ? "pan" : this.v.mode();
    const [x, y] = this.toData(sx, sy);
    this.drag = { kind, path: kind === "box" ? [x, y, x, y] : [x, y], sx, sy, moved: false, view0: { ...this.v.view } };
    this.v.canvas.overlay.setPointerCapture?.(ev.pointerId);
    this.v.setHover(-1, 0, 0);
    ev.preventDefault();
  }

  private onPointerMove(ev: PointerEvent): void {
    const [sx, sy] = this.local(ev);
    const { drag, v } = this;
    if (!drag) {
      v.setHover(this.pick(sx, sy), sx, sy);
      return;
    }
    if (Math.abs(sx - drag.sx) + Math.abs(sy - drag.sy) > 3) drag.moved = true;
    const [x, y] = this.toData(sx, sy);
    if (drag.kind === "pan") {
      v.autoFit = false;
      const v0 = drag.view0;
      v.view = { ...v0, cx: v0.cx - (sx - drag.sx) / v.view.scale, cy: v0.cy + (sy - drag.sy) / v.view.scale };
      v.frame.request();
      return;
    }
    if (drag.kind === "box") {
      drag.path[2] = x;
      drag.path[3] = y;
    } else drag.path.push(x, y);
    v.drawOverlay();
  }

  private onPointerUp(ev: PointerEvent): void {
    const { drag: d, v } = this;
    if (!d) return;
    this.drag = null;
    v.canvas.overlay.releasePointerCapture?.(ev.pointerId);
    if (!d.moved) {
      this.onClickPoint(this.pick(d.sx, d.sy), ev);
      v.drawOverlay();
      return;
    }
    const p = d.path;
    if (d.kind === "lasso") v.pushSelection(combine(v.selectedList, lassoHits(v.cells, v.n, p), ev));
    else if (d.kind === "box") v.pushSelection(combine(v.selectedList, boxHits(v.cells, v.n, p[0], p[1], p[2], p[3]), ev));
    v.drawOverlay();
  }

  // plain click: only this point; ctrl / cmd: toggle it; shift: add it (a scatter has
  // no order to take a range in); alt: remove it. The point's cluster opens in the panel.
  private onClickPoint(i: number, ev: MouseEvent): void {
    const v = this.v;
    if (i < 0) return;
    if (v.membership) {
      const c = Number(v.membership[i]);
      v.setFocus(c >= 0 ? c : -1);
    }
    if (ev.altKey) {
      v.pushSelection(combine(v.selectedList, [i], ev));
      return;
    }
    const selection = new Selection(v.selectedList);
    selection.anchor = this.anchor;
    const mods = clickModifiers(ev);
    if (mods.extend) selection.add(i);
    else selection.click(i, mods, []);
    this.anchor = selection.anchor;
    v.pushSelection(selection.values());
  }

  private onWheel(ev: WheelEvent): void {
    ev.preventDefault();
    const v = this.v;
    const [sx, sy] = this.local(ev);
    const [x, y] = this.toData(sx, sy);
    const { width, height } = v.canvas;
    const factor = Math.exp(-ev.deltaY * 0.0015);
    const scale = Math.min(Math.max(v.view.scale * factor, 1e-9), 1e12);
    // keep the data point under the cursor in place
    v.autoFit = false;
    v.view = { scale, cx: x - (sx - width / 2) / scale, cy: y - (height / 2 - sy) / scale };
    v.frame.request();
  }

  private onKey(ev: KeyboardEvent): void {
    if (ev.ctrlKey || ev.metaKey) return;
    const k = ev.key.toLowerCase();
    if (k in MODE_KEYS) this.v.setMode(MODE_KEYS[k]);
    else if (k === "r") {
      this.v.fit();
      this.v.frame.request();
    } else if (k === "escape") this.v.pushSelection([]);
    else return;
    ev.preventDefault();
    ev.stopPropagation();
  }

  private onLegendClick(ev: MouseEvent): void {
    const v = this.v;
    const item = (ev.target as HTMLElement).closest<HTMLElement>(".rw-legend-item");
    if (!item || !v.codes) return;
    const code = Number(item.dataset.code);
    const found: number[] = [];
    for (let i = 0; i < v.n; i++) if (v.codes[i] === code) found.push(i);
    if (isClusterColouring(v.coloring())) v.setFocus(code - 1);
    v.pushSelection(combine(v.selectedList, found, ev));
  }
}
