// Point colours: one distinct colour per category of the chosen colouring, or a
// sequential ramp for a continuous one (codes 1..255 along it, 0 for a missing value).

import { COLORMAPS, colourAt } from "../lib/matrix";
import { NONE_COLOUR, PALETTE, distinctColours } from "../lib/palette";
import type { Coloring } from "./model";

/** Steps of a continuous colouring's ramp (Python: clusters.STEPS). */
export const STEPS = 255;

/** Is this a continuous colouring (a number per point on a ramp)? */
export function isContinuous(col: Coloring | undefined): col is Coloring & { range: [number, number] } {
  return !!col && Array.isArray(col.range) && col.range.length === 2;
}

function rampName(col: Coloring): string {
  return col.ramp && col.ramp in COLORMAPS ? col.ramp : "viridis";
}

function hex(rgb: [number, number, number]): string {
  return `#${rgb.map((c) => c.toString(16).padStart(2, "0")).join("")}`;
}

/** The value code `code` of a continuous colouring stands for (null: missing). */
export function codeValue(col: Coloring & { range: [number, number] }, code: number): number | null {
  if (!(code >= 1 && code <= STEPS)) return null;
  const [lo, hi] = col.range;
  return lo + ((code - 1) / (STEPS - 1)) * (hi - lo);
}

/** A number in a few significant digits, for legends and tooltips. */
export function formatValue(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 1e5 || a < 1e-3 ? v.toExponential(2) : String(Number(v.toPrecision(3)));
}

/** What code `code` means: its category, or (continuous) about which value. */
export function codeLabel(col: Coloring | undefined, code: number): string {
  if (!col || code < 0) return "";
  if (!isContinuous(col)) return col.categories[code] ?? "";
  const v = codeValue(col, code);
  return v === null ? "missing" : `≈ ${formatValue(v)}`;
}

/** A CSS gradient of a continuous colouring's ramp, low values on the left. */
export function rampGradient(col: Coloring): string {
  const stops = COLORMAPS[rampName(col)];
  return `linear-gradient(to right, ${stops.join(", ")})`;
}

const BINARY = ["#b9b9b9", "#d62728"];

/** The colour of category `code` of a colouring: distinct for every category. */
export function categoryColour(coloring: Coloring | undefined, code: number): string {
  if (!coloring) return PALETTE[0];
  if (isContinuous(coloring)) {
    if (code < 1 || code > STEPS) return NONE_COLOUR;
    return hex(colourAt(rampName(coloring), (code - 1) / (STEPS - 1)));
  }
  const k = coloring.categories.length;
  if (coloring.none) return code === 0 ? NONE_COLOUR : distinctColours(k - 1)[code - 1] ?? NONE_COLOUR;
  if (k === 2) return BINARY[code] ?? NONE_COLOUR;
  return distinctColours(k)[code] ?? NONE_COLOUR;
}

/** "#rrggbb" -> RGBA packed for a little-endian Uint32 view of ImageData. */
export function packColour(hex: string, alpha = 255): number {
  const v = parseInt(hex.slice(1), 16);
  const r = (v >> 16) & 255;
  const g = (v >> 8) & 255;
  const b = v & 255;
  return ((alpha << 24) | (b << 16) | (g << 8) | r) >>> 0;
}

/** Packed colours per category: full, and dimmed (for points outside a selection). */
export function categoryColours(col: Coloring | undefined): { colours: Uint32Array; dimmed: Uint32Array } {
  const k = isContinuous(col) ? STEPS + 1 : Math.max(1, col?.categories.length ?? 1);
  const colours = new Uint32Array(k);
  const dimmed = new Uint32Array(k);
  for (let c = 0; c < k; c++) {
    const hex = categoryColour(col, c);
    colours[c] = packColour(hex, col?.none && c === 0 ? 170 : 235);
    dimmed[c] = packColour(hex, 45);
  }
  return { colours, dimmed };
}
