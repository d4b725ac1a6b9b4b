import { afterEach, describe, expect, it } from "vitest";
import { countMarks, filterItems, quantileOf, renderCuration } from "../src/curation";
import { MockModel, fakeImageBatch, flush } from "./mockModel";

const HOSTILE = "<img src=x onerror=alert(1)>";

function meta(arr: Int32Array | Float32Array, dtype: string) {
  return { dtype, shape: [arr.length], buffer: new DataView(arr.buffer) };
}

function items(n: number, offset = 0) {
  const samples = Int32Array.from({ length: n }, (_, i) => offset + i * 3);
  return {
    samples: meta(samples, "int32"),
    scores: meta(Float32Array.from({ length: n }, (_, i) => 5 - i * 0.01), "float32"),
    logits: meta(Float32Array.from({ length: n }, (_, i) => 5 - i * 0.01), "float32"),
    labels: meta(Int32Array.from({ length: n }, (_, i) => i % 2), "int32"),
    predictions: meta(Int32Array.from({ length: n }, () => 0), "int32"),
    groups: meta(Int32Array.from({ length: n }, (_, i) => i % 4), "int32"),
  };
}

function setup(n = 300) {
  const model = new MockModel({
    items: items(n),
    class_names: ["circle", HOSTILE],
    group_names: ["a", "b", "c", "d"],
    marks: {},
    band: [0.25, 0.75],
    absolute: false,
    limits: [1, 2],
    histogram: { counts: meta(new Float32Array([1, 2, 3]), "float32"), range: [0, 3] },
    title: "circle · logit",
    score_name: "logit",
    file: "/tmp/cur.json",
    error: "",
    version: 1,
    thumb_size: 72,
    height: 480,
    can_move_band: true,
  });
  // a fake Python: applies marks and undo to the `marks` trait, answers fetches and bands
  const history: [string, string | undefined][] = [];
  model.responder = (msg) => {
    const reply = { type: msg.type, request_id: msg.request_id, ok: true };
    if (msg.type === "fetch") {
      const [m, bufs] = fakeImageBatch(msg.keys);
      return [{ ...reply, ...m, keys: msg.keys }, bufs];
    }
    if (msg.type === "mark") {
      const marks = { ...model.get("marks") };
      history.push([String(msg.sample), marks[String(msg.sample)]]);
      if (msg.mark === null) delete marks[String(msg.sample)];
      else marks[String(msg.sample)] = msg.mark;
      model.update("marks", marks);
      return [reply, []];
    }
    if (msg.type === "undo") {
      const last = history.pop();
      if (!last) return [{ ...reply, sample: null }, []];
      const marks = { ...model.get("marks") };
      if (last[1] === undefined) delete marks[last[0]];
      else marks[last[0]] = last[1];
      model.update("marks", marks);
      return [{ ...reply, sample: Number(last[0]) }, []];
    }
    if (msg.type === "band") {
      model.update("items", items(40, 1));
      model.update("band", msg.band);
      return [reply, []];
    }
    return undefined;
  };
  const el = document.createElement("div");
  document.body.appendChild(el);
  const dispose = renderCuration(model as any, el, { measure: () => ({ width: 800, height: 480 }), bandDelay: 0 });
  disposers.push(dispose);
  return { model, el };
}

const disposers: (() => void)[] = [];
afterEach(() => {
  disposers.splice(0).forEach((d) => d());
  document.body.innerHTML = "";
});

const cells = (el: HTMLElement) =>
  [...el.querySelectorAll<HTMLElement>(".rw-cur-cell")].filter((c) => c.style.display !== "none");

function key(el: HTMLElement, k: string) {
  el.querySelector<HTMLElement>(".rw-cur-viewport")!.dispatchEvent(new KeyboardEvent("keydown", { key: k, bubbles: true }));
}

