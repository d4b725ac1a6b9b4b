// A k x k matrix for the DistanceHeatmap: its colour scales, decoding from the wire
// (full or upper-triangle packing, optionally quantised), the zoom and pan geometry of
// its view, and a rasteriser that draws only what is on screen: each device pixel looks
// up its cell (display row r, column c -> matrix entry [perm[r], perm[c]]) and its
// colour from a lookup table, so a 2,048 x 2,048 matrix needs no k x k image.

import { decodeArray, type ArrayMeta, type TypedArray } from "./codec";

export interface MatrixState {
  values?: ArrayMeta;
  k?: number;
  packing?: "full" | "upper";
  quantized?: boolean;
  lo?: number;
  hi?: number;
}

// ------------------------------------------------------------------ colour scale
export const COLORMAPS: Record<string, string[]> = {
  viridis: ["#440154", "#472c7a", "#3b518b", "#2c718e", "#21908d", "#27ad81", "#5cc863", "#aadc32", "#fde725"],
  magma: ["#000004", "#1c1044", "#4f127b", "#812581", "#b5367a", "#e55064", "#fb8761", "#fec287", "#fcfdbf"],
  greys: ["#ffffff", "#000000"],
  rdbu: ["#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7", "#f4a582", "#d6604d", "#b2182b"],
};

function hexRgb(hex: string): [number, number, number] {
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

/** The colour at t in [0, 1] (clamped; NaN -> 0) of a colour map, as [r, g, b]. */
export function colourAt(name: string, t: number): [number, number, number] {
  const stops = COLORMAPS[name] ?? COLORMAPS.viridis;
  const x = Number.isFinite(t) ? Math.min(1, Math.max(0, t)) : 0;
  const pos = x * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(pos));
  const f = pos - i;
  const a = hexRgb(stops[i]);
  const b = hexRgb(stops[i + 1]);
  return [0, 1, 2].map((c) => Math.round(a[c] + f * (b[c] - a[c]))) as [number, number, number];
}

/** Pack [r, g, b] for a little-endian Uint32 view of ImageData (opaque). */
export function pack(rgb: [number, number, number]): number {
  return ((255 << 24) | (rgb[2] << 16) | (rgb[1] << 8) | rgb[0]) >>> 0;
}

/** A lookup table of `n` packed colours spanning the colour map. */
export function buildLut(name: string, n = 256): Uint32Array {
  const lut = new Uint32Array(n);
  for (let i = 0; i < n; i++) lut[i] = pack(colourAt(name, n === 1 ? 0 : i / (n - 1)));
  return lut;
}

/** Where value v falls on the scale [vmin, vmax], in [0, 1] (a flat scale gives 0.5). */
export function scaleT(v: number, vmin: number, vmax: number): number {
  if (!(vmax > vmin)) return 0.5;
  return Math.min(1, Math.max(0, (v - vmin) / (vmax - vmin)));
}

// ------------------------------------------------------------------ matrix
export interface Matrix {
  k: number;
  /** Full k x k row-major values (codes when quantised). */
  data: TypedArray;
  quantized: boolean;
  lo: number;
  hi: number;
  /** Value of one code step (quantised) or 0. */
  step: number;
  /** Largest code (255 or 65535) when quantised, else 0. */
  qmax: number;
}

/** Expand a packed upper triangle (row by row, diagonal included) to a full k x k array. */
export function expandUpper<T extends TypedArray>(tri: T, k: number): T {
  const n = (k * (k + 1)) / 2;
  if (tri.length !== n) throw new RangeError(`upper triangle of a ${k} x ${k} matrix needs ${n} values, got ${tri.length}`);
  const out = new (tri.constructor as { new (n: number): T })(k * k);
  let p = 0;
  for (let i = 0; i < k; i++) {
    const len = k - i;
    out.set(tri.subarray(p, p + len), i * k + i);
    for (let j = i + 1; j < k; j++) out[j * k + i] = tri[p + j - i];
    p += len;
  }
  return out;
}

const QMAX: Record<string, number> = { uint8: 255, uint16: 65535 };

/** Decode the `values` trait into a full matrix (codes kept as codes when quantised). */
export function decodeMatrix(state: MatrixState): Matrix {
  if (!state.values) throw new TypeError("no matrix values");
  const arr = decodeArray(state.values);
  const k = Number(state.k);
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`bad matrix size ${state.k}`);
  let data = arr.data;
  if (state.packing === "upper") data = expandUpper(data, k);
  else if (data.length !== k * k) throw new RangeError(`a ${k} x ${k} matrix needs ${k * k} values, got ${data.length}`);
  const quantized = !!state.quantized;
  const lo = Number(state.lo ?? 0);
  const hi = Number(state.hi ?? 0);
  const qmax = QMAX[arr.dtype];
  if (quantized && !qmax) throw new TypeError(`quantised values must be uint8 or uint16, got ${arr.dtype}`);
  return { k, data, quantized, lo, hi, step: quantized ? (hi - lo) / qmax : 0, qmax: quantized ? qmax : 0 };
}

/** Value of the matrix at (matrix row a, matrix column b). */
export function valueAt(m: Matrix, a: number, b: number): number {
  const x = m.data[a * m.k + b];
  return m.quantized ? m.lo + x * m.step : x;
}

