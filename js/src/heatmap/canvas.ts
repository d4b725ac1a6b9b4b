// The heatmap's two canvases: the matrix (rasterised per frame, only what is on
// screen: lib/matrix.ts) and the overlay above it (selection marks in the gutters,
// the brush, the hovered row and column).

import { h } from "../lib/dom";
import { clampView, fitView, rasterize, type HView, type Matrix } from "../lib/matrix";
import { context2d } from "../lib/mount";
import { GUTTER } from "./model";

/** What the overlay shows besides the matrix. */
export interface OverlayState {
  view: HView;
  /** Selected display rows, ascending. */
  rows: number[];
  brush: { r0: number; r1: number } | null;
  /** Hovered display (row, col). */
  hover: [number, number] | null;
}

export interface Paint {
  m: Matrix;
  perm: Int32Array;
  lut: Uint32Array;
  codes: Uint32Array | null;
  lo: number;
  hi: number;
}

export class MatrixCanvas {
  readonly base = h("canvas", { class: "rw-hm-matrix" });
  readonly overlay = h("canvas", { class: "rw-hm-overlay" });
  /** Side of the matrix area (CSS px); 0 before the first real size. */
  size = 0;
  private dpr = 1;
  private image: ImageData | null = null;
  private pixels: Uint32Array | null = null;
  private readonly ctx = context2d(this.base);
  private readonly octx = context2d(this.overlay);

  constructor(private readonly plot: HTMLElement) {}

  /**
   * Size the canvases for a matrix area of side `sz` (CSS px). Returns the view for
   * the new size (kept in scale with the old one), or null when nothing changed.
   */
  resize(sz: number, view: HView, k: number): HView | null {
    const d = typeof devicePixelRatio === "number" && devicePixelRatio > 0 ? devicePixelRatio : 1;
    if (sz === this.size && d === this.dpr && this.image && this.base.width === Math.round(sz * d)) return null;
    const old = this.size;
    this.size = sz;
    this.dpr = d;
    const full = sz + GUTTER;
    this.plot.style.width = `${full}px`;
    this.plot.style.height = `${full}px`;
    setSize(this.base, sz, d);
    this.base.style.left = `${GUTTER}px`;
    this.base.style.top = `${GUTTER}px`;
    setSize(this.overlay, full, d);
    this.image = this.ctx ? this.ctx.createImageData(this.base.width, this.base.height) : null;
    this.pixels = this.image ? new Uint32Array(this.image.data.buffer) : null;
    return old > 0 ? clampView({ ...view, s: (view.s * sz) / old }, k, sz) : fitView(k, sz);
  }

  paint(view: HView, p: Paint): void {
    if (!this.ctx || !this.image || !this.pixels) return;
    const { width, height } = this.base;
    rasterize(this.pixels, width, height, this.dpr, view, p.m, p.perm, p.lut, p.codes, p.lo, p.hi, 0);
    this.ctx.putImageData(this.image, 0, 0);
  }

  drawOverlay(st: OverlayState): void {
    const octx = this.octx;
    if (!octx) return;
    const full = this.size + GUTTER;
    octx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    octx.clearRect(0, 0, full, full);
    octx.save();
    octx.translate(GUTTER, GUTTER);
    if (st.rows.length) this.drawSelection(octx, st.view, st.rows);
    if (st.brush) this.drawBrush(octx, st.view, st.brush);
    if (st.hover) this.drawHover(octx, st.view, st.hover);
    octx.restore();
  }

  /** Screen y range (CSS px, matrix coordinates) of display rows a..b. */
  private band(view: HView, a: number, b: number): [number, number] {
    return [(a - view.y0) * view.s, (b + 1 - view.y0) * view.s];
  }

  /** Marks in the gutters and a light band over the selected rows. */
  private drawSelection(octx: CanvasRenderingContext2D, view: HView, rows: number[]): void {
    const size = this.size;
    octx.fillStyle = "#1976d2";
    for (const r of rows) {
      const [y0, y1] = this.band(view, r, r);
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
      const [y0, y1] = this.band(view, r, r);
      if (y1 < 0 || y0 > size) continue;
      octx.fillRect(0, y0, size, Math.max(1, y1 - y0));
    }
  }

  private drawBrush(octx: CanvasRenderingContext2D, view: HView, brush: { r0: number; r1: number }): void {
    const [y0, y1] = this.band(view, Math.min(brush.r0, brush.r1), Math.max(brush.r0, brush.r1));
    octx.fillStyle = "rgba(25, 118, 210, 0.25)";
    octx.strokeStyle = "#1976d2";
    octx.lineWidth = 1.5;
    octx.fillRect(-GUTTER, y0, this.size + GUTTER, y1 - y0);
    octx.strokeRect(-GUTTER, y0, this.size + GUTTER, y1 - y0);
  }

  private drawHover(octx: CanvasRenderingContext2D, view: HView, [r, c]: [number, number]): void {
    const size = this.size;
    octx.strokeStyle = "rgba(255, 255, 255, 0.9)";
    octx.lineWidth = 1;
    const w = Math.max(view.s, 1);
    octx.strokeRect((c - view.x0) * view.s - 0.5, -GUTTER, w + 1, size + GUTTER);
    octx.strokeRect(-GUTTER, (r - view.y0) * view.s - 0.5, size + GUTTER, w + 1);
    octx.strokeStyle = "#000";
    octx.strokeRect((c - view.x0) * view.s - 1.5, (r - view.y0) * view.s - 1.5, w + 3, w + 3);
  }
}

/** A canvas of `css` x `css` CSS px at `dpr` device pixels per CSS px. */
function setSize(c: HTMLCanvasElement, css: number, dpr: number): void {
  c.width = Math.round(css * dpr);
  c.height = Math.round(css * dpr);
  c.style.width = `${css}px`;
  c.style.height = `${css}px`;
}
