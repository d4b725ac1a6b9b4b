import { afterEach, describe, expect, it } from "vitest";
import { renderBrowser } from "../src/clusters";
import { categoryColour, categoryColours, codeLabel, codeValue, packColour } from "../src/clusters/colours";
import { isClusterColouring } from "../src/clusters/model";
import { fitView, toData, toScreen } from "../src/lib/scatter";
import { GridIndex, insidePolygon, pointsInBox, pointsInPolygon, rasterize } from "./scatter_reference";
import { NONE_COLOUR, distinctColours } from "../src/lib/palette";
import { MockModel, fakeImageBatch, flush } from "./mockModel";

const HOSTILE = "<img src=x onerror=alert(1)>";

function grid(k: number): Float32Array {
  // k x k points on the integer grid
  const xy = new Float32Array(2 * k * k);
  for (let i = 0; i < k * k; i++) {
    xy[2 * i] = i % k;
    xy[2 * i + 1] = Math.floor(i / k);
  }
  return xy;
}

describe("geometry", () => {
  it("tests points against a polygon (even-odd) and a box", () => {
    const square = [0, 0, 2, 0, 2, 2, 0, 2];
    expect(insidePolygon(square, 1, 1)).toBe(true);
    expect(insidePolygon(square, 3, 1)).toBe(false);
    const xy = grid(5); // 0..4 x 0..4
    const tri = [-0.5, -0.5, 4.5, -0.5, -0.5, 4.5]; // lower-left triangle x + y < 4
    const inside = pointsInPolygon(xy, 25, tri);
    const expected = [...Array(25).keys()].filter((i) => (i % 5) + Math.floor(i / 5) < 4);
    expect(inside).toEqual(expected);
    expect(pointsInBox(xy, 25, 3.5, 3.5, 0.5, 1.5)).toEqual([11, 12, 13, 16, 17, 18]);
    expect(pointsInPolygon(xy, 25, [0, 0, 1, 1])).toEqual([]);
  });

  it("maps data to screen and back", () => {
    const xy = grid(3);
    const v = fitView(xy, 9, 200, 100);
    const [sx, sy] = toScreen(v, 200, 100, 2, 2);
    const [x, y] = toData(v, 200, 100, sx, sy);
    expect(x).toBeCloseTo(2);
    expect(y).toBeCloseTo(2);
    // y grows upwards; everything fits
    expect(toScreen(v, 200, 100, 0, 0)[1]).toBeGreaterThan(toScreen(v, 200, 100, 0, 2)[1]);
    for (let i = 0; i < 9; i++) {
      const [a, b] = toScreen(v, 200, 100, xy[2 * i], xy[2 * i + 1]);
      expect(a).toBeGreaterThanOrEqual(0);
      expect(a).toBeLessThanOrEqual(200);
      expect(b).toBeGreaterThanOrEqual(0);
      expect(b).toBeLessThanOrEqual(100);
    }
  });

  it("finds the nearest point like a brute-force search", () => {
    let s = 1;
    const rand = () => ((s = (s * 16807) % 2147483647) / 2147483647);
    const n = 5000;
    const xy = new Float32Array(2 * n).map(() => rand() * 10);
    const index = new GridIndex(xy, n);
    for (let q = 0; q < 200; q++) {
      const x = rand() * 10;
      const y = rand() * 10;
      const r = 0.3;
      let best = -1;
      let bd = r * r;
      for (let i = 0; i < n; i++) {
        const d = (xy[2 * i] - x) ** 2 + (xy[2 * i + 1] - y) ** 2;
        if (d <= bd) {
          bd = d;
          best = i;
        }
      }
      const got = index.nearest(x, y, r);
      if (best < 0) expect(got).toBe(-1);
      else expect((xy[2 * got] - x) ** 2 + (xy[2 * got + 1] - y) ** 2).toBeCloseTo(bd, 10);
    }
  });

  it("rasterises each point as a size x size block of its colour", () => {
    const w = 20;
    const hgt = 10;
    const px = new Uint32Array(w * hgt);
    const xy = new Float32Array([0, 0, 5, 0]);
    const view = { cx: 2.5, cy: 0, scale: 2 };
    const colours = new Uint32Array([packColour("#ff0000"), packColour("#0000ff")]);
    const dimmed = new Uint32Array([1, 2]);
    const drawn = rasterize(px, w, hgt, 1, view, xy, 2, [0, 1], colours, dimmed, null, 2);
    expect(drawn).toBe(2);
    expect([...px].filter((v) => v === colours[0]).length).toBe(4);
    expect([...px].filter((v) => v === colours[1]).length).toBe(4);
    // with a selection the others are dimmed
    rasterize(px, w, hgt, 1, view, xy, 2, [0, 1], colours, dimmed, new Uint8Array([0, 1]), 2);
    expect([...px].filter((v) => v === dimmed[0]).length).toBe(4);
    expect([...px].filter((v) => v === colours[1]).length).toBe(4);
    // little-endian RGBA
    expect(packColour("#102030", 255)).toBe(((255 << 24) | (0x30 << 16) | (0x20 << 8) | 0x10) >>> 0);
  });

  it("colours 'none' grey and binary labels in two colours", () => {
    const none = { name: "concept", categories: ["none", "a", "b"], none: true };
    expect(categoryColour(none, 0)).not.toBe(categoryColour(none, 1));
    expect(categoryColour(none, 1)).not.toBe(categoryColour(none, 2));
    const bin = { name: "x", categories: ["no x", "x"] };
    expect(categoryColour(bin, 0)).not.toBe(categoryColour(bin, 1));
  });
});

