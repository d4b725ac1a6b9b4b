// ConceptBrowser's traits (Python side: repwidgets/widgets/clusters.py), view options
// and the handle tests and benchmarks reach through the root element's `__rw`.

import type { ArrayMeta } from "../lib/codec";
import type { View } from "../lib/scatter";

export interface Coloring {
  name: string;
  categories: string[];
  /** Code 0 means "none" (drawn grey, listed last). */
  none?: boolean;
  /** A continuous colouring: codes 1..255 step along the ramp from range[0] to range[1]
   * (0: missing value); `categories` is empty. */
  range?: [number, number];
  /** The ramp of a continuous colouring (a colour map of lib/matrix.ts). */
  ramp?: string;
}

export interface ClusterInfo {
  id: number;
  label?: string;
  description?: string;
  size?: number;
  images?: number[];
  fields?: [string, string | number | null][];
}

export interface BrowserModel {
  points: { xy?: ArrayMeta; membership?: ArrayMeta } | null;
  codes: ArrayMeta | null;
  colorings: Coloring[];
  color_by: string;
  clusters: ClusterInfo[];
  selected: number[];
  focus: number;
  mode: string;
  title: string;
  height: number;
  point_size: number;
}

export interface BrowserOptions {
  /** Canvas size override (tests: jsdom has no layout). */
  measure?: () => { width: number; height: number };
}

export interface BrowserHandle {
  /** Redraw now; returns the milliseconds it took (used by tests and benchmarks). */
  draw(): number;
  /** Screen position (CSS px, relative to the plot) of point i. */
  screenOf(i: number): [number, number];
  view(): View;
  count(): number;
}

export type Mode = "lasso" | "box" | "pan";
export const MODES: Mode[] = ["lasso", "box", "pan"];

/** The colouring whose legend entries are the clusters (code c - 1 is cluster c - 1). */
export function isClusterColouring(col: Coloring | undefined): boolean {
  return !!col && col.none === true && col.name === "concept" && !col.range;
}
