// Which cards the gallery shows and in what order: the search query filters on id and
// label, the chosen score sorts (cards without that score last).

import { decodeArray, type NDArray } from "../lib/codec";
import type { Card, HistogramState } from "./model";

/** Indices into `cards` of the cards matching `query`, ordered by `sortBy`. */
export function viewOrder(cards: readonly Card[], query: string, sortBy: string, descending: boolean): number[] {
  const terms = query.toLowerCase().split(/\s+/).filter((t) => t.length > 0);
  const idx: number[] = [];
  for (let i = 0; i < cards.length; i++) {
    if (terms.length === 0 || matches(cards[i], terms)) idx.push(i);
  }
  if (sortBy) sortByScore(idx, cards, sortBy, descending);
  return idx;
}

function matches(c: Card, terms: string[]): boolean {
  const text = `#${c.id} ${c.label ?? ""}`.toLowerCase();
  return terms.every((t) => text.includes(t));
}

function sortByScore(idx: number[], cards: readonly Card[], sortBy: string, descending: boolean): void {
  const val = (i: number): number => {
    const v = cards[i].scores?.[sortBy];
    return typeof v === "number" && Number.isFinite(v) ? v : NaN;
  };
  const sign = descending ? -1 : 1;
  idx.sort((a, b) => {
    const va = val(a);
    const vb = val(b);
    const na = Number.isNaN(va);
    const nb = Number.isNaN(vb);
    if (na || nb) return na === nb ? a - b : na ? 1 : -1; // missing scores last
    return va === vb ? a - b : sign * (va - vb);
  });
}

/** Decoded histograms: counts [n_cards, bins] and per-card [min, max]. */
export interface Histograms {
  counts: NDArray;
  ranges: NDArray | null;
}

/** The histograms trait decoded, or null when absent or not one row per card. */
export function decodeHistograms(state: HistogramState | null | undefined, n: number): Histograms | null {
  if (!state || !state.counts || state.counts.buffer === undefined || state.counts.buffer === null) return null;
  const counts = decodeArray(state.counts);
  if (counts.shape.length !== 2 || counts.shape[0] !== n) return null;
  const ranges =
    state.ranges && state.ranges.buffer !== undefined && state.ranges.buffer !== null ? decodeArray(state.ranges) : null;
  return { counts, ranges };
}
