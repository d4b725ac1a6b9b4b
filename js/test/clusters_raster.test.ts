import { describe, expect, it } from "vitest";
import { combine } from "../src/clusters/pointer";
import { CellOrder, boxHits, colourIndex, lassoHits, rasterPoints } from "../src/clusters/raster";
import { pointsInBox, pointsInPolygon, rasterize } from "./scatter_reference";

function rng(seed: number) {
  let s = seed;
  return () => (s = (s * 16807) % 2147483647) / 2147483647;
}

/** n points on distinct cells of a coarse lattice (no two squares overlap), some off-canvas. */
function sparse(n: number, seed: number): Float32Array {
  const rand = rng(seed);
  const xy = new Float32Array(2 * n);
  const used = new Set<number>();
  for (let i = 0; i < n; i++) {
    let key = 0;
    do key = Math.floor(rand() * 60) * 1000 + Math.floor(rand() * 40);
    while (used.has(key));
    used.add(key);
    // lattice step 0.5 data units = 10 px at scale 20: squares up to 8 px never overlap
    xy[2 * i] = Math.floor(key / 1000) * 0.5 - 12 + rand() * 0.05;
    xy[2 * i + 1] = (key % 1000) * 0.5 - 8 + rand() * 0.05;
  }
  return xy;
}

describe("rasterPoints", () => {
  it("paints the same pixels as the per-point rasteriser where points do not overlap", () => {
    const n = 400;
    const xy = sparse(n, 3);
    xy[2 * 7] = NaN; // non-finite points are never drawn
    xy[2 * 9 + 1] = Infinity;
    const codes = new Uint8Array(n).map((_, i) => (i * 7) % 5);
    codes[11] = 200; // out of range: colour 0
    const colours = new Uint32Array([0xff000001, 0xff000002, 0xff000003, 0xff000004, 0xff000005]);
    const dimmed = colours.map((c) => c & 0x2fffffff);
    const selected = new Uint8Array(n).map((_, i) => (i % 3 === 0 ? 1 : 0));
    const cells = new CellOrder(xy, n);
    const index = cells.gather16(colourIndex(codes, n, colours.length));
    for (const dpr of [1, 2]) {
      const w = 300 * dpr;
      const hgt = 200 * dpr;
      for (const size of [1, 2, 3, 8]) {
        for (const sel of [null, selected]) {
          const view = { cx: 1.3, cy: -0.4, scale: 20 };
          const want = new Uint32Array(w * hgt);
          const got = new Uint32Array(w * hgt).fill(7);
          const a = rasterize(want, w, hgt, dpr, view, xy, n, codes, colours, dimmed, sel, size);
          const b = rasterPoints(got, w, hgt, dpr, view, { cells, index, colours, dimmed, selected: cells.gather8(sel), size });
          expect(b).toBe(a);
          expect(a).toBeGreaterThan(50);
          expect(a).toBeLessThan(n - 2); // some fall off the canvas
          let differ = 0;
          for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) differ++;
          expect(differ).toBe(0);
        }
      }
    }
  });

  it("draws nothing for points far outside the view and colour 0 without codes", () => {
    const xy = new Float32Array([0, 0, 1, 1]);
    const cells = new CellOrder(xy, 2);
    const colours = new Uint32Array([0xff0000ff, 0xff00ff00]);
    const px = new Uint32Array(100);
    expect(rasterPoints(px, 10, 10, 1, { cx: 100, cy: 0, scale: 1 }, { cells, index: null, colours, dimmed: colours, selected: null, size: 2 })).toBe(0);
    expect(px.every((v) => v === 0)).toBe(true);
    expect(rasterPoints(px, 10, 10, 1, { cx: 0.5, cy: 0.5, scale: 4 }, { cells, index: null, colours, dimmed: colours, selected: null, size: 1 })).toBe(2);
    expect(px.filter((v) => v === colours[0]).length).toBe(2);
  });
});

describe("CellOrder", () => {
  it("is a stable sort of the finite points by cell", () => {
    const rand = rng(5);
    const n = 5000;
    const xy = new Float32Array(2 * n).map(() => rand() * 10 - 5);
    xy[10] = NaN;
    const cells = new CellOrder(xy, n);
    expect(cells.m).toBe(n - 1);
    expect(new Set(cells.order).size).toBe(n - 1);
    expect([...cells.order].includes(5)).toBe(false);
    const cellOf = (i: number) => cells.cellY(xy[2 * i + 1]) * cells.g + cells.cellX(xy[2 * i]);
    for (let k = 0; k < cells.m; k++) {
      const i = cells.order[k];
      expect(cells.xy[2 * k]).toBe(xy[2 * i]);
      const c = cellOf(i);
      expect(k >= cells.start[c] && k < cells.start[c + 1]).toBe(true);
      if (k > 0 && cellOf(cells.order[k - 1]) === c) expect(cells.order[k - 1]).toBeLessThan(i);
    }
  });
});

