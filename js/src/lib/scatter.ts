// The view of a 2-D scatter: data <-> screen coordinates and the fit of all points.
// Drawing and hit tests live in clusters/raster.ts.

// ------------------------------------------------------------------ geometry
/** Screen = (data - centre) * scale, y up; origin in the middle of the canvas (CSS px). */
export interface View {
  cx: number;
  cy: number;
  scale: number;
}

export function fitView(xy: Float32Array, n: number, width: number, height: number): View {
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (let i = 0; i < n; i++) {
    const x = xy[2 * i];
    const y = xy[2 * i + 1];
    if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
    if (x < x0) x0 = x;
    if (x > x1) x1 = x;
    if (y < y0) y0 = y;
    if (y > y1) y1 = y;
  }
  if (!Number.isFinite(x0)) return { cx: 0, cy: 0, scale: 1 };
  const dx = Math.max(x1 - x0, 1e-9);
  const dy = Math.max(y1 - y0, 1e-9);
  const scale = 0.92 * Math.min(width / dx, height / dy);
  return { cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, scale: Number.isFinite(scale) && scale > 0 ? scale : 1 };
}

export function toScreen(v: View, w: number, hgt: number, x: number, y: number): [number, number] {
  return [(x - v.cx) * v.scale + w / 2, hgt / 2 - (y - v.cy) * v.scale];
}

export function toData(v: View, w: number, hgt: number, sx: number, sy: number): [number, number] {
  return [(sx - w / 2) / v.scale + v.cx, (hgt / 2 - sy) / v.scale + v.cy];
}
