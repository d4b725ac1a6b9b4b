import { afterEach, describe, expect, it, vi } from "vitest";
import { renderGallery } from "../src/gallery";
import { viewOrder } from "../src/gallery/filter";
import type { Card } from "../src/gallery/model";
import { MockModel, fakeImageBatch, flush, holdRequests } from "./mockModel";

const HOSTILE = "<img src=x onerror=alert(1)>";

function cards(n: number, k = 8): Card[] {
  return Array.from({ length: n }, (_, i) => ({
    id: i,
    label: i === 2 ? HOSTILE : `neuron ${i} ${i % 2 ? "odd" : "even"}`,
    scores: { auc: (i * 37) % 11, dora: i === 5 ? null : i },
    images: Array.from({ length: k }, (_, j) => i * 100 + j),
  }));
}

function setup(n = 512, extra: Record<string, any> = {}) {
  const counts = new Float32Array(n * 4).map((_, i) => i % 4);
  const ranges = new Float32Array(n * 2).map((_, i) => (i % 2 ? 1 : -1));
  const model = new MockModel({
    cards: cards(n),
    score_names: ["auc", "dora"],
    histograms: {
      counts: { dtype: "float32", shape: [n, 4], buffer: new DataView(counts.buffer) },
      ranges: { dtype: "float32", shape: [n, 2], buffer: new DataView(ranges.buffer) },
    },
    selected: [],
    sort_by: "",
    descending: true,
    query: "",
    title: "conv3",
    noun: "neurons",
    thumb_size: 56,
    height: 520,
    ...extra,
  });
  model.responder = (msg) => {
    if (msg.type === "fetch") {
      const [meta, bufs] = fakeImageBatch(msg.keys);
      return [{ ...meta, type: "fetch", request_id: msg.request_id, ok: true, keys: msg.keys }, bufs];
    }
    if (msg.type === "details") {
      return [{ type: "details", request_id: msg.request_id, ok: true, fields: [["class", HOSTILE], ["activation", 1.23456]] }, []];
    }
    return undefined;
  };
  const el = document.createElement("div");
  document.body.appendChild(el);
  const dispose = renderGallery(model as any, el, { measure: () => ({ width: 900, height: 520 }) });
  disposers.push(dispose);
  return { model, el, dispose };
}

const cardEls = (el: HTMLElement) =>
  [...el.querySelectorAll<HTMLElement>(".rw-card")].filter((c) => c.style.display !== "none");

const disposers: (() => void)[] = [];
afterEach(() => {
  disposers.splice(0).forEach((d) => d());
  document.body.innerHTML = "";
});

describe("viewOrder", () => {
  it("filters by all terms over id and label, sorts with missing scores last", () => {
    const cs = cards(8);
    expect(viewOrder(cs, "odd", "", true)).toEqual([1, 3, 5, 7]);
    expect(viewOrder(cs, "ODD neuron 3", "", true)).toEqual([3]);
    expect(viewOrder(cs, "#4", "", true)).toEqual([4]);
    const byDora = viewOrder(cs, "", "dora", true);
    expect(byDora[byDora.length - 1]).toBe(5); // null last
    expect(byDora.slice(0, 3)).toEqual([7, 6, 4]);
    expect(viewOrder(cs, "", "dora", false).slice(0, 3)).toEqual([0, 1, 2]);
  });
});

