// Plain reference answers for the scatter's drawing and hit tests: the straightforward
// per-point versions that clusters/raster.ts must agree with.
import type { View } from "../src/lib/scatter";

/** Is (x, y) inside the polygon [x0, y0, x1, y1, ...] (even-odd rule)? */
export function insidePolygon(poly: ArrayLike<number>, x: number, y: number): boolean {
  let inside = false;
  const m = poly.length >> 1;
  for (let i = 0, j = m - 1; i < m; j = i++) {
    const xi = poly[2 * i], yi = poly[2 * i + 1];
    const xj = poly[2 * j], yj = poly[2 * j + 1];
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** Indices of the points inside a polygon given in data coordinates. */
export function pointsInPolygon(xy: Float32Array, n: number, poly: ArrayLike<number>): number[] {
  const m = poly.length >> 1;
  if (m < 3) return [];
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (let i = 0; i < m; i++) {
    x0 = Math.min(x0, poly[2 * i]);
    x1 = Math.max(x1, poly[2 * i]);
    y0 = Math.min(y0, poly[2 * i + 1]);
    y1 = Math.max(y1, poly[2 * i + 1]);
  }
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = xy[2 * i];
    const y = xy[2 * i + 1];
    if (x < x0 || x > x1 || y < y0 || y > y1) continue;
    if (insidePolygon(poly, x, y)) out.push(i);
  }
  return out;
}

/** Indices of the points inside an axis-aligned box (data coordinates, any corner order). */
export function pointsInBox(xy: Float32Array, n: number, ax: number, ay: number, bx: number, by: number): number[] {
  const x0 = Math.min(ax, bx), x1 = Math.max(ax, bx), y0 = Math.min(ay, by), y1 = Math.max(ay, by);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = xy[2 * i];
    const y = xy[2 * i + 1];
    if (x >= x0 && x <= x1 && y >= y0 && y <= y1) out.push(i);
  }
  return out;
}

/** A uniform grid over the points' bounding box for nearest-point queries (hover, click). */
export class GridIndex {
  readonly g: number;
  private x0 = 0;
  private y0 = 0;
  private cw = 1;
  private ch = 1;
  private start: Int32Array;
  private items: Int32Array;

  constructor(
    private xy: Float32Array,
    n: number,
  ) {
    this.g = Math.max(1, Math.min(512, Math.ceil(Math.sqrt(n / 4))));
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let i = 0; i < n; i++) {
      const x = xy[2 * i], y = xy[2 * i + 1];
      if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
      x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    }
    if (!Number.isFinite(x0)) { x0 = 0; x1 = 1; y0 = 0; y1 = 1; }
    this.x0 = x0;
    this.y0 = y0;
    this.cw = Math.max((x1 - x0) / this.g, 1e-12);
    this.ch = Math.max((y1 - y0) / this.g, 1e-12);
    const cells = this.g * this.g;
    const count = new Int32Array(cells + 1);
    const cellOf = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const c = this.cell(xy[2 * i], xy[2 * i + 1]);
      cellOf[i] = c;
      if (c >= 0) count[c + 1]++;
    }
    for (let c = 0; c < cells; c++) count[c + 1] += count[c];
    this.start = count;
    this.items = new Int32Array(count[cells]);
    const fill = count.slice(0, cells);
    for (let i = 0; i < n; i++) if (cellOf[i] >= 0) this.items[fill[cellOf[i]]++] = i;
  }

  private cell(x: number, y: number): number {
    if (!Number.isFinite(x) || !Number.isFinite(y)) return -1;
    const cx = Math.min(this.g - 1, Math.max(0, Math.floor((x - this.x0) / this.cw)));
    const cy = Math.min(this.g - 1, Math.max(0, Math.floor((y - this.y0) / this.ch)));
    return cy * this.g + cx;
  }

  /** The point nearest to (x, y) within `radius` (data units), or -1. */
  nearest(x: number, y: number, radius: number): number {
    const gx0 = Math.max(0, Math.floor((x - radius - this.x0) / this.cw));
    const gx1 = Math.min(this.g - 1, Math.floor((x + radius - this.x0) / this.cw));
    const gy0 = Math.max(0, Math.floor((y - radius - this.y0) / this.ch));
    const gy1 = Math.min(this.g - 1, Math.floor((y + radius - this.y0) / this.ch));
    let best = -1;
    let bestD = radius * radius;
    for (let gy = gy0; gy <= gy1; gy++) {
      for (let gx = gx0; gx <= gx1; gx++) {
        const c = gy * this.g + gx;
        for (let k = this.start[c]; k < this.start[c + 1]; k++) {
          const i = this.items[k];
          const dx = this.xy[2 * i] - x;
          const dy = this.xy[2 * i + 1] - y;
          const d = dx * dx + dy * dy;
          if (d <= bestD) {
            bestD = d;
            best = i;
          }
        }
      }
    }
    return best;
  }
}

/**
 * Rasterise the points into `pixels` (Uint32 view of an RGBA ImageData of size w x hgt in
 * device pixels). Selected points (when any) are drawn last and the others dimmed.
 */
export function rasterize(
  pixels: Uint32Array,
  w: number,
  hgt: number,
  dpr: number,
  view: View,
  xy: Float32Array,
  n: number,
  codes: ArrayLike<number> | null,
  colours: Uint32Array,
  dimmed: Uint32Array,
  selected: Uint8Array | null,
  size: number,
): number {
  pixels.fill(0);
  const s = view.scale * dpr;
  const ox = (w / 2) - view.cx * s;
  const oy = (hgt / 2) + view.cy * s;
  const half = size >> 1;
  const nc = colours.length;
  let drawn = 0;
  const pass = (wantSelected: boolean) => {
    for (let i = 0; i < n; i++) {
      const sel = selected !== null && selected[i] === 1;
      if (selected !== null && sel !== wantSelected) continue;
      const px = Math.round(xy[2 * i] * s + ox) - half;
      const py = Math.round(oy - xy[2 * i + 1] * s) - half;
      if (px + size <= 0 || py + size <= 0 || px >= w || py >= hgt) continue;
      const code = codes ? codes[i] : 0;
      const c = code >= 0 && code < nc ? code : 0;
      const colour = selected !== null && !sel ? dimmed[c] : colours[c];
      const xa = Math.max(0, px), xb = Math.min(w, px + size);
      const ya = Math.max(0, py), yb = Math.min(hgt, py + size);
      for (let y = ya; y < yb; y++) {
        const rowStart = y * w;
        for (let x = xa; x < xb; x++) pixels[rowStart + x] = colour;
      }
      drawn++;
    }
  };
  if (selected === null) pass(true);
  else {
    pass(false);
    pass(true);
  }
  return drawn;
}
