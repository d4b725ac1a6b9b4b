import { describe, expect, it } from "vitest";
import {
  buildLut,
  cellAt,
  cellCentre,
  clampView,
  codeColours,
  colourAt,
  decodeMatrix,
  expandUpper,
  fitView,
  inversePermutation,
  matrixRange,
  pack,
  panBy,
  rasterize,
  rowsToIds,
  scaleT,
  valueAt,
  zoomAt,
} from "../src/lib/matrix";
import { renderHeatmap } from "../src/heatmap";
import { MockModel, fakeImageBatch, flush } from "./mockModel";

const HOSTILE = "<img src=x onerror=alert(1)>";

/** Encode like Python's encode_matrix: {values: {dtype, shape, buffer}, k, packing, ...}. */
function encoded(full: number[][], dtype: "float32" | "uint16" | "uint8" = "float32", packing: "full" | "upper" = "full") {
  const k = full.length;
  const flat: number[] = [];
  for (let i = 0; i < k; i++) for (let j = packing === "upper" ? i : 0; j < k; j++) flat.push(full[i][j]);
  const lo = Math.min(...flat);
  const hi = Math.max(...flat);
  let data: Float32Array | Uint16Array | Uint8Array;
  if (dtype === "float32") data = Float32Array.from(flat);
  else {
    const qmax = dtype === "uint8" ? 255 : 65535;
    const q = flat.map((v) => Math.round(((v - lo) / (hi - lo)) * qmax));
    data = dtype === "uint8" ? Uint8Array.from(q) : Uint16Array.from(q);
  }
  return {
    values: { dtype, shape: [flat.length], buffer: new DataView(data.buffer) },
    k,
    packing,
    quantized: dtype !== "float32",
    lo,
    hi,
  };
}

function int32(values: number[]) {
  return { dtype: "int32", shape: [values.length], buffer: new DataView(Int32Array.from(values).buffer) };
}

function symmetric(k: number): number[][] {
  return Array.from({ length: k }, (_, i) => Array.from({ length: k }, (_, j) => Math.abs(i - j) + 0.25 * Math.min(i, j)));
}

describe("colour scale", () => {
  it("interpolates the colour map ends and middle and clamps", () => {
    expect(colourAt("viridis", 0)).toEqual([0x44, 0x01, 0x54]);
    expect(colourAt("viridis", 1)).toEqual([0xfd, 0xe7, 0x25]);
    expect(colourAt("greys", 0.5)).toEqual([128, 128, 128]);
    expect(colourAt("greys", -3)).toEqual([255, 255, 255]);
    expect(colourAt("greys", 7)).toEqual([0, 0, 0]);
    expect(colourAt("unknown", 0)).toEqual(colourAt("viridis", 0));
    expect(colourAt("greys", NaN)).toEqual([255, 255, 255]);
  });

  it("builds a monotone lookup table and maps values onto the scale", () => {
    const lut = buildLut("greys", 256);
    expect(lut[0]).toBe(pack([255, 255, 255]));
    expect(lut[255]).toBe(pack([0, 0, 0]));
    const red = (c: number) => c & 255;
    for (let i = 1; i < 256; i++) expect(red(lut[i])).toBeLessThanOrEqual(red(lut[i - 1]));
    expect(scaleT(5, 0, 10)).toBe(0.5);
    expect(scaleT(-1, 0, 10)).toBe(0);
    expect(scaleT(11, 0, 10)).toBe(1);
    expect(scaleT(3, 2, 2)).toBe(0.5);
  });
});

describe("decode", () => {
  it("expands an upper triangle into the full symmetric matrix", () => {
    const full = symmetric(5);
    const tri: number[] = [];
    for (let i = 0; i < 5; i++) for (let j = i; j < 5; j++) tri.push(full[i][j]);
    const out = expandUpper(Float32Array.from(tri), 5);
    for (let i = 0; i < 5; i++) for (let j = 0; j < 5; j++) expect(out[i * 5 + j]).toBeCloseTo(full[i][j], 6);
    expect(() => expandUpper(new Float32Array(7), 5)).toThrow(/15 values/);
  });

  it("decodes float32 and quantised matrices, full and packed, within the quantisation step", () => {
    const k = 6;
    const full = symmetric(k);
    for (const dtype of ["float32", "uint16", "uint8"] as const) {
      for (const packing of ["full", "upper"] as const) {
        const m = decodeMatrix(encoded(full, dtype, packing));
        expect(m.k).toBe(k);
        expect(m.quantized).toBe(dtype !== "float32");
        const tol = dtype === "float32" ? 1e-6 : m.step / 2 + 1e-9;
        for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) expect(Math.abs(valueAt(m, i, j) - full[i][j])).toBeLessThanOrEqual(tol);
        const [lo, hi] = matrixRange(m);
        expect(lo).toBeCloseTo(0, 5);
        expect(hi).toBeCloseTo(Math.max(...full.flat()), 5);
      }
    }
  });

  it("rejects inconsistent sizes", () => {
    const bad = encoded(symmetric(3));
    bad.k = 4;
    expect(() => decodeMatrix(bad)).toThrow(/16 values/);
  });

  it("gives every quantised code its colour on the scale", () => {
    const m = decodeMatrix(encoded(symmetric(4), "uint8"));
    const lut = buildLut("greys", 256);
    const codes = codeColours(m, lut, m.lo, m.hi)!;
    expect(codes.length).toBe(256);
    expect(codes[0]).toBe(lut[0]);
    expect(codes[255]).toBe(lut[255]);
    expect(codeColours(decodeMatrix(encoded(symmetric(4))), lut, 0, 1)).toBeNull();
  });
});

