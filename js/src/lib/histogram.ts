// A small bar histogram drawn on a canvas (crisp on high-DPI screens).

export interface HistogramStyle {
  bar: string;
  baseline: string;
  marker?: string;
}

/**
 * Draw `counts` as bars filling `canvas` (CSS size `width` x `height`).
 * `marker`, if given, is a fractional bin position (0..counts.length) drawn as a line.
 */
export function drawHistogram(
  canvas: HTMLCanvasElement,
  counts: ArrayLike<number>,
  width: number,
  height: number,
  style: HistogramStyle,
  marker?: number,
): boolean {
  const dpr = typeof devicePixelRatio === "number" && devicePixelRatio > 0 ? devicePixelRatio : 1;
  const w = Math.round(width * dpr);
  const hgt = Math.round(height * dpr);
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== hgt) canvas.height = hgt;
  let ctx: CanvasRenderingContext2D | null = null;
  try {
    ctx = canvas.getContext("2d");
  } catch {
    ctx = null;
  }
  if (!ctx) return false;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const n = counts.length;
  if (n === 0) return true;
  let max = 0;
  for (let i = 0; i < n; i++) max = Math.max(max, counts[i]);
  const bw = width / n;
  ctx.fillStyle = style.bar;
  if (max > 0) {
    for (let i = 0; i < n; i++) {
      const c = counts[i];
      if (c <= 0) continue;
      // square-root scale keeps small tails visible next to a tall mode
      const bh = Math.max(1, Math.sqrt(c / max) * (height - 1));
      ctx.fillRect(i * bw + 0.5, height - 1 - bh, Math.max(1, bw - 1), bh);
    }
  }
  ctx.fillStyle = style.baseline;
  ctx.fillRect(0, height - 1, width, 1);
  if (marker !== undefined && style.marker && Number.isFinite(marker)) {
    ctx.fillStyle = style.marker;
    ctx.fillRect(Math.min(width - 1, Math.max(0, (marker / n) * width)), 0, 1, height);
  }
  return true;
}