describe("gallery", () => {
  it("renders only the cards on screen and fetches only their images, in batches", async () => {
    const { model, el } = setup(512);
    const shown = cardEls(el);
    expect(shown.length).toBeGreaterThan(4);
    expect(shown.length).toBeLessThan(40);
    await flush();
    await flush();
    const fetches = model.sent.filter((m) => m.type === "fetch");
    expect(fetches.length).toBeGreaterThan(0);
    const requested = fetches.flatMap((m) => m.keys);
    expect(Math.max(...fetches.map((m) => m.keys.length))).toBeLessThanOrEqual(48);
    expect(requested.length).toBeLessThanOrEqual(shown.length * 8);
    const maxCard = Math.max(...shown.map((c) => Number(c.dataset.index)));
    expect(requested.every((k: number) => Math.floor(k / 100) <= maxCard)).toBe(true);
    for (let i = 0; i < 10; i++) await flush();
    const imgs = shown[0].querySelectorAll("img");
    expect(imgs.length).toBe(8);
    expect(imgs[0].getAttribute("src")).toMatch(/^blob:/);
  });

  it("shows hostile labels as text", () => {
    const { el } = setup(8);
    const card = cardEls(el).find((c) => c.dataset.id === "2")!;
    expect(card.querySelector(".rw-card-label")!.textContent).toBe(HOSTILE);
    expect(card.querySelectorAll("img").length).toBe(8); // only our thumbnails
    expect(el.querySelector("img[onerror]")).toBeNull();
  });

  it("click selects one, ctrl/cmd-click toggles, shift-click takes the range", () => {
    const { model, el } = setup(20);
    const byId = (id: number) => cardEls(el).find((c) => c.dataset.id === String(id))!;
    const click = (id: number, o: MouseEventInit = {}) =>
      byId(id).dispatchEvent(new MouseEvent("click", { bubbles: true, ...o }));
    byId(3).querySelector<HTMLElement>(".rw-card-label")!.click();
    expect(model.state.selected).toEqual([3]);
    click(6, { shiftKey: true });
    expect(model.state.selected).toEqual([3, 4, 5, 6]);
    expect(model.saves).toBeGreaterThanOrEqual(2);
    expect(byId(5).classList.contains("rw-selected")).toBe(true);
    click(4, { ctrlKey: true });
    expect(model.state.selected).toEqual([3, 5, 6]);
    expect(el.querySelector(".rw-status")!.textContent).toContain("3 selected");
    click(9, { metaKey: true });
    expect(model.state.selected).toEqual([3, 5, 6, 9]);
    click(1);
    expect(model.state.selected).toEqual([1]);
    expect(byId(5).classList.contains("rw-selected")).toBe(false);
  });

  it("ctrl-click on an image selects instead of opening details", async () => {
    const { model, el } = setup(8);
    for (let i = 0; i < 10; i++) await flush();
    const card = cardEls(el).find((c) => c.dataset.id === "2")!;
    card.querySelectorAll("img")[1].dispatchEvent(new MouseEvent("click", { bubbles: true, ctrlKey: true }));
    expect(el.querySelector<HTMLElement>(".rw-lightbox")!.hidden).toBe(true);
    expect(model.state.selected).toEqual([2]);
  });

  it("cards fill the width and labels show whole on hover", () => {
    const long = "(NOT watermark AND NOT circle) OR (star AND red AND large) OR textured";
    const { el } = setup(12, { cards: cards(12, 1).map((c) => ({ ...c, label: long })), thumb_size: 96 });
    const shown = cardEls(el);
    const width = parseFloat(shown[0].style.width);
    const xs = shown.map((c) => Number(/translate\((\d+)px/.exec(c.style.transform)![1]));
    // 900 px: 4 columns of at least 200 px, widened to (900 - 16 - 24) / 4 = 215 px
    expect(new Set(xs).size).toBe(4);
    expect(width).toBe(215);
    expect(Math.max(...xs) + width).toBeGreaterThan(900 - 8 - 4); // no empty strip at the right
    expect(Math.max(...xs) + width).toBeLessThanOrEqual(900 - 8);
    const head = shown[0].querySelector<HTMLElement>(".rw-card-head")!;
    expect(head.title).toBe(`#0 ${long}`);
    expect(shown[0].querySelector<HTMLElement>(".rw-card-label")!.title).toBe(long);
    const img = shown[0].querySelector("img")!;
    expect([img.width, img.height]).toEqual([96, 96]);
  });

  it("thumb_size from Python resizes thumbnails and cards", () => {
    const { model, el } = setup(12, { cards: cards(12, 1) });
    expect(cardEls(el)[0].querySelector("img")!.width).toBe(56);
    model.update("thumb_size", 160);
    const card = cardEls(el)[0];
    expect(card.querySelector("img")!.width).toBe(160);
    expect(parseFloat(card.style.height)).toBeGreaterThan(160);
  });

  it("waits for a busy kernel, says so, and shows the images when it answers", async () => {
    vi.useFakeTimers();
    try {
      const { model, el } = setup(8, { request_patience: 2 });
      const kernel = holdRequests(model);
      await vi.advanceTimersByTimeAsync(1600);
      const waiting = el.querySelector<HTMLElement>(".rw-waiting")!;
      expect(waiting.textContent).toMatch(/waiting for the kernel/);
      await vi.advanceTimersByTimeAsync(120_000); // twice the old limit
      expect(el.querySelector(".rw-message")!.textContent).toBe("");
      expect(cardEls(el)[0].querySelector("img")!.hasAttribute("src")).toBe(false);
      kernel.release();
      await vi.advanceTimersByTimeAsync(0);
      expect(waiting.textContent).toBe("");
      expect(cardEls(el)[0].querySelector("img")!.getAttribute("src")).toMatch(/^blob:/);
      expect(el.querySelector(".rw-message")!.textContent).toBe("");
    } finally {
      vi.useRealTimers();
    }
  });

  it("follows selection changes from Python", () => {
    const { model, el } = setup(20);
    model.update("selected", [7, 1]);
    const sel = cardEls(el).filter((c) => c.classList.contains("rw-selected")).map((c) => c.dataset.id);
    expect(sel.sort()).toEqual(["1", "7"]);
  });

  it("keyboard: arrows move, space toggles, shift+space ranges", () => {
    const { model, el } = setup(20);
    const vp = el.querySelector<HTMLElement>(".rw-viewport")!;
    const key = (k: string, shift = false) => vp.dispatchEvent(new KeyboardEvent("keydown", { key: k, shiftKey: shift, bubbles: true }));
    key("ArrowRight"); // cursor 0
    key(" ");
    expect(model.state.selected).toEqual([0]);
    key("ArrowRight");
    key("ArrowRight");
    key(" ", true);
    expect(model.state.selected).toEqual([0, 1, 2]);
    key("ArrowDown");
    const cursorCard = el.querySelector<HTMLElement>(".rw-card.rw-cursor")!;
    expect(Number(cursorCard.dataset.index)).toBeGreaterThan(2);
  });

  it("keys do not leak to the notebook", () => {
    const { el } = setup(20);
    let leaked = 0;
    document.body.addEventListener("keydown", () => leaked++);
    el.querySelector<HTMLElement>(".rw-viewport")!.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowDown", bubbles: true }));
    expect(leaked).toBe(0);
  });

  it("filter and sort controls update the view and the model", () => {
    const { model, el } = setup(30);
    const input = el.querySelector<HTMLInputElement>("input")!;
    input.value = "odd";
    input.dispatchEvent(new Event("input"));
    expect(model.state.query).toBe("odd");
    expect(cardEls(el).every((c) => Number(c.dataset.id) % 2 === 1)).toBe(true);
    expect(el.querySelector(".rw-status")!.textContent).toContain("15 of 30 neurons");
    model.update("query", "");
    model.update("sort_by", "dora");
    const first = cardEls(el).find((c) => c.dataset.index === "0")!;
    expect(first.dataset.id).toBe("29");
    const select = el.querySelector("select")!;
    expect(select.value).toBe("dora");
    expect([...select.options].map((o) => o.textContent)).toEqual(["order: id", "sort: auc", "sort: dora"]);
  });

  it("clicking an image opens details fetched from Python, shown as text", async () => {
    const { model, el } = setup(8);
    for (let i = 0; i < 10; i++) await flush();
    const img = cardEls(el).find((c) => c.dataset.id === "2")!.querySelectorAll("img")[3];
    img.dispatchEvent(new MouseEvent("click", { bubbles: true }));
    const box = el.querySelector<HTMLElement>(".rw-lightbox")!;
    expect(box.hidden).toBe(false);
    const req = model.sent.find((m) => m.type === "details");
    expect(req).toMatchObject({ card: 2, key: 203 });
    for (let i = 0; i < 5; i++) await flush();
    const dds = [...box.querySelectorAll("dd")].map((d) => d.textContent);
    expect(dds).toEqual([HOSTILE, "1.23"]);
    expect(box.querySelector("img[onerror]")).toBeNull();
    el.querySelector<HTMLElement>(".rw-gallery")!.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true }));
    expect(box.hidden).toBe(true);
  });

  it("cleans up listeners and blob URLs when removed", async () => {
    const live = (globalThis as any).__liveBlobUrls as Set<string>;
    live.clear();
    const { model, dispose } = setup(8);
    for (let i = 0; i < 10; i++) await flush();
    expect(live.size).toBeGreaterThan(0);
    dispose();
    expect(live.size).toBe(0);
    expect(model.listenerCount("msg:custom")).toBe(0);
    expect(model.listenerCount("change:selected")).toBe(0);
  });
});