describe("index mapping under zoom and pan", () => {
  const k = 100;
  const size = 500;

  it("maps screen points to cells and back at fit", () => {
    const v = fitView(k, size); // 5 px per cell
    expect(cellAt(v, 0, 0, k)).toEqual([0, 0]);
    expect(cellAt(v, 12, 27, k)).toEqual([5, 2]);
    expect(cellAt(v, 499, 499, k)).toEqual([99, 99]);
    expect(cellAt(v, 500, 10, k)).toBeNull();
    expect(cellAt(v, -1, 10, k)).toBeNull();
    const [x, y] = cellCentre(v, 5, 2);
    expect(cellAt(v, x, y, k)).toEqual([5, 2]);
  });

  it("keeps the cell under the cursor fixed while zooming, and clamps", () => {
    let v = fitView(k, size);
    const before = cellAt(v, 123, 321, k);
    v = zoomAt(v, 123, 321, 4, k, size);
    expect(v.s).toBeCloseTo(20);
    expect(cellAt(v, 123, 321, k)).toEqual(before);
    // every cell stays reachable: the centre of (r, c) maps back to (r, c)
    for (const [r, c] of [[40, 41], [60, 17]]) {
      const [x, y] = cellCentre(v, r, c);
      if (x >= 0 && y >= 0 && x < size && y < size) expect(cellAt(v, x, y, k)).toEqual([r, c]);
    }
    // zooming out past the fit snaps back to the whole matrix
    expect(zoomAt(v, 10, 10, 1e-6, k, size)).toEqual(fitView(k, size));
    expect(zoomAt(v, 10, 10, 1e6, k, size).s).toBe(64);
  });

  it("pans in cells and never past the edges", () => {
    const v = { x0: 10, y0: 10, s: 10 }; // 50 cells on screen
    const p = panBy(v, -30, 20, k, size);
    expect(p.x0).toBeCloseTo(13);
    expect(p.y0).toBeCloseTo(8);
    expect(panBy(v, 1e6, 1e6, k, size)).toMatchObject({ x0: 0, y0: 0 });
    expect(panBy(v, -1e6, -1e6, k, size)).toMatchObject({ x0: 50, y0: 50 });
    expect(clampView({ x0: 5, y0: 5, s: 1 }, k, size)).toEqual(fitView(k, size));
  });

  it("turns display rows into original ids through the permutation", () => {
    const perm = [3, 0, 2, 1];
    const ids = [10, 11, 12, 13];
    expect(rowsToIds(2, 0, perm, ids)).toEqual([13, 10, 12]);
    expect(rowsToIds(1, 9, perm, ids)).toEqual([10, 12, 11]);
    expect(Array.from(inversePermutation(perm))).toEqual([1, 3, 2, 0]);
  });
});

describe("rasterize", () => {
  it("paints each pixel with the colour of its permuted cell", () => {
    const full = [
      [0, 1, 2],
      [1, 0, 3],
      [2, 3, 0],
    ];
    const m = decodeMatrix(encoded(full));
    const lut = buildLut("greys", 256);
    const perm = [2, 0, 1];
    const w = 6;
    const px = new Uint32Array(w * w);
    const n = rasterize(px, w, w, 1, fitView(3, 6), m, perm, lut, null, 0, 3, 7);
    expect(n).toBe(36);
    for (let y = 0; y < w; y++) {
      for (let x = 0; x < w; x++) {
        const v = full[perm[Math.floor(y / 2)]][perm[Math.floor(x / 2)]];
        expect(px[y * w + x]).toBe(lut[Math.round((v / 3) * 255)]);
      }
    }
    // zoomed and panned so that only cell (2, 2) shows, then past the edge: background
    const px2 = new Uint32Array(4);
    rasterize(px2, 2, 2, 1, { x0: 2, y0: 2, s: 1 }, m, perm, lut, null, 0, 3, 7);
    expect(px2[0]).toBe(lut[Math.round((full[1][1] / 3) * 255)]);
    expect(px2[1]).toBe(7);
    expect(px2[3]).toBe(7);
  });

  it("uses code colours for quantised data", () => {
    const m = decodeMatrix(encoded(symmetric(4), "uint16", "upper"));
    const lut = buildLut("viridis", 256);
    const codes = codeColours(m, lut, m.lo, m.hi)!;
    const px = new Uint32Array(16);
    rasterize(px, 4, 4, 1, fitView(4, 4), m, [0, 1, 2, 3], lut, codes, m.lo, m.hi, 0);
    for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) expect(px[i * 4 + j]).toBe(codes[m.data[i * 4 + j]]);
  });
});

