// The heatmap's pointer and keys: hover, drag to pan, shift-drag to brush rows, click
// to select a row (ctrl toggles, shift extends), wheel and + / - to zoom, R to reset,
// Esc to clear the selection.

import { cellAt, panBy, rowAt, rowsToIds, zoomAt, type HView } from "../lib/matrix";
import { Selection, clickModifiers } from "../lib/selection";
import { GUTTER } from "./model";
import type { HeatmapView } from "./view";

interface Drag {
  kind: "pan" | "brush";
  sx: number;
  sy: number;
  moved: boolean;
  view0: HView;
}

export class PointerControl {
  private drag: Drag | null = null;
  /** The rows being brushed (display rows), while shift-dragging. */
  brush: { r0: number; r1: number } | null = null;
  /** Shift-click extends from here. */
  private anchor: number | null = null;

  constructor(private readonly v: HeatmapView) {
    const { d, canvas, root } = v;
    d.on(canvas.overlay, "pointerdown", (ev) => this.onPointerDown(ev));
    d.on(canvas.overlay, "pointermove", (ev) => this.onPointerMove(ev));
    d.on(canvas.overlay, "pointerup", (ev) => this.onPointerUp(ev));
    d.on(canvas.overlay, "pointerleave", () => {
      if (!this.drag) v.setHover(null, 0, 0);
    });
    d.on(canvas.overlay, "wheel", (ev) => this.onWheel(ev), { passive: false });
    d.on(root, "keydown", (ev) => this.onKey(ev));
  }

  /** Pointer position relative to the matrix's top-left corner (CSS px). */
  private local(ev: MouseEvent): [number, number] {
    const rect = this.v.canvas.overlay.getBoundingClientRect();
    return [ev.clientX - rect.left - GUTTER, ev.clientY - rect.top - GUTTER];
  }

  /** Plain click: only this row; ctrl / cmd: toggle it; shift: the rows from the anchor. */
  private clickRow(r: number, ev: MouseEvent): void {
    const { perm, ids } = this.v;
    const selection = new Selection(this.v.selected);
    selection.anchor = this.anchor;
    selection.click(ids[perm[r]], clickModifiers(ev), rowsToIds(0, this.v.k - 1, perm, ids));
    this.anchor = selection.anchor;
    this.v.pushSelection(selection.values());
  }

  private onPointerDown(ev: PointerEvent): void {
    const v = this.v;
    if (ev.button !== 0 || v.k === 0) return;
    const [sx, sy] = this.local(ev);
    const kind: Drag["kind"] = ev.shiftKey ? "brush" : "pan";
    this.drag = { kind, sx, sy, moved: false, view0: { ...v.view } };
    if (kind === "brush") {
      const r = rowAt(v.view, sy, v.k);
      this.brush = { r0: r, r1: r };
    }
    v.canvas.overlay.setPointerCapture?.(ev.pointerId);
    v.root.focus({ preventScroll: true });
    ev.preventDefault();
  }

  private onPointerMove(ev: PointerEvent): void {
    const [sx, sy] = this.local(ev);
    const { drag, v } = this;
    const size = v.canvas.size;
    if (!drag) {
      const inside = sx >= 0 && sy >= 0 && sx < size && sy < size;
      v.setHover(inside ? cellAt(v.view, sx, sy, v.k) : null, sx, sy);
      return;
    }
    if (Math.abs(sx - drag.sx) + Math.abs(sy - drag.sy) > 3) drag.moved = true;
    if (drag.kind === "pan") {
      if (!drag.moved) return;
      v.plot.classList.add("rw-panning");
      v.view = panBy(drag.view0, sx - drag.sx, sy - drag.sy, v.k, size);
      v.setHover(null, 0, 0);
      v.frame.request();
    } else if (this.brush) {
      this.brush.r1 = rowAt(v.view, sy, v.k);
      v.setHover(null, 0, 0);
      v.drawOverlay();
    }
  }

  private onPointerUp(ev: PointerEvent): void {
    const { drag: d, v } = this;
    if (!d) return;
    this.drag = null;
    v.plot.classList.remove("rw-panning");
    v.canvas.overlay.releasePointerCapture?.(ev.pointerId);
    const b = this.brush;
    this.brush = null;
    const size = v.canvas.size;
    if (d.kind === "brush" && b && (d.moved || b.r0 !== b.r1)) {
      const found = rowsToIds(b.r0, b.r1, v.perm, v.ids);
      v.pushSelection(ev.ctrlKey || ev.metaKey ? [...v.selected, ...found] : found);
      return;
    }
    if (!d.moved) {
      const r = d.sy >= 0 && d.sy < size ? rowAt(v.view, d.sy, v.k) : -1;
      const inMatrixOrGutter = d.sx < size && d.sy >= 0 && d.sy < size;
      if (r >= 0 && inMatrixOrGutter) this.clickRow(r, ev);
    }
    v.drawOverlay();
  }

  private onWheel(ev: WheelEvent): void {
    const v = this.v;
    if (v.k === 0) return;
    ev.preventDefault();
    const [sx, sy] = this.local(ev);
    const factor = Math.exp(-ev.deltaY * (ev.deltaMode === 1 ? 0.05 : 0.0015));
    v.view = zoomAt(v.view, sx, sy, factor, v.k, v.canvas.size);
    v.setHover(cellAt(v.view, sx, sy, v.k), sx, sy);
    v.frame.request();
  }

  private onKey(ev: KeyboardEvent): void {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const v = this.v;
    const key = ev.key;
    const size = v.canvas.size;
    if (key === "Escape") v.pushSelection([]);
    else if (key === "r" || key === "R") v.resetView();
    else if (key === "+" || key === "=" || key === "-") {
      v.view = zoomAt(v.view, size / 2, size / 2, key === "-" ? 1 / 1.5 : 1.5, v.k, size);
      v.frame.request();
    } else return;
    ev.preventDefault();
    ev.stopPropagation();
  }
}
