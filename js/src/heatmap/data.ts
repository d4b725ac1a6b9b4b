// Reading the heatmap's traits: neuron ids and the display permutation, validated.

import { decodeArray, type ArrayMeta } from "../lib/codec";

/** Neuron ids of the k rows: the trait's when it has k of them, else 0..k-1. */
export function decodeIds(meta: ArrayMeta | null | undefined, k: number): Int32Array {
  const ids = new Int32Array(k);
  const raw = meta && meta.buffer ? decodeArray(meta).data : null;
  for (let i = 0; i < k; i++) ids[i] = raw && raw.length === k ? raw[i] : i;
  return ids;
}

/** The display order (display row -> matrix row): the trait's when it is a permutation of 0..k-1, else identity. */
export function decodePermutation(meta: ArrayMeta | null | undefined, k: number): Int32Array {
  const raw = meta && meta.buffer ? decodeArray(meta).data : null;
  const perm = new Int32Array(k);
  let ok = !!raw && raw.length === k;
  if (ok) {
    const seen = new Uint8Array(k);
    for (let r = 0; r < k; r++) {
      const p = raw![r];
      if (!(p >= 0 && p < k) || seen[p]) {
        ok = false;
        break;
      }
      seen[p] = 1;
      perm[r] = p;
    }
  }
  if (!ok) for (let r = 0; r < k; r++) perm[r] = r;
  return perm;
}
