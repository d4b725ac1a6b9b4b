// Canvas widgets never draw into a hidden (0 x 0) area and redraw when a real size
// arrives: the ResizeObserver and IntersectionObserver are stood in for here, since
// jsdom has neither.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { renderBrowser } from "../src/clusters";
import { renderCuration } from "../src/curation";
import { renderHeatmap } from "../src/heatmap";
import { fitView } from "../src/lib/scatter";
import { MIN_DRAW_PX, drawable } from "../src/lib/visibility";
import { MockModel } from "./mockModel";

type Callback = (entries: { isIntersecting: boolean }[]) => void;
let observers: { kind: string; cb: Callback; targets: Element[] }[] = [];
const saved = { ro: (globalThis as any).ResizeObserver, io: (globalThis as any).IntersectionObserver };

function fakeObserver(kind: string) {
  return class {
    private entry: { kind: string; cb: Callback; targets: Element[] };
    constructor(cb: Callback) {
      this.entry = { kind, cb, targets: [] };
      observers.push(this.entry);
    }
    observe(el: Element) {
      this.entry.targets.push(el);
    }
    disconnect() {
      observers = observers.filter((o) => o !== this.entry);
    }
  };
}

/** The browser reports `el` scrolled into view (or resized, for "resize"). */
function report(kind: string, el: Element, isIntersecting = true) {
  for (const o of observers) if (o.kind === kind && o.targets.includes(el)) o.cb([{ isIntersecting }]);
}

const nextFrame = () => new Promise((r) => setTimeout(r, 20));

const disposers: (() => void)[] = [];
beforeEach(() => {
  (globalThis as any).ResizeObserver = fakeObserver("resize");
  (globalThis as any).IntersectionObserver = fakeObserver("intersect");
});
afterEach(() => {
  disposers.splice(0).forEach((d) => d());
  document.body.innerHTML = "";
  (globalThis as any).ResizeObserver = saved.ro;
  (globalThis as any).IntersectionObserver = saved.io;
  observers = [];
});

function grid(k: number): Float32Array {
  const xy = new Float32Array(2 * k * k);
  for (let i = 0; i < k * k; i++) {
    xy[2 * i] = i % k;
    xy[2 * i + 1] = Math.floor(i / k);
  }
  return xy;
}

function browserModel() {
  const xy = grid(10);
  return new MockModel({
    points: { xy: { dtype: "float32", shape: [100, 2], buffer: new DataView(xy.buffer) } },
    codes: null,
    colorings: [],
    color_by: "",
    clusters: [],
    selected: [],
    focus: -1,
    mode: "lasso",
    title: "",
    height: 300,
    point_size: 3,
  });
}

describe("drawable", () => {
  it("refuses areas smaller than a few pixels", () => {
    expect(drawable(0, 0)).toBe(false);
    expect(drawable(1, 1)).toBe(false);
    expect(drawable(400, MIN_DRAW_PX - 1)).toBe(false);
    expect(drawable(NaN, 300)).toBe(false);
    expect(drawable(MIN_DRAW_PX, MIN_DRAW_PX)).toBe(true);
  });
});