describe("category colours", () => {
  it("gives every category its own colour, whatever their number", () => {
    for (const k of [3, 20, 21, 28, 60, 257]) {
      const names = Array.from({ length: k }, (_, i) => `c${i}`);
      for (const col of [{ name: "x", categories: names }, { name: "x", categories: ["none", ...names], none: true }]) {
        const colours = col.categories.map((_, c) => categoryColour(col, c));
        expect(new Set(colours).size).toBe(col.categories.length);
        expect(colours.every((c) => /^#[0-9a-f]{6}$/.test(c))).toBe(true);
      }
    }
  });

  it("keeps neighbouring colours of many categories apart", () => {
    const colours = distinctColours(28).map((c) => [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16)));
    let closest = Infinity;
    for (let i = 0; i < colours.length; i++)
      for (let j = i + 1; j < colours.length; j++)
        closest = Math.min(closest, Math.hypot(...colours[i].map((v, c) => v - colours[j][c])));
    expect(closest).toBeGreaterThan(20);
  });
});

function state(n: number, extra: Record<string, any> = {}) {
  const xy = grid(Math.ceil(Math.sqrt(n))).slice(0, 2 * n);
  const member = new Int32Array(n).map((_, i) => (i % 3) - 1);
  const codes = new Uint8Array(n).map((_, i) => (i % 3));
  return {
    points: {
      xy: { dtype: "float32", shape: [n, 2], buffer: new DataView(xy.buffer) },
      membership: { dtype: "int32", shape: [n], buffer: new DataView(member.buffer) },
    },
    codes: { dtype: "uint8", shape: [n], buffer: new DataView(codes.buffer) },
    colorings: [{ name: "concept", categories: ["none", HOSTILE, "b"], none: true }],
    color_by: "concept",
    clusters: [{ id: 0, label: HOSTILE, description: HOSTILE, images: [1, 2], fields: [["k", 1]] }],
    selected: [],
    focus: -1,
    mode: "lasso",
    title: "t",
    height: 300,
    point_size: 3,
    ...extra,
  };
}

const disposers: (() => void)[] = [];
afterEach(() => {
  disposers.splice(0).forEach((d) => d());
  document.body.innerHTML = "";
});

function setup(n = 100, extra: Record<string, any> = {}) {
  const model = new MockModel(state(n, extra));
  model.responder = (msg) => {
    if (msg.type === "fetch") {
      const [meta, bufs] = fakeImageBatch(msg.keys);
      return [{ ...meta, type: "fetch", request_id: msg.request_id, ok: true, keys: msg.keys }, bufs];
    }
    return undefined;
  };
  const el = document.createElement("div");
  document.body.appendChild(el);
  disposers.push(renderBrowser(model as any, el, { measure: () => ({ width: 400, height: 300 }) }));
  return { model, el };
}

describe("ConceptBrowser view", () => {
  it("renders a legend with counts, as text", () => {
    const { el } = setup(99);
    const names = [...el.querySelectorAll(".rw-legend-name")].map((e) => e.textContent);
    expect(names).toEqual([HOSTILE, "b", "none"]);
    expect(el.querySelector(".rw-legend img")).toBeNull();
    const counts = [...el.querySelectorAll(".rw-legend-count")].map((e) => e.textContent);
    expect(counts).toEqual(["33", "33", "33"]);
    expect(el.querySelector(".rw-status")!.textContent).toBe("99 points");
  });

  it("shows 28 categories in the legend with 28 different colours", () => {
    const n = 280;
    const names = Array.from({ length: 28 }, (_, i) => `category ${i}`);
    const codes = new Uint8Array(n).map((_, i) => i % 28);
    const { el } = setup(n, {
      codes: { dtype: "uint8", shape: [n], buffer: new DataView(codes.buffer) },
      colorings: [{ name: "class", categories: names }],
      color_by: "class",
    });
    const swatches = [...el.querySelectorAll<HTMLElement>(".rw-legend .rw-swatch")].map((s) => s.style.background);
    expect(swatches.length).toBe(28);
    expect(new Set(swatches).size).toBe(28);
  });

  it("keeps the status on one line with its full text on hover", () => {
    const { model, el } = setup(99);
    const status = el.querySelector<HTMLElement>(".rw-status")!;
    expect(status.classList.contains("rw-statusline")).toBe(true);
    model.update("selected", [1, 2]);
    expect(status.title).toBe("99 points · 2 selected");
  });

  it("follows the selection from Python and shows its thumbnails", async () => {
    const { model, el } = setup();
    model.update("selected", [4, 5, 6]);
    expect(el.querySelector(".rw-status")!.textContent).toBe("100 points · 3 selected");
    await flush();
    await flush();
    const imgs = [...el.querySelectorAll<HTMLImageElement>(".rw-selection-imgs img")];
    expect(imgs.map((i) => i.dataset.key)).toEqual(["4", "5", "6"]);
    expect(imgs.every((i) => i.getAttribute("src")?.startsWith("blob:"))).toBe(true);
    const fetched = model.sent.filter((m) => m.type === "fetch").flatMap((m) => m.keys);
    expect(fetched).toEqual(expect.arrayContaining([4, 5, 6]));
  });

  it("selects a legend category and focuses its cluster", () => {
    const { model, el } = setup(30);
    const item = el.querySelectorAll<HTMLElement>(".rw-legend-item")[0]; // code 1 = cluster 0
    item.click();
    expect(model.state.focus).toBe(0);
    expect(model.state.selected).toEqual([1, 4, 7, 10, 13, 16, 19, 22, 25, 28]);
    const head = el.querySelector(".rw-cluster h4")!;
    expect(head.textContent).toBe(HOSTILE);
    expect(el.querySelector(".rw-cluster .rw-desc")!.textContent).toBe(HOSTILE);
  });

  it("clicks: plain selects one point, ctrl toggles, shift adds, alt removes", () => {
    const { model, el } = setup(100);
    const handle = (el.querySelector(".rw-browser") as any).__rw;
    const overlay = el.querySelector("canvas.rw-overlay")!;
    const click = (i: number, mods: MouseEventInit = {}) => {
      const [x, y] = handle.screenOf(i); // jsdom: the overlay sits at (0, 0)
      const at = { clientX: x, clientY: y, bubbles: true, ...mods };
      overlay.dispatchEvent(new MouseEvent("pointerdown", at));
      overlay.dispatchEvent(new MouseEvent("pointerup", at));
      return model.state.selected;
    };
    expect(click(5)).toEqual([5]);
    expect(click(7)).toEqual([7]); // plain: only this one
    expect(click(9, { ctrlKey: true })).toEqual([7, 9]);
    expect(click(7, { metaKey: true })).toEqual([9]);
    expect(click(3, { shiftKey: true })).toEqual([9, 3]);
    expect(click(9, { altKey: true })).toEqual([3]);
    expect(model.state.focus).toBe((9 % 3) - 1); // the clicked point's cluster
  });

  it("switches modes with keys and buttons, and syncs them", () => {
    const { model, el } = setup();
    const root = el.querySelector<HTMLElement>(".rw-browser")!;
    root.dispatchEvent(new KeyboardEvent("keydown", { key: "b", bubbles: true }));
    expect(model.state.mode).toBe("box");
    el.querySelector<HTMLButtonElement>("button[data-mode='pan']")!.click();
    expect(model.state.mode).toBe("pan");
    model.state.selected = [1];
    root.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true }));
    expect(model.state.selected).toEqual([]);
  });

  it("sends the colouring choice to Python", () => {
    const { model, el } = setup(10, {
      colorings: [
        { name: "concept", categories: ["none", "a", "b"], none: true },
        { name: "class", categories: ["x", "y", "z"] },
      ],
    });
    const select = el.querySelector<HTMLSelectElement>("select")!;
    expect([...select.options].map((o) => o.value)).toEqual(["concept", "class"]);
    select.value = "class";
    select.dispatchEvent(new Event("change"));
    expect(model.state.color_by).toBe("class");
  });

  it("refits the view when the plot gets its size late, until the user zooms", () => {
    // JupyterLab may render the widget before laying out its output area
    let size = { width: 1, height: 1 };
    const model = new MockModel(state(100));
    const el = document.createElement("div");
    document.body.appendChild(el);
    disposers.push(renderBrowser(model as any, el, { measure: () => size }));
    const handle = (el.querySelector(".rw-browser") as any).__rw;
    const xy = grid(10);
    // nothing is drawn or fitted into a 1 x 1 plot
    expect(el.querySelector<HTMLCanvasElement>("canvas.rw-points")!.width).toBeGreaterThan(1);
    expect(handle.view().scale).not.toBeCloseTo(fitView(xy, 100, 1, 1).scale);
    size = { width: 400, height: 300 };
    handle.draw();
    expect(handle.view().scale).toBeCloseTo(fitView(xy, 100, 400, 300).scale);
    // a view the user chose is kept when the size changes again
    el.querySelector("canvas.rw-overlay")!.dispatchEvent(
      new WheelEvent("wheel", { deltaY: -200, clientX: 10, clientY: 10, cancelable: true }),
    );
    const zoomed = handle.view().scale;
    expect(zoomed).toBeGreaterThan(fitView(xy, 100, 400, 300).scale);
    size = { width: 500, height: 300 };
    handle.draw();
    expect(handle.view().scale).toBe(zoomed);
  });

  it("cleans up listeners on dispose", () => {
    const model = new MockModel(state(10));
    const el = document.createElement("div");
    const dispose = renderBrowser(model as any, el, { measure: () => ({ width: 100, height: 100 }) });
    expect(model.listenerCount("change:selected")).toBe(1);
    dispose();
    expect(model.listenerCount("change:selected")).toBe(0);
    expect(el.children.length).toBe(0);
  });
});

