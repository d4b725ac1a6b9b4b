// Drawing and lasso hit tests that stay fast at a million points: one pass over typed
// arrays per frame, points outside the view rejected before any pixel work, one 32-bit
// write per pixel into an ImageData buffer, no allocation per frame.

import type { View } from "../lib/scatter";

/**
 * The points in grid-cell order: a uniform grid over their bounding box, cells in rows
 * (row-major), points of a cell in index order (a stable counting sort). Drawing walks
 * only the cells in view, and points drawn one after the other land near each other on
 * the canvas (cache-friendly writes). Non-finite points are left out (never drawn).
 *
 * Example: `const cells = new CellOrder(xy, n); cells.gather16(colourIdx, buf)` gives
 * the colour indices in cell order.
 */
export class CellOrder {
  readonly g: number;
  readonly x0: number;
  readonly y0: number;
  /** Cells per data unit along x and y (cell = floor((x - x0) * ix)). */
  readonly ix: number;
  readonly iy: number;
  /** Cell c holds sorted points start[c] .. start[c + 1] - 1. */
  readonly start: Int32Array;
  /** order[k]: the point index of sorted point k. */
  readonly order: Uint32Array;
  /** Positions in cell order [m, 2]. */
  readonly xy: Float32Array;
  /** Finite points (the sorted length). */
  readonly m: number;

  constructor(xy: Float32Array, n: number) {
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let i = 0; i < n; i++) {
      const x = xy[2 * i], y = xy[2 * i + 1];
      if (!(Number.isFinite(x) && Number.isFinite(y))) continue;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
    }
    if (!Number.isFinite(x0)) x0 = x1 = y0 = y1 = 0;
    const g = (this.g = Math.max(1, Math.min(1024, Math.ceil(Math.sqrt(n / 32)))));
    this.x0 = x0;
    this.y0 = y0;
    this.ix = g / Math.max(x1 - x0, 1e-30);
    this.iy = g / Math.max(y1 - y0, 1e-30);
    const cellOf = new Int32Array(n);
    const start = (this.start = new Int32Array(g * g + 1));
    for (let i = 0; i < n; i++) {
      const x = xy[2 * i], y = xy[2 * i + 1];
      // x - x is 0 for a finite x, NaN otherwise
      const c = x - x === 0 && y - y === 0 ? this.cellY(y) * g + this.cellX(x) : -1;
      cellOf[i] = c;
      if (c >= 0) start[c + 1]++;
    }
    for (let c = 0; c < g * g; c++) start[c + 1] += start[c];
    const m = (this.m = start[g * g]);
    const fill = start.slice(0, g * g);
    const order = (this.order = new Uint32Array(m));
    const sorted = (this.xy = new Float32Array(2 * m));
    for (let i = 0; i < n; i++) {
      const c = cellOf[i];
      if (c < 0) continue;
      const k = fill[c]++;
      order[k] = i;
      sorted[2 * k] = xy[2 * i];
      sorted[2 * k + 1] = xy[2 * i + 1];
    }
  }

  cellX(x: number): number {
    const c = Math.floor((x - this.x0) * this.ix);
    return c < 0 ? 0 : c >= this.g ? this.g - 1 : c;
  }

  cellY(y: number): number {
    const c = Math.floor((y - this.y0) * this.iy);
    return c < 0 ? 0 : c >= this.g ? this.g - 1 : c;
  }

  /** The point (original index) nearest to (x, y) within `radius` (data units), or -1. */
  nearest(x: number, y: number, radius: number): number {
    if (this.m === 0 || !(radius >= 0)) return -1;
    const { g, start, xy, order } = this;
    const gx0 = this.cellX(x - radius), gx1 = this.cellX(x + radius);
    const gy0 = this.cellY(y - radius), gy1 = this.cellY(y + radius);
    let best = -1;
    let bestD = radius * radius;
    for (let gy = gy0; gy <= gy1; gy++) {
      for (let k = start[gy * g + gx0], to = start[gy * g + gx1 + 1]; k < to; k++) {
        const dx = xy[2 * k] - x;
        const dy = xy[2 * k + 1] - y;
        const d = dx * dx + dy * dy;
        if (d <= bestD) {
          bestD = d;
          best = order[k];
        }
      }
    }
    return best;
  }

  /** `src` (one value per point) in cell order, into `out` when it has the length. */
  gather16(src: Uint16Array | null, out?: Uint16Array | null): Uint16Array | null {
    if (!src) return null;
    const { m, order } = this;
    const dst = out && out.length === m ? out : new Uint16Array(m);
    for (let k = 0; k < m; k++) dst[k] = src[order[k]];
    return dst;
  }

  /** A 0 / 1 mask per point in cell order (null stays null). */
  gather8(src: Uint8Array | null, out?: Uint8Array | null): Uint8Array | null {
    if (!src) return null;
    const { m, order } = this;
    const dst = out && out.length === m ? out : new Uint8Array(m);
    for (let k = 0; k < m; k++) dst[k] = src[order[k]];
    return dst;
  }
}

