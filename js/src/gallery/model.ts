// NeuronGallery's traits (Python side: repwidgets/widgets/gallery.py) and view options.

import type { ArrayMeta } from "../lib/codec";
import type { Key } from "../lib/fetcher";

export interface Card {
  id: number;
  label?: string;
  scores?: Record<string, number | null>;
  images?: Key[];
}

export interface HistogramState {
  counts?: ArrayMeta;
  ranges?: ArrayMeta;
}

export interface GalleryModel {
  cards: Card[];
  score_names: string[];
  histograms: HistogramState | null;
  selected: number[];
  sort_by: string;
  descending: boolean;
  query: string;
  title: string;
  noun: string;
  thumb_size: number;
  height: number;
  request_patience: number;
}

export interface GalleryOptions {
  /** Viewport size override (tests: jsdom has no layout). */
  measure?: () => { width: number; height: number };
  batchSize?: number;
  maxInFlight?: number;
  cacheSize?: number;
}