describe("continuous colouring", () => {
  const lof = { name: "lof", categories: [] as string[], none: true, range: [0.5, 3] as [number, number], ramp: "viridis" };

  it("maps codes 1..255 along the ramp and code 0 (missing) to grey", () => {
    const { colours, dimmed } = categoryColours(lof);
    expect(colours.length).toBe(256);
    expect(colours[1]).toBe(packColour("#440154", 235)); // the ramp's first stop
    expect(colours[255]).toBe(packColour("#fde725", 235)); // and its last
    expect(colours[0]).toBe(packColour(NONE_COLOUR, 170));
    expect(dimmed[128]).toBe(((colours[128] & 0xffffff) | (45 << 24)) >>> 0);
    expect(codeValue(lof, 1)).toBe(0.5);
    expect(codeValue(lof, 255)).toBe(3);
    expect(codeValue(lof, 128)).toBeCloseTo(0.5 + (127 / 254) * 2.5);
    expect(codeValue(lof, 0)).toBeNull();
    expect(codeLabel(lof, 0)).toBe("missing");
    expect(codeLabel({ name: "c", categories: ["a", "b"] }, 1)).toBe("b");
    expect(isClusterColouring({ ...lof, name: "concept" })).toBe(false);
  });

  it("shows a ramp legend with its range and missing values, and the selection's mean", () => {
    const n = 100;
    const codes = new Uint8Array(n).map((_, i) => (i < 10 ? 0 : i < 55 ? 1 : 255));
    const { model, el } = setup(n, {
      codes: { dtype: "uint8", shape: [n], buffer: new DataView(codes.buffer) },
      colorings: [lof],
      color_by: "lof",
    });
    const ramp = el.querySelector<HTMLElement>(".rw-legend .rw-ramp")!;
    expect(ramp.style.background).toContain("gradient");
    const ends = [...el.querySelectorAll(".rw-ramp-ends span")].map((e) => e.textContent);
    expect(ends).toEqual(["0.5", "lof", "3"]);
    expect(el.querySelector(".rw-ramp-missing .rw-legend-count")!.textContent).toBe("10");
    // a click on "missing" selects the points without a value
    el.querySelector<HTMLElement>(".rw-ramp-missing")!.click();
    expect(model.state.selected).toEqual([...Array(10).keys()]);
    model.update("selected", [10, 11, 60, 61]); // two at 0.5, two at 3
    expect(el.querySelector(".rw-selection .rw-desc")!.textContent).toBe("lof: mean ≈ 1.75 · 0.5 to 3");
  });
});