/**
 * One frame of points, all in the cell order of `cells`; the arrays are reused from
 * frame to frame (rebuilt only when the points, colouring or selection change).
 */
export interface RasterPoints {
  cells: CellOrder;
  /** Colour index per sorted point, clamped to the tables (see `colourIndex`), or null: colour 0. */
  index: Uint16Array | null;
  colours: Uint32Array;
  dimmed: Uint32Array;
  /** 1 for selected points (sorted), or null when nothing is selected. */
  selected: Uint8Array | null;
  /** Side of each point's square (device px in `rasterPoints`). */
  size: number;
}

/**
 * The colour index of every point: `codes[i]`, or 0 where it is outside the `count`
 * colours. Converted once per colouring so the draw loop reads one typed array and
 * needs no range check; `out` is reused when it has room.
 */
export function colourIndex(codes: ArrayLike<number> | null, n: number, count: number, out?: Uint16Array | null): Uint16Array | null {
  if (!codes) return null;
  const idx = out && out.length === n ? out : new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    const c = codes[i];
    idx[i] = c >= 0 && c < count ? c : 0;
  }
  return idx;
}

/** The screen transform of one frame (device px), shifted as `drawRange` needs. */
interface Frame {
  pixels: Uint32Array;
  w: number;
  hgt: number;
  s: number;
  ox: number;
  oy: number;
  size: number;
}

/** A square that crosses the canvas's edge: only its pixels on the canvas. */
function clippedSquare(f: Frame, px: number, py: number, colour: number): void {
  const { pixels, w, hgt, size } = f;
  const xa = px > 0 ? px : 0;
  const xb = px + size < w ? px + size : w;
  const ya = py > 0 ? py : 0;
  const yb = py + size < hgt ? py + size : hgt;
  for (let y = ya; y < yb; y++) {
    const row = y * w;
    for (let x = xa; x < xb; x++) pixels[row + x] = colour;
  }
}

/**
 * Sorted points from .. to - 1 whose selection flag equals `want` (all of them when
 * `selected` is null) as size x size squares of `table[index[k]]`. A square starts at
 * round(screen) - size / 2, as it always has, so the picture does not change.
 */
function drawRange(f: Frame, p: RasterPoints, table: Uint32Array, want: number, from: number, to: number): number {
  const { pixels, w, hgt, s, ox, oy, size } = f;
  const xy = p.cells.xy;
  const { index, selected } = p;
  // ox, oy are shifted by `size`: a square's corner is (fx | 0) - size, and truncation is
  // floor for every point kept (fx >= 1). Inside: the whole square is on the canvas.
  const inX = w + 1;
  const inY = hgt + 1;
  const hiX = w + size;
  const hiY = hgt + size;
  const c0 = table[0];
  let drawn = 0;
  for (let k = from; k < to; k++) {
    if (selected !== null && selected[k] !== want) continue;
    const fx = xy[2 * k] * s + ox;
    const fy = oy - xy[2 * k + 1] * s;
    if (fx >= size && fx < inX && fy >= size && fy < inY) {
      let o = ((fy | 0) - size) * w + (fx | 0) - size;
      const colour = index === null ? c0 : table[index[k]];
      if (size === 2) {
        pixels[o] = colour;
        pixels[o + 1] = colour;
        pixels[o + w] = colour;
        pixels[o + w + 1] = colour;
      } else if (size === 1) pixels[o] = colour;
      else for (let y = 0; y < size; y++, o += w) for (let x = 0; x < size; x++) pixels[o + x] = colour;
      drawn++;
    } else if (fx >= 1 && fx < hiX && fy >= 1 && fy < hiY) {
      // NaN fails every comparison: non-finite points are never drawn
      clippedSquare(f, (fx | 0) - size, (fy | 0) - size, index === null ? c0 : table[index[k]]);
      drawn++;
    }
  }
  return drawn;
}