describe("helpers", () => {
  it("filters and counts marks", () => {
    const marks = { "3": "keep", "6": "spurious", "99": "exclude" } as const;
    expect(filterItems([0, 3, 6], marks, "all")).toEqual([0, 1, 2]);
    expect(filterItems([0, 3, 6], marks, "unmarked")).toEqual([0]);
    expect(filterItems([0, 3, 6], marks, "spurious")).toEqual([2]);
    expect(countMarks(marks)).toEqual({ keep: 1, spurious: 1, exclude: 1 });
  });

  it("turns a score value into a quantile with the histogram", () => {
    const counts = [2, 0, 6, 2];
    expect(quantileOf(-1, counts, [0, 4])).toBe(0);
    expect(quantileOf(1, counts, [0, 4])).toBeCloseTo(0.2);
    expect(quantileOf(2.5, counts, [0, 4])).toBeCloseTo(0.5);
    expect(quantileOf(9, counts, [0, 4])).toBe(1);
    expect(quantileOf(1, [], [0, 4])).toBe(0);
  });
});

describe("curation widget", () => {
  it("renders only visible cells, fetches their thumbnails lazily, and shows text as text", async () => {
    const { model, el } = setup(300);
    const shown = cells(el);
    expect(shown.length).toBeGreaterThan(4);
    expect(shown.length).toBeLessThan(80);
    await flush();
    await flush();
    const fetched = model.sent.filter((m) => m.type === "fetch").flatMap((m) => m.keys);
    expect(fetched.length).toBeLessThan(120);
    expect(fetched).toContain(0);
    expect(el.querySelector("img[src^='blob:']")).not.toBeNull();
    expect([...el.querySelectorAll("img")].every((i) => i.classList.contains("rw-cur-img"))).toBe(true);
    expect(el.textContent).toContain(`${HOSTILE} → circle`);
  });

  it("marks the focused sample by key, advances, counts, and undoes", async () => {
    const { model, el } = setup(50);
    key(el, "k"); // no cursor yet: first sample
    await flush();
    expect(model.get("marks")).toEqual({ "0": "keep" });
    key(el, "s"); // cursor moved on to the second sample (index 3)
    await flush();
    expect(model.get("marks")).toEqual({ "0": "keep", "3": "spurious" });
    expect(el.querySelector(".rw-cur-count[data-mark='spurious']")!.textContent).toBe("spurious 1");
    expect(el.querySelector(".rw-cur-cell[data-sample='3']")!.getAttribute("data-mark")).toBe("spurious");
    key(el, "u");
    await flush();
    await flush();
    expect(model.get("marks")).toEqual({ "0": "keep" });
    expect(el.querySelector(".rw-cur-cell[data-sample='3']")!.hasAttribute("data-mark")).toBe(false);
  });

  it("marks with the mouse and clears with a second click", async () => {
    const { model, el } = setup(20);
    const cell = el.querySelector<HTMLElement>(".rw-cur-cell[data-sample='6']")!;
    cell.querySelector<HTMLButtonElement>("button[data-set='exclude']")!.click();
    await flush();
    expect(model.get("marks")).toEqual({ "6": "exclude" });
    el.querySelector<HTMLElement>(".rw-cur-cell[data-sample='6'] button[data-set='exclude']")!.click();
    await flush();
    expect(model.get("marks")).toEqual({});
  });

  it("moving the band slider asks Python and shows the new samples", async () => {
    const { model, el } = setup(20);
    const lo = el.querySelector<HTMLInputElement>(".rw-cur-lo")!;
    lo.value = "0.1";
    lo.dispatchEvent(new Event("input"));
    await new Promise((r) => setTimeout(r, 5));
    await flush();
    const req = model.sent.find((m) => m.type === "band");
    // values 0.1 and 2 over the histogram [1, 2, 3] on [0, 3] are quantiles 0.017 and 0.5
    expect(req.band).toEqual([0.017, 0.5]);
    expect(el.querySelector(".rw-cur-cell[data-sample='1']")).not.toBeNull();
    expect(el.querySelector(".rw-cur-bandtext")!.textContent).toContain("40 samples");
  });

  it("marks from Python (re-display, reload) show up", () => {
    const { model, el } = setup(10);
    model.update("marks", { "9": "keep" });
    expect(el.querySelector(".rw-cur-cell[data-sample='9']")!.getAttribute("data-mark")).toBe("keep");
    expect(el.querySelector(".rw-cur-count[data-mark='keep']")!.textContent).toBe("keep 1");
  });
});
