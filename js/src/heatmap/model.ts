// DistanceHeatmap's traits (Python side: repwidgets/widgets/heatmap.py), view options
// and the handle tests and benchmarks reach through the root element's `__rw`.

import type { ArrayMeta } from "../lib/codec";
import type { HView, MatrixState } from "../lib/matrix";

export interface HeatmapModel {
  values: MatrixState | null;
  permutation: ArrayMeta | null;
  neuron_ids: ArrayMeta | null;
  labels: string[];
  order: string;
  selected: number[];
  colormap: string;
  vmin: number | null;
  vmax: number | null;
  value_name: string;
  has_thumbnails: boolean;
  title: string;
  height: number;
}

export interface HeatmapOptions {
  /** Plot size override (tests: jsdom has no layout). */
  measure?: () => { width: number; height: number };
}

export interface HeatmapHandle {
  /** Redraw now; returns the milliseconds it took. */
  draw(): number;
  /** Screen centre (CSS px, relative to the matrix canvas) of matrix entry (a, b), or null when off screen. */
  screenOf(a: number, b: number): [number, number] | null;
  view(): HView;
  setView(v: HView): void;
  k(): number;
}

/** Selection marks left of and above the matrix (px). */
export const GUTTER = 10;
/** The colour legend's width (px; .rw-hm-legend in heatmap.css). */
export const LEGEND_W = 64;