/** Draw the cells in view, row by row of cells (each row's cells are contiguous). */
function drawCells(f: Frame, p: RasterPoints, view: View, table: Uint32Array, want: number): number {
  const c = p.cells;
  // data bounds of the canvas, widened by a point's size
  const mx = (f.w / 2 + f.size + 1) / f.s;
  const my = (f.hgt / 2 + f.size + 1) / f.s;
  const gx0 = c.cellX(view.cx - mx), gx1 = c.cellX(view.cx + mx);
  const gy0 = c.cellY(view.cy - my), gy1 = c.cellY(view.cy + my);
  let drawn = 0;
  for (let gy = gy0; gy <= gy1; gy++) {
    const row = gy * c.g;
    drawn += drawRange(f, p, table, want, c.start[row + gx0], c.start[row + gx1 + 1]);
  }
  return drawn;
}

/**
 * Rasterise the points into `pixels` (a Uint32 view of an RGBA ImageData, w x hgt device
 * px) at device-pixel ratio `dpr`; `p.size` is in device px. With a selection the others
 * are drawn dimmed first and the selected points on top. Returns how many points fell on
 * the canvas (counted once per pass).
 */
export function rasterPoints(pixels: Uint32Array, w: number, hgt: number, dpr: number, view: View, p: RasterPoints): number {
  pixels.fill(0);
  if (p.cells.m === 0 || p.colours.length === 0) return 0;
  const s = view.scale * dpr;
  const size = p.size;
  const half = size >> 1;
  // screen x = x * s + w / 2 - cx * s; the square starts at round(x) - half; + size: see drawRange
  const f: Frame = { pixels, w, hgt, s, size, ox: w / 2 - view.cx * s + 0.5 - half + size, oy: hgt / 2 + view.cy * s + 0.5 - half + size };
  if (p.selected === null) return drawCells(f, p, view, p.colours, 1);
  return drawCells(f, p, view, p.dimmed, 0) + drawCells(f, p, view, p.colours, 1);
}

/** Bands of a polygon's y range, each with the edges that cross it (compressed rows). */
interface EdgeBands {
  y0: number;
  inv: number;
  bands: number;
  start: Int32Array;
  edges: Int32Array;
}

function edgeBands(poly: ArrayLike<number>, m: number, y0: number, y1: number): EdgeBands {
  const bands = Math.max(1, Math.min(4096, 2 * m));
  const inv = y1 > y0 ? bands / (y1 - y0) : 0;
  const band = (y: number) => Math.min(bands - 1, Math.max(0, Math.floor((y - y0) * inv)));
  const start = new Int32Array(bands + 1);
  for (let i = 0, j = m - 1; i < m; j = i++) {
    const a = poly[2 * i + 1], b = poly[2 * j + 1];
    for (let k = band(Math.min(a, b)), e = band(Math.max(a, b)); k <= e; k++) start[k + 1]++;
  }
  for (let k = 0; k < bands; k++) start[k + 1] += start[k];
  const fill = start.slice(0, bands);
  const edges = new Int32Array(start[bands]);
  for (let i = 0, j = m - 1; i < m; j = i++) {
    const a = poly[2 * i + 1], b = poly[2 * j + 1];
    for (let k = band(Math.min(a, b)), e = band(Math.max(a, b)); k <= e; k++) edges[fill[k]++] = i;
  }
  return { y0, inv, bands, start, edges };
}