describe("ConceptBrowser while hidden", () => {
  it("keeps its canvases and view while hidden, and redraws and refits when it scrolls back", async () => {
    let size = { width: 400, height: 300 };
    const el = document.createElement("div");
    document.body.appendChild(el);
    disposers.push(renderBrowser(browserModel() as any, el, { measure: () => size }));
    const handle = (el.querySelector(".rw-browser") as any).__rw;
    const points = el.querySelector<HTMLCanvasElement>("canvas.rw-points")!;
    const plot = el.querySelector(".rw-plot")!;
    expect(points.width).toBe(400);
    const fitted = handle.view();
    expect(fitted.scale).toBeCloseTo(fitView(grid(10), 100, 400, 300).scale);

    size = { width: 0, height: 0 }; // display: none, or the cell taken out of the page
    handle.draw();
    expect([points.width, points.height]).toEqual([400, 300]);
    expect(handle.view()).toEqual(fitted);

    size = { width: 600, height: 300 }; // back on screen, wider than before
    report("intersect", plot);
    await nextFrame();
    expect([points.width, points.height]).toEqual([600, 300]);
    expect(points.style.width).toBe("600px");
    expect(handle.view().scale).toBeCloseTo(fitView(grid(10), 100, 600, 300).scale);
  });

  it("does not fit its first view into a hidden plot", async () => {
    let size = { width: 0, height: 0 };
    const el = document.createElement("div");
    document.body.appendChild(el);
    disposers.push(renderBrowser(browserModel() as any, el, { measure: () => size }));
    const points = el.querySelector<HTMLCanvasElement>("canvas.rw-points")!;
    expect(points.width).not.toBeLessThan(MIN_DRAW_PX);
    // the reset button while hidden must not fit either
    el.querySelectorAll<HTMLButtonElement>("button").forEach((b) => b.textContent === "reset" && b.click());
    size = { width: 400, height: 300 };
    report("resize", el.querySelector(".rw-plot")!);
    await nextFrame();
    expect(points.width).toBe(400);
    const handle = (el.querySelector(".rw-browser") as any).__rw;
    expect(handle.view().scale).toBeCloseTo(fitView(grid(10), 100, 400, 300).scale);
  });
});

function heatmapModel() {
  const k = 4;
  const values = new Float32Array(k * k).map((_, i) => i);
  return new MockModel({
    values: { values: { dtype: "float32", shape: [k * k], buffer: new DataView(values.buffer) }, k, packing: "full" },
    permutation: null,
    neuron_ids: null,
    labels: [],
    order: "none",
    selected: [],
    colormap: "viridis",
    vmin: null,
    vmax: null,
    value_name: "d",
    has_thumbnails: false,
    title: "",
    height: 400,
  });
}

describe("DistanceHeatmap while hidden", () => {
  it("keeps its matrix canvas while hidden and redraws at the new size when shown", async () => {
    let size = { width: 300, height: 300 };
    const el = document.createElement("div");
    document.body.appendChild(el);
    disposers.push(renderHeatmap(heatmapModel() as any, el, { measure: () => size }));
    const matrix = el.querySelector<HTMLCanvasElement>("canvas.rw-hm-matrix")!;
    const root = el.querySelector(".rw-heatmap")!;
    const handle = (root as any).__rw;
    expect(matrix.width).toBe(300);
    size = { width: 0, height: 0 };
    handle.draw();
    expect(matrix.width).toBe(300);
    expect(handle.view().s).toBeCloseTo(300 / 4);
    size = { width: 200, height: 200 };
    report("intersect", root);
    await nextFrame();
    expect(matrix.width).toBe(200);
    expect(handle.view().s).toBeCloseTo(200 / 4);
  });
});

describe("CurationSelector histogram while hidden", () => {
  it("draws the band histogram only once the band panel has a real width", async () => {
    const counts = new Float32Array([1, 2, 3]);
    const samples = new Int32Array([1, 2]);
    const model = new MockModel({
      items: { samples: { dtype: "int32", shape: [2], buffer: new DataView(samples.buffer) } },
      class_names: [],
      group_names: [],
      marks: {},
      band: [0.25, 0.75],
      absolute: false,
      limits: [1, 2],
      histogram: { counts: { dtype: "float32", shape: [3], buffer: new DataView(counts.buffer) }, range: [0, 3] },
      title: "",
      score_name: "logit",
      file: "",
      error: "",
      version: 1,
      thumb_size: 72,
      height: 480,
      can_move_band: true,
    });
    const el = document.createElement("div");
    document.body.appendChild(el);
    disposers.push(renderCuration(model as any, el, {}));
    const hist = el.querySelector<HTMLElement>(".rw-cur-hist")!;
    const canvas = hist.querySelector("canvas")!;
    const before = canvas.width; // jsdom's default: nothing was drawn into the 0-px panel
    await nextFrame();
    expect(canvas.width).toBe(before);
    Object.defineProperty(hist, "clientWidth", { value: 517, configurable: true });
    report("resize", hist);
    expect(canvas.width).toBe(517);
  });
});
