import { describe, expect, it, vi } from "vitest";
import { Disposables, FrameScheduler, mount } from "../src/lib/mount";
import { MockModel } from "./mockModel";

describe("Disposables", () => {
  it("undoes listeners, model handlers, timers and added functions once, last first", () => {
    const d = new Disposables();
    const order: string[] = [];
    const el = document.createElement("button");
    const click = vi.fn();
    d.on(el, "click", click);
    const model = new MockModel({ x: 1 });
    d.model(model, [["change:x", () => order.push("x")]]);
    const timer = d.timer();
    const fired = vi.fn();
    timer.set(fired, 0);
    d.add(() => order.push("first"));
    d.add(() => order.push("second"));
    d.add(undefined);
    el.click();
    expect(click).toHaveBeenCalledTimes(1);
    expect(model.listenerCount("change:x")).toBe(1);
    d.dispose();
    d.dispose();
    expect(order).toEqual(["second", "first"]);
    el.click();
    expect(click).toHaveBeenCalledTimes(1);
    expect(model.listenerCount("change:x")).toBe(0);
    return new Promise<void>((resolve) =>
      setTimeout(() => {
        expect(fired).not.toHaveBeenCalled();
        resolve();
      }, 5),
    );
  });

  it("runs what is added after dispose at once", () => {
    const d = new Disposables();
    d.dispose();
    const late = vi.fn();
    d.add(late);
    expect(late).toHaveBeenCalledTimes(1);
  });

  it("a timer slot keeps only the last call", async () => {
    const d = new Disposables();
    const timer = d.timer();
    const calls: number[] = [];
    timer.set(() => calls.push(1), 0);
    timer.set(() => calls.push(2), 0);
    await new Promise((r) => setTimeout(r, 5));
    expect(calls).toEqual([2]);
  });

  it("mount returns the view's destroy", () => {
    const destroy = vi.fn();
    mount({ destroy })();
    expect(destroy).toHaveBeenCalledTimes(1);
  });

  it("FrameScheduler draws once for many requests", async () => {
    const draw = vi.fn();
    const frame = new FrameScheduler(draw);
    frame.request();
    frame.request();
    await new Promise((r) => setTimeout(r, 40));
    expect(draw).toHaveBeenCalledTimes(1);
  });
});
