// Category colours that stay distinct for any number of categories: a hand-picked
// palette up to its length, and beyond it evenly spaced hues whose lightness and
// saturation alternate, so that neighbours in hue still differ in brightness.

export const PALETTE = [
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
  "#bcbd22", "#7f7f7f", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
  "#f7b6d2", "#9edae5", "#dbdb8d", "#393b79",
];

/** The colour of "no category" (drawn grey, never one of the category colours). */
export const NONE_COLOUR = "#c4c4c4";

const LIGHTNESS = [0.45, 0.68, 0.32];
const SATURATION = [0.7, 0.85, 0.6];

function hex2(v: number): string {
  return Math.round(Math.min(255, Math.max(0, v * 255))).toString(16).padStart(2, "0");
}

/** "#rrggbb" of an HSL colour (h in turns, s and l in [0, 1]). */
export function hslHex(h: number, s: number, l: number): string {
  const a = s * Math.min(l, 1 - l);
  const f = (n: number) => {
    const k = (n + h * 12) % 12;
    return l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1));
  };
  return `#${hex2(f(0))}${hex2(f(8))}${hex2(f(4))}`;
}

const cache = new Map<number, string[]>();

/** `k` colours, all different from each other and from NONE_COLOUR. */
export function distinctColours(k: number): string[] {
  const n = Math.max(0, Math.floor(k));
  if (n <= PALETTE.length) return PALETTE.slice(0, n);
  const hit = cache.get(n);
  if (hit) return hit;
  const out: string[] = [];
  const used = new Set<string>([NONE_COLOUR]);
  for (let i = 0; i < n; i++) {
    const band = i % LIGHTNESS.length;
    const step = LIGHTNESS[band] > 0.5 ? -1 / 255 : 1 / 255;
    let c = hslHex(i / n, SATURATION[band], LIGHTNESS[band]);
    // thousands of categories can round two hues to one hex code: nudge the lightness
    for (let t = 1; used.has(c) && t < 100; t++) c = hslHex(i / n, SATURATION[band], LIGHTNESS[band] + t * step);
    used.add(c);
    out.push(c);
  }
  cache.set(n, out);
  return out;
}
