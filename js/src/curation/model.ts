// CurationSelector's traits (Python side: repwidgets/widgets/curation.py) and options.

import type { ArrayMeta } from "../lib/codec";

export type Mark = "keep" | "spurious" | "exclude";
export const MARKS: Mark[] = ["keep", "spurious", "exclude"];

export interface ItemsState {
  samples?: ArrayMeta;
  scores?: ArrayMeta;
  logits?: ArrayMeta;
  labels?: ArrayMeta;
  predictions?: ArrayMeta;
  groups?: ArrayMeta;
}

export interface CurationModel {
  items: ItemsState;
  class_names: string[];
  group_names: string[];
  marks: Record<string, Mark>;
  band: number[];
  absolute: boolean;
  limits: number[];
  histogram: { counts?: ArrayMeta; range?: number[] };
  title: string;
  score_name: string;
  file: string;
  error: string;
  version: number;
  thumb_size: number;
  height: number;
  can_move_band: boolean;
}

export interface CurationOptions {
  measure?: () => { width: number; height: number };
  batchSize?: number;
  /** Delay before a moved slider asks Python for the new band (ms). */
  bandDelay?: number;
}
