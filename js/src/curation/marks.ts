// The band's samples and their marks: decoding the items, filtering by mark, counts.

import { decodeArray, type ArrayMeta, type NDArray } from "../lib/codec";
import type { ItemsState, Mark } from "./model";

export interface Items {
  samples: NDArray;
  scores: NDArray | null;
  labels: NDArray | null;
  predictions: NDArray | null;
  groups: NDArray | null;
}

/** The items trait decoded, or null when it has no samples. */
export function decodeItems(state: ItemsState | undefined): Items | null {
  if (!state || !state.samples || state.samples.buffer == null) return null;
  const opt = (m?: ArrayMeta) => (m && m.buffer != null ? decodeArray(m) : null);
  return {
    samples: decodeArray(state.samples),
    scores: opt(state.scores),
    labels: opt(state.labels),
    predictions: opt(state.predictions),
    groups: opt(state.groups),
  };
}

/** Positions (into the items) shown for a filter: all, unmarked or one mark. */
export function filterItems(samples: ArrayLike<number>, marks: Record<string, Mark>, filter: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < samples.length; i++) {
    const m = marks[String(samples[i])];
    if (filter === "all" || (filter === "unmarked" && m === undefined) || m === filter) out.push(i);
  }
  return out;
}

/** Marked samples that `samples` (the band) does not hold. */
export function marksOutside(samples: ArrayLike<number>, marks: Record<string, Mark>): number {
  const shown = new Set<string>();
  for (let i = 0; i < samples.length; i++) shown.add(String(samples[i]));
  let n = 0;
  for (const s of Object.keys(marks)) if (!shown.has(s)) n++;
  return n;
}

/** Counts per mark over all marks (the band's and earlier bands'). */
export function countMarks(marks: Record<string, Mark>): Record<Mark, number> {
  const c: Record<Mark, number> = { keep: 0, spurious: 0, exclude: 0 };
  for (const m of Object.values(marks)) if (m in c) c[m]++;
  return c;
}