/** Data range of a matrix (ignoring NaN). */
export function matrixRange(m: Matrix): [number, number] {
  if (m.quantized) return [m.lo, m.hi];
  let lo = Infinity;
  let hi = -Infinity;
  const d = m.data;
  for (let i = 0; i < d.length; i++) {
    const v = d[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return Number.isFinite(lo) ? [lo, hi] : [0, 1];
}

/** Colour of every quantised code (one table lookup per pixel), or null for float data. */
export function codeColours(m: Matrix, lut: Uint32Array, vmin: number, vmax: number): Uint32Array | null {
  if (!m.quantized) return null;
  const out = new Uint32Array(m.qmax + 1);
  const last = lut.length - 1;
  for (let q = 0; q <= m.qmax; q++) out[q] = lut[Math.round(scaleT(m.lo + q * m.step, vmin, vmax) * last)];
  return out;
}

// ------------------------------------------------------------------ view geometry
/** The view: cell (row, col) at the top-left corner of the plot and pixels per cell. */
export interface HView {
  x0: number;
  y0: number;
  s: number;
}

/** Largest zoom, in pixels per cell. */
export const MAX_CELL_PX = 64;

export function fitView(k: number, size: number): HView {
  return { x0: 0, y0: 0, s: size / Math.max(1, k) };
}

/** Keep the matrix on screen: no zooming out past the fit, no panning past the edges. */
export function clampView(v: HView, k: number, size: number): HView {
  const fit = size / Math.max(1, k);
  const s = Math.min(Math.max(v.s, fit), Math.max(fit, MAX_CELL_PX));
  const span = size / s; // cells on screen
  const maxStart = Math.max(0, k - span);
  return {
    s,
    x0: Math.min(Math.max(v.x0, 0), maxStart),
    y0: Math.min(Math.max(v.y0, 0), maxStart),
  };
}

/** Zoom by `factor` keeping the cell under (sx, sy) in place. */
export function zoomAt(v: HView, sx: number, sy: number, factor: number, k: number, size: number): HView {
  const cx = v.x0 + sx / v.s;
  const cy = v.y0 + sy / v.s;
  const s = v.s * factor;
  return clampView({ s, x0: cx - sx / s, y0: cy - sy / s }, k, size);
}

/** Pan by (dx, dy) screen pixels from view v. */
export function panBy(v: HView, dx: number, dy: number, k: number, size: number): HView {
  return clampView({ s: v.s, x0: v.x0 - dx / v.s, y0: v.y0 - dy / v.s }, k, size);
}

/** Display [row, col] of the cell under screen point (sx, sy), or null outside the matrix. */
export function cellAt(v: HView, sx: number, sy: number, k: number): [number, number] | null {
  const c = Math.floor(v.x0 + sx / v.s);
  const r = Math.floor(v.y0 + sy / v.s);
  if (r < 0 || c < 0 || r >= k || c >= k || sx < 0 || sy < 0) return null;
  return [r, c];
}

/** Display row under screen y, clamped to 0..k-1 (for brushes that leave the plot). */
export function rowAt(v: HView, sy: number, k: number): number {
  return Math.min(k - 1, Math.max(0, Math.floor(v.y0 + sy / v.s)));
}

/** Screen centre of display cell (r, c). */
export function cellCentre(v: HView, r: number, c: number): [number, number] {
  return [(c + 0.5 - v.x0) * v.s, (r + 0.5 - v.y0) * v.s];
}

/** Original ids of display rows r0..r1 (either order, inclusive). */
export function rowsToIds(r0: number, r1: number, perm: ArrayLike<number>, ids: ArrayLike<number>): number[] {
  const a = Math.max(0, Math.min(r0, r1));
  const b = Math.min(perm.length - 1, Math.max(r0, r1));
  const out: number[] = [];
  for (let r = a; r <= b; r++) out.push(ids[perm[r]]);
  return out;
}

/** The inverse of a permutation: display position of every matrix row. */
export function inversePermutation(perm: ArrayLike<number>): Int32Array {
  const inv = new Int32Array(perm.length);
  for (let r = 0; r < perm.length; r++) inv[perm[r]] = r;
  return inv;
}

/**
 * Rasterise the visible part of the matrix into `pixels` (Uint32 view of RGBA ImageData,
 * w x hgt device pixels; `dpr` device pixels per CSS pixel). Pixels outside the matrix
 * get `background`. Returns the number of matrix pixels written.
 */
export function rasterize(
  pixels: Uint32Array,
  w: number,
  hgt: number,
  dpr: number,
  view: HView,
  m: Matrix,
  perm: ArrayLike<number>,
  lut: Uint32Array,
  codes: Uint32Array | null,
  vmin: number,
  vmax: number,
  background: number,
): number {
  const k = m.k;
  const s = view.s * dpr;
  const cols = new Int32Array(w);
  for (let x = 0; x < w; x++) {
    const c = Math.floor(view.x0 + (x + 0.5) / s);
    cols[x] = c >= 0 && c < k ? perm[c] : -1;
  }
  const d = m.data;
  const last = lut.length - 1;
  const inv = vmax > vmin ? last / (vmax - vmin) : 0;
  const mid = lut[last >> 1];
  let written = 0;
  for (let y = 0; y < hgt; y++) {
    const r = Math.floor(view.y0 + (y + 0.5) / s);
    const rowStart = y * w;
    if (r < 0 || r >= k) {
      pixels.fill(background, rowStart, rowStart + w);
      continue;
    }
    const base = perm[r] * k;
    for (let x = 0; x < w; x++) {
      const c = cols[x];
      if (c < 0) {
        pixels[rowStart + x] = background;
        continue;
      }
      const raw = d[base + c];
      if (codes !== null) pixels[rowStart + x] = codes[raw];
      else if (inv === 0) pixels[rowStart + x] = mid;
      else {
        let t = (raw - vmin) * inv;
        t = t < 0 ? 0 : t > last ? last : t;
        pixels[rowStart + x] = lut[t + 0.5 | 0];
      }
      written++;
    }
  }
  return written;
}