describe("lasso and box hits", () => {
  it("find the same points as a test of every point", () => {
    const rand = rng(11);
    const n = 20000;
    const xy = new Float32Array(2 * n).map(() => rand() * 20 - 10);
    const cells = new CellOrder(xy, n);
    for (let q = 0; q < 25; q++) {
      const m = 3 + Math.floor(rand() * 200);
      const cx = rand() * 16 - 8;
      const cy = rand() * 16 - 8;
      // star-shaped, and every fifth one a random (self-crossing) polygon
      const poly: number[] = [];
      for (let k = 0; k < m; k++) {
        const a = (2 * Math.PI * k) / m;
        const r = q % 5 === 0 ? rand() * 8 : 1 + rand() * 6;
        poly.push(q % 5 === 0 ? cx + (rand() - 0.5) * 12 : cx + r * Math.cos(a), q % 5 === 0 ? cy + (rand() - 0.5) * 12 : cy + r * Math.sin(a));
      }
      const want = pointsInPolygon(xy, n, poly);
      expect(lassoHits(cells, n, poly)).toEqual(want);
      const [ax, ay, bx, by] = [rand() * 24 - 12, rand() * 24 - 12, rand() * 24 - 12, rand() * 24 - 12];
      expect(boxHits(cells, n, ax, ay, bx, by)).toEqual(pointsInBox(xy, n, ax, ay, bx, by));
    }
    expect(lassoHits(cells, n, [0, 0, 1, 1])).toEqual([]);
    // a large round lasso: most cells lie wholly inside it (no point tested there)
    const circle: number[] = [];
    for (let k = 0; k < 400; k++) circle.push(0.3 + 8 * Math.cos((2 * Math.PI * k) / 400), -0.2 + 8 * Math.sin((2 * Math.PI * k) / 400));
    const round = pointsInPolygon(xy, n, circle);
    expect(round.length).toBeGreaterThan(0.4 * n);
    expect(lassoHits(cells, n, circle)).toEqual(round);
  });
});

describe("combine", () => {
  it("replaces, adds and removes like set operations, at any size", () => {
    const rand = rng(2);
    const selected = Array.from({ length: 30000 }, () => Math.floor(rand() * 100000));
    const uniq = [...new Set(selected)];
    const found = [...new Set(Array.from({ length: 40000 }, () => Math.floor(rand() * 120000)))].sort((a, b) => a - b);
    const none = { shiftKey: false, altKey: false, ctrlKey: false, metaKey: false };
    expect(combine(uniq, found, none)).toBe(found);
    const have = new Set(uniq);
    expect(combine(uniq, found, { ...none, shiftKey: true })).toEqual([...uniq, ...found.filter((i) => !have.has(i))]);
    const drop = new Set(found);
    expect(combine(uniq, found, { ...none, altKey: true })).toEqual(uniq.filter((i) => !drop.has(i)));
    expect(combine([], [], { ...none, metaKey: true })).toEqual([]);
  });
});

describe("CellOrder.nearest", () => {
  it("finds the nearest point within a radius like a brute-force search", () => {
    const rand = rng(9);
    const n = 20000;
    const xy = new Float32Array(2 * n).map(() => rand() * 10);
    xy[0] = NaN;
    const cells = new CellOrder(xy, n);
    for (let q = 0; q < 300; q++) {
      const x = rand() * 12 - 1;
      const y = rand() * 12 - 1;
      const r = q % 3 === 0 ? 0.02 : 0.3;
      let bd = r * r;
      let best = -1;
      for (let i = 0; i < n; i++) {
        const d = (xy[2 * i] - x) ** 2 + (xy[2 * i + 1] - y) ** 2;
        if (d <= bd) {
          bd = d;
          best = i;
        }
      }
      const got = cells.nearest(x, y, r);
      if (best < 0) expect(got).toBe(-1);
      else expect((xy[2 * got] - x) ** 2 + (xy[2 * got + 1] - y) ** 2).toBe(bd);
    }
  });
});
