// The browser's two canvases: the points (drawn into an ImageData buffer, one 32-bit
// write per pixel: raster.ts) and the overlay above them (the lasso or box being
// drawn, the hovered point, the focused cluster's outlines).

import { h } from "../lib/dom";
import { context2d } from "../lib/mount";
import { toScreen, type View } from "../lib/scatter";
import { rasterPoints, type RasterPoints } from "./raster";

/** A lasso (x, y, x, y, ...) or box (x0, y0, x1, y1) in data coordinates. */
export interface Shape {
  kind: "lasso" | "box";
  path: number[];
}

/** The points of a frame; `size` in CSS px (the canvas scales it to device px). */
export type Points = RasterPoints;

export interface OverlayState {
  view: View;
  xy: Float32Array;
  n: number;
  shape: Shape | null;
  hover: number;
  focus: number;
  membership: ArrayLike<number> | null;
  pointSize: number;
}

/** The focused cluster's members are outlined only up to this many points. */
const MAX_OUTLINED = 20000;

export class ScatterCanvas {
  readonly base = h("canvas", { class: "rw-points" });
  readonly overlay = h("canvas", { class: "rw-overlay" });
  width = 0;
  height = 0;
  dpr = 1;
  private image: ImageData | null = null;
  private pixels: Uint32Array | null = null;
  private readonly ctx = context2d(this.base);
  private readonly octx = context2d(this.overlay);

  /** Size both canvases to width x height CSS px; false when they already have that size. */
  resize(width: number, height: number): boolean {
    this.dpr = typeof devicePixelRatio === "number" && devicePixelRatio > 0 ? devicePixelRatio : 1;
    const device = Math.round(width * this.dpr);
    if (width === this.width && height === this.height && this.image && this.base.width === device) return false;
    this.width = width;
    this.height = height;
    for (const c of [this.base, this.overlay]) {
      c.width = Math.max(1, Math.round(width * this.dpr));
      c.height = Math.max(1, Math.round(height * this.dpr));
      c.style.width = `${width}px`;
      c.style.height = `${height}px`;
    }
    this.image = this.ctx ? this.ctx.createImageData(this.base.width, this.base.height) : null;
    this.pixels = this.image ? new Uint32Array(this.image.data.buffer) : null;
    return true;
  }

  paint(view: View, p: Points): void {
    if (!this.ctx || !this.image || !this.pixels) return;
    const size = Math.max(1, Math.round(p.size * this.dpr));
    const { width, height } = this.base;
    rasterPoints(this.pixels, width, height, this.dpr, view, size === p.size ? p : { ...p, size });
    this.ctx.putImageData(this.image, 0, 0);
  }

  drawOverlay(st: OverlayState): void {
    const octx = this.octx;
    if (!octx) return;
    octx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    octx.clearRect(0, 0, this.width, this.height);
    if (st.shape) this.drawShape(octx, st.view, st.shape);
    if (st.hover >= 0 && st.hover < st.n) {
      const [sx, sy] = this.screen(st.view, st.xy, st.hover);
      octx.strokeStyle = "#000";
      octx.lineWidth = 1.5;
      octx.beginPath();
      octx.arc(sx, sy, st.pointSize + 3, 0, 2 * Math.PI);
      octx.stroke();
    }
    if (st.focus >= 0 && st.membership && st.n <= MAX_OUTLINED) this.outline(octx, st);
  }

  private screen(view: View, xy: Float32Array, i: number): [number, number] {
    return toScreen(view, this.width, this.height, xy[2 * i], xy[2 * i + 1]);
  }

  private drawShape(octx: CanvasRenderingContext2D, view: View, shape: Shape): void {
    const { width, height } = this;
    const path = shape.path;
    octx.strokeStyle = "#1976d2";
    octx.fillStyle = "rgba(25, 118, 210, 0.12)";
    octx.lineWidth = 1.5;
    octx.beginPath();
    if (shape.kind === "box") {
      const [ax, ay] = toScreen(view, width, height, path[0], path[1]);
      const [bx, by] = toScreen(view, width, height, path[2], path[3]);
      octx.rect(Math.min(ax, bx), Math.min(ay, by), Math.abs(bx - ax), Math.abs(by - ay));
    } else {
      for (let k = 0; k < path.length; k += 2) {
        const [sx, sy] = toScreen(view, width, height, path[k], path[k + 1]);
        if (k === 0) octx.moveTo(sx, sy);
        else octx.lineTo(sx, sy);
      }
      octx.closePath();
    }
    octx.fill();
    octx.stroke();
  }

  /** Outline the focused cluster's members. */
  private outline(octx: CanvasRenderingContext2D, st: OverlayState): void {
    octx.strokeStyle = "rgba(0,0,0,0.55)";
    octx.lineWidth = 1;
    const r = st.pointSize / 2 + 1.5;
    octx.beginPath();
    for (let i = 0; i < st.n; i++) {
      if (st.membership![i] !== st.focus) continue;
      const [sx, sy] = this.screen(st.view, st.xy, i);
      octx.moveTo(sx + r, sy);
      octx.arc(sx, sy, r, 0, 2 * Math.PI);
    }
    octx.stroke();
  }
}