describe("widget (jsdom)", () => {
  function model(extra: Record<string, unknown> = {}) {
    return new MockModel({
      values: encoded(symmetric(4)),
      permutation: int32([3, 2, 1, 0]),
      neuron_ids: int32([40, 41, 42, 43]),
      labels: ["a", HOSTILE, "c", "d"],
      order: "cluster",
      selected: [],
      colormap: "viridis",
      vmin: null,
      vmax: null,
      value_name: "distance",
      has_thumbnails: true,
      title: "t",
      height: 400,
      ...extra,
    });
  }

  it("renders, shows Python's selection and cleans up", () => {
    const el = document.createElement("div");
    const m = model({ selected: [41, 99] });
    const cleanup = renderHeatmap(m as any, el, { measure: () => ({ width: 400, height: 400 }) });
    expect(el.querySelector(".rw-status")!.textContent).toBe("4 × 4 · 1 selected");
    m.update("selected", [40, 41, 42]);
    expect(el.querySelector(".rw-status")!.textContent).toBe("4 × 4 · 3 selected");
    const handle = (el.querySelector(".rw-heatmap") as any).__rw;
    expect(handle.k()).toBe(4);
    // permutation [3, 2, 1, 0]: matrix row 0 is the last display row
    expect(handle.screenOf(0, 3)).toEqual([50, 350]);
    expect(el.innerHTML.includes("<img src=x")).toBe(false);
    cleanup();
    expect(el.querySelector(".rw-heatmap")).toBeNull();
    expect(m.listenerCount("change:selected")).toBe(0);
  });

  it("clicks: plain selects one row, ctrl toggles, shift takes the rows from the anchor", () => {
    const el = document.createElement("div");
    const m = model();
    const cleanup = renderHeatmap(m as any, el, { measure: () => ({ width: 400, height: 400 }) });
    const overlay = el.querySelector("canvas.rw-hm-overlay")!;
    // display row r (100 px each, after a 10 px gutter) holds id [43, 42, 41, 40][r]
    const click = (row: number, mods: MouseEventInit = {}) => {
      const at = { clientX: 10 + 150, clientY: 10 + 100 * row + 50, bubbles: true, ...mods };
      overlay.dispatchEvent(new MouseEvent("pointerdown", at));
      overlay.dispatchEvent(new MouseEvent("pointerup", at));
      return m.state.selected;
    };
    expect(click(1)).toEqual([42]);
    expect(click(1)).toEqual([42]); // a second plain click keeps it
    expect(click(3, { ctrlKey: true })).toEqual([42, 40]);
    expect(click(2, { metaKey: true })).toEqual([42, 40, 41]);
    expect(click(1, { ctrlKey: true })).toEqual([40, 41]);
    expect(click(0)).toEqual([43]); // plain: only this one
    expect(click(2, { shiftKey: true })).toEqual([43, 42, 41]);
    expect(click(1, { shiftKey: true })).toEqual([43, 42]); // the range follows the anchor
    cleanup();
  });

  it("hover fills the tooltip as text and fetches both images", async () => {
    const el = document.createElement("div");
    document.body.appendChild(el);
    const m = model();
    m.responder = (msg) => (msg.type === "fetch" ? [{ ...fakeImageBatch(msg.keys)[0], request_id: msg.request_id, ok: true, keys: msg.keys }, fakeImageBatch(msg.keys)[1]] : undefined);
    const cleanup = renderHeatmap(m as any, el, { measure: () => ({ width: 400, height: 400 }) });
    const overlay = el.querySelector("canvas.rw-hm-overlay")!;
    // jsdom: getBoundingClientRect is all zeros, so client coordinates are local + gutter
    const ev = new MouseEvent("pointermove", { clientX: 10 + 150, clientY: 10 + 250 });
    overlay.dispatchEvent(ev);
    const tip = el.querySelector(".rw-hm-tip") as HTMLElement;
    expect(tip.hidden).toBe(false);
    // display row 2 -> matrix row 1 (id 41), display col 1 -> matrix row 2 (id 42)
    expect(tip.dataset.i).toBe("41");
    expect(tip.dataset.j).toBe("42");
    expect(Number(tip.dataset.value)).toBeCloseTo(symmetric(4)[1][2]);
    expect(tip.textContent).toContain(HOSTILE);
    expect(tip.querySelectorAll("img").length).toBe(2);
    await flush();
    await flush();
    expect(m.sent.filter((s) => s.type === "fetch").flatMap((s) => s.keys)).toEqual([41, 42]);
    const keys = [...tip.querySelectorAll("img")].map((i) => i.getAttribute("data-key"));
    expect(keys).toEqual(["41", "42"]);
    cleanup();
    el.remove();
  });
});