/** Is (x, y), inside the polygon's bounding box, inside it? Tests the edges of its band. */
function insideBanded(poly: ArrayLike<number>, m: number, eb: EdgeBands, x: number, y: number): boolean {
  let b = Math.floor((y - eb.y0) * eb.inv);
  if (b >= eb.bands) b = eb.bands - 1;
  let inside = false;
  for (let q = eb.start[b], e = eb.start[b + 1]; q < e; q++) {
    const i = eb.edges[q];
    const j = i === 0 ? m - 1 : i - 1;
    const xi = poly[2 * i], yi = poly[2 * i + 1];
    const xj = poly[2 * j], yj = poly[2 * j + 1];
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** Cells of the box gx0..gx1 x gy0..gy1 that an edge comes within half a cell of: 1. */
function edgeCells(cells: CellOrder, poly: ArrayLike<number>, m: number, gx0: number, gx1: number, gy0: number, gy1: number): Uint8Array {
  const cols = gx1 - gx0 + 1;
  const near = new Uint8Array(cols * (gy1 - gy0 + 1));
  const hx = 0.5 / cells.ix, hy = 0.5 / cells.iy;
  for (let i = 0, j = m - 1; i < m; j = i++) {
    const xa = cells.cellX(Math.min(poly[2 * i], poly[2 * j]) - hx), xb = cells.cellX(Math.max(poly[2 * i], poly[2 * j]) + hx);
    const ya = cells.cellY(Math.min(poly[2 * i + 1], poly[2 * j + 1]) - hy), yb = cells.cellY(Math.max(poly[2 * i + 1], poly[2 * j + 1]) + hy);
    for (let gy = Math.max(ya, gy0); gy <= Math.min(yb, gy1); gy++)
      for (let gx = Math.max(xa, gx0); gx <= Math.min(xb, gx1); gx++) near[(gy - gy0) * cols + gx - gx0] = 1;
  }
  return near;
}

/**
 * Indices (ascending) of the points inside a polygon [x0, y0, x1, y1, ...] in data
 * coordinates, by the even-odd rule of `insidePolygon` (same answers). Only the cells
 * under the polygon's bounding box are visited. A cell no edge comes near is wholly
 * inside or outside (its centre says which), so its points need no test; in the others
 * each point tests only the edges that cross its horizontal band. `n`: number of points.
 */
export function lassoHits(cells: CellOrder, n: number, poly: ArrayLike<number>): number[] {
  const m = poly.length >> 1;
  if (m < 3 || cells.m === 0) return [];
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (let i = 0; i < m; i++) {
    const x = poly[2 * i], y = poly[2 * i + 1];
    if (x < x0) x0 = x;
    if (x > x1) x1 = x;
    if (y < y0) y0 = y;
    if (y > y1) y1 = y;
  }
  if (!(x0 <= x1 && y0 <= y1)) return [];
  const eb = edgeBands(poly, m, y0, y1);
  const { xy, order, g, start } = cells;
  const gx0 = cells.cellX(x0), gx1 = cells.cellX(x1);
  const gy0 = cells.cellY(y0), gy1 = cells.cellY(y1);
  const near = edgeCells(cells, poly, m, gx0, gx1, gy0, gy1);
  const hit = new Uint8Array(n);
  let count = 0;
  for (let gy = gy0; gy <= gy1; gy++) {
    const cy = cells.y0 + (gy + 0.5) / cells.iy;
    for (let gx = gx0; gx <= gx1; gx++) {
      const c = gy * g + gx;
      if (near[(gy - gy0) * (gx1 - gx0 + 1) + gx - gx0] === 0) {
        const cx = cells.x0 + (gx + 0.5) / cells.ix;
        if (!(cx >= x0 && cx <= x1 && cy >= y0 && cy <= y1) || !insideBanded(poly, m, eb, cx, cy)) continue;
        for (let k = start[c]; k < start[c + 1]; k++) hit[order[k]] = 1;
        count += start[c + 1] - start[c];
        continue;
      }
      for (let k = start[c]; k < start[c + 1]; k++) {
        const x = xy[2 * k];
        const y = xy[2 * k + 1];
        if (x >= x0 && x <= x1 && y >= y0 && y <= y1 && insideBanded(poly, m, eb, x, y)) {
          hit[order[k]] = 1;
          count++;
        }
      }
    }
  }
  // pushed, not preallocated: new Array(k) of a large k is a slow dictionary array in V8
  const out: number[] = [];
  for (let i = 0; i < n && out.length < count; i++) if (hit[i]) out.push(i);
  return out;
}

/** Indices (ascending) of the points inside an axis-aligned box (data coordinates, any corner order). */
export function boxHits(cells: CellOrder, n: number, ax: number, ay: number, bx: number, by: number): number[] {
  const x0 = Math.min(ax, bx), x1 = Math.max(ax, bx), y0 = Math.min(ay, by), y1 = Math.max(ay, by);
  if (!(x0 <= x1 && y0 <= y1) || cells.m === 0) return [];
  const { xy, order, g } = cells;
  const hit = new Uint8Array(n);
  let count = 0;
  const gx0 = cells.cellX(x0), gx1 = cells.cellX(x1);
  for (let gy = cells.cellY(y0), gy1 = cells.cellY(y1); gy <= gy1; gy++) {
    for (let k = cells.start[gy * g + gx0], to = cells.start[gy * g + gx1 + 1]; k < to; k++) {
      const x = xy[2 * k];
      const y = xy[2 * k + 1];
      if (x >= x0 && x <= x1 && y >= y0 && y <= y1) {
        hit[order[k]] = 1;
        count++;
      }
    }
  }
  // pushed, not preallocated: new Array(k) of a large k is a slow dictionary array in V8
  const out: number[] = [];
  for (let i = 0; i < n && out.length < count; i++) if (hit[i]) out.push(i);
  return out;
}
