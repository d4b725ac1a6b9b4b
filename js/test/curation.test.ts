import { afterEach, describe, expect, it, vi } from "vitest";
import { renderCuration } from "../src/curation";
import { moveBandEnd, quantileOf } from "../src/curation/band";
import { countMarks, filterItems, marksOutside } from "../src/curation/marks";
import { MockModel, fakeImageBatch, flush, holdRequests } from "./mockModel";

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

function setup(n = 300, extra: Record<string, unknown> = {}) {
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
    ...extra,
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

  it("moves one end of a band and keeps the other exactly", () => {
    expect(moveBandEnd([0.5, 0.9], "low", 0.3)).toEqual([0.3, 0.9]);
    expect(moveBandEnd([0.5, 0.9], "high", 0.95)).toEqual([0.5, 0.95]);
    expect(moveBandEnd([0.5, 0.9], "low", 0.97)).toEqual([0.9, 0.9]);
    expect(moveBandEnd([0.5, 0.9], "high", 0.1)).toEqual([0.5, 0.5]);
    expect(marksOutside([1, 2, 3], { "2": "keep", "7": "exclude" })).toBe(1);
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
  it("waits for a busy kernel, says so, and shows the images when it answers", async () => {
    vi.useFakeTimers();
    try {
      const { model, el } = setup(12, { request_patience: 2 });
      const kernel = holdRequests(model);
      await vi.advanceTimersByTimeAsync(1600);
      const waiting = el.querySelector<HTMLElement>(".rw-cur-waiting")!;
      expect(waiting.textContent).toMatch(/waiting for the kernel/);
      await vi.advanceTimersByTimeAsync(120_000);
      expect(el.querySelector(".rw-cur-error")!.textContent).toBe("");
      kernel.release();
      await vi.advanceTimersByTimeAsync(0);
      expect(waiting.textContent).toBe("");
      expect(cells(el)[0].querySelector("img")!.getAttribute("src")).toMatch(/^blob:/);
    } finally {
      vi.useRealTimers();
    }
  });

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
    // value 0.1 over the histogram [1, 2, 3] on [0, 3] is quantile 0.017; the high end
    // keeps the band's own value (the histogram would have made 2 into 0.5)
    expect(req.band).toEqual([0.017, 0.75]);
    expect(req.moved).toEqual(["low"]);
    expect(el.querySelector(".rw-cur-cell[data-sample='1']")).not.toBeNull();
    expect(el.querySelector(".rw-cur-bandtext")!.textContent).toContain("40 samples");
  });

  it("dragging one handle leaves the other end exactly where it was", async () => {
    // the band (0.5, 0.9) over a histogram whose cumulative counts put 0.9 elsewhere
    const { model, el } = setup(20, { band: [0.5, 0.9], limits: [1.5, 2.7] });
    const lo = el.querySelector<HTMLInputElement>(".rw-cur-lo")!;
    const hi = el.querySelector<HTMLInputElement>(".rw-cur-hi")!;
    lo.value = "1.2";
    lo.dispatchEvent(new Event("input"));
    lo.value = "1.0";
    lo.dispatchEvent(new Event("input"));
    await new Promise((r) => setTimeout(r, 5));
    await flush();
    const requests = model.sent.filter((m) => m.type === "band");
    expect(requests.length).toBe(1);
    expect(requests[0].band[1]).toBe(0.9);
    expect(requests[0].band[0]).toBeCloseTo(quantileOf(1.0, [1, 2, 3], [0, 3]), 3);
    // Python answered with the new band; now the high handle moves: the low end stays
    model.update("band", [0.111, 0.9]);
    model.update("limits", [1.0, 2.7]);
    hi.value = "2.9";
    hi.dispatchEvent(new Event("input"));
    await new Promise((r) => setTimeout(r, 5));
    await flush();
    const last = model.sent.filter((m) => m.type === "band").pop();
    expect(last.band[0]).toBe(0.111);
    expect(last.moved).toEqual(["high"]);
  });

  it("moving both handles before Python answers sends both ends", async () => {
    const { model, el } = setup(20, { band: [0.5, 0.9], limits: [1.5, 2.7] });
    const lo = el.querySelector<HTMLInputElement>(".rw-cur-lo")!;
    const hi = el.querySelector<HTMLInputElement>(".rw-cur-hi")!;
    lo.value = "1.0";
    lo.dispatchEvent(new Event("input"));
    hi.value = "2.0";
    hi.dispatchEvent(new Event("input"));
    await new Promise((r) => setTimeout(r, 5));
    await flush();
    const req = model.sent.find((m) => m.type === "band");
    expect(req.moved.sort()).toEqual(["high", "low"]);
    expect(req.band[0]).toBeCloseTo(quantileOf(1.0, [1, 2, 3], [0, 3]), 3);
    expect(req.band[1]).toBeCloseTo(quantileOf(2.0, [1, 2, 3], [0, 3]), 3);
  });

  it("a handle dragged past the other stops there instead of pushing it", async () => {
    const { model, el } = setup(20, { band: [0.5, 0.9], limits: [1.5, 2.7] });
    const lo = el.querySelector<HTMLInputElement>(".rw-cur-lo")!;
    lo.value = "2.9";
    lo.dispatchEvent(new Event("input"));
    await new Promise((r) => setTimeout(r, 5));
    await flush();
    const req = model.sent.find((m) => m.type === "band");
    expect(req.band[1]).toBe(0.9);
    expect(req.band[0]).toBeLessThanOrEqual(0.9);
    expect(Number(lo.value)).toBeLessThanOrEqual(2.7);
  });

  it("says how many marked samples the band does not show", () => {
    // samples 0, 3, 6, ... are in the band; 1000 and 1001 were marked in another band
    const { model, el } = setup(10, { marks: { "3": "keep", "1000": "spurious", "1001": "exclude" } });
    const note = el.querySelector(".rw-cur-outside")!;
    expect(note.textContent).toBe("2 marked samples are outside the band (kept in the file)");
    model.update("marks", { "3": "keep", "1000": "spurious" });
    expect(note.textContent).toBe("1 marked sample is outside the band (kept in the file)");
    model.update("marks", { "3": "keep" });
    expect(note.textContent).toBe("");
  });

  it("marks from Python (re-display, reload) show up", () => {
    const { model, el } = setup(10);
    model.update("marks", { "9": "keep" });
    expect(el.querySelector(".rw-cur-cell[data-sample='9']")!.getAttribute("data-mark")).toBe("keep");
    expect(el.querySelector(".rw-cur-count[data-mark='keep']")!.textContent).toBe("keep 1");
  });
});
