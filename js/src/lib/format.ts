// Number formatting for scores and activation values.

/** A short, readable number: 3 significant digits, exponent only when needed. */
export function fmt(x: number | null | undefined): string {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  if (!Number.isFinite(x)) return x > 0 ? "∞" : "-∞";
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a >= 1e5 || a < 1e-3) return x.toExponential(2);
  if (Number.isInteger(x) && a < 1e5) return String(x);
  return Number(x.toPrecision(3)).toString();
}
