// Point colours: one distinct colour per category of the chosen colouring.

import { NONE_COLOUR, PALETTE, distinctColours } from "../lib/palette";
import type { Coloring } from "./model";

const BINARY = ["#b9b9b9", "#d62728"];

/** The colour of category `code` of a colouring: distinct for every category. */
export function categoryColour(coloring: Coloring | undefined, code: number): string {
  if (!coloring) return PALETTE[0];
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
  const k = Math.max(1, col?.categories.length ?? 1);
  const colours = new Uint32Array(k);
  const dimmed = new Uint32Array(k);
  for (let c = 0; c < k; c++) {
    const hex = categoryColour(col, c);
    colours[c] = packColour(hex, col?.none && c === 0 ? 170 : 235);
    dimmed[c] = packColour(hex, 45);
  }
  return { colours, dimmed };
}
