import { afterEach, describe, expect, it, vi } from "vitest";
import { KeyedFetcher, type Key } from "../src/lib/fetcher";
import { pythonImages, waitingText } from "../src/lib/images";
import { MockModel, fakeImageBatch, flush } from "./mockModel";

function controlled() {
  const calls: { keys: Key[]; resolve: (u: string[]) => void; reject: (e: Error) => void; signal: AbortSignal }[] = [];
  const loader = (keys: Key[], signal: AbortSignal) =>
    new Promise<string[]>((resolve, reject) => {
      calls.push({ keys, resolve, reject, signal });
      signal.addEventListener("abort", () => {
        const e = new Error("aborted");
        e.name = "AbortError";
        reject(e);
      });
    });
  return { calls, loader };
}

describe("KeyedFetcher", () => {
  it("batches wanted keys and limits requests in flight", async () => {
    const { calls, loader } = controlled();
    const f = new KeyedFetcher(loader, { batchSize: 3, maxInFlight: 2, release: () => {} });
    f.want([1, 2, 3, 4, 5, 6, 7, 2]);
    await flush();
    expect(calls.map((c) => c.keys)).toEqual([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    calls[0].resolve(["u1", "u2", "u3"]);
    await flush();
    expect(calls.map((c) => c.keys)).toEqual([[1, 2, 3], [4, 5, 6], [7]]);
    expect(f.get(2)).toBe("u2");
  });

  it("drops queued keys that scrolled away before being sent (cancellation)", async () => {
    const { calls, loader } = controlled();
    const f = new KeyedFetcher(loader, { batchSize: 2, maxInFlight: 1, release: () => {} });
    f.want([1, 2, 3, 4, 5, 6]);
    await flush();
    expect(calls.length).toBe(1);
    f.want([9, 10]); // scrolled far away
    calls[0].resolve(["a", "b"]);
    await flush();
    expect(calls.map((c) => c.keys)).toEqual([
      [1, 2],
      [9, 10],
    ]);
    expect(f.stats.keysDropped).toBe(4);
    expect(f.get(1)).toBe("a"); // results in flight are still kept
  });

  it("does not re-request cached or loading keys; strings and numbers differ", async () => {
    const { calls, loader } = controlled();
    const f = new KeyedFetcher(loader, { batchSize: 10, release: () => {} });
    f.want([1, "1"]);
    await flush();
    f.want([1, "1", 2]);
    await flush();
    expect(calls.map((c) => c.keys)).toEqual([[1, "1"], [2]]);
    calls[0].resolve(["n", "s"]);
    await flush();
    expect([f.get(1), f.get("1")]).toEqual(["n", "s"]);
    f.want([1]);
    await flush();
    expect(calls.length).toBe(2);
    expect(f.stats.cacheHits).toBe(1);
  });

  it("evicts least recently used URLs but never wanted ones", async () => {
    const released: string[] = [];
    const f = new KeyedFetcher(async (keys) => keys.map((k) => `u${k}`), {
      batchSize: 10,
      cacheSize: 3,
      release: (u) => released.push(u),
    });
    f.want([1, 2, 3]);
    await flush();
    f.get(1); // 1 is now most recently used
    f.want([4, 5]);
    await flush();
    expect(released.sort()).toEqual(["u2", "u3"]);
    expect(f.get(1)).toBe("u1");
    expect(f.cached).toBe(3);
  });

  it("reports errors, remembers failed keys, and can retry", async () => {
    let fail = true;
    const errors: string[] = [];
    const f = new KeyedFetcher(async (keys) => {
      if (fail) throw new Error("KeyError: 5");
      return keys.map((k) => `u${k}`);
    }, { release: () => {} });
    f.onError((_k, e) => errors.push(e.message));
    f.want([5]);
    await flush();
    expect(errors).toEqual(["KeyError: 5"]);
    expect(f.error(5)).toBe("KeyError: 5");
    f.want([5]);
    await flush();
    expect(errors.length).toBe(1); // not retried automatically
    fail = false;
    f.retryFailed();
    f.want([5]);
    await flush();
    expect(f.get(5)).toBe("u5");
  });

  it("dispose aborts in flight and releases everything", async () => {
    const { calls, loader } = controlled();
    const released: string[] = [];
    const f = new KeyedFetcher(loader, { release: (u) => released.push(u) });
    f.want([1]);
    await flush();
    calls[0].resolve(["u1"]);
    await flush();
    f.want([2]);
    await flush();
    f.dispose();
    expect(calls[1].signal.aborted).toBe(true);
    expect(released).toEqual(["u1"]);
  });
});

describe("KeyedFetcher retries", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("asks again for a failed key wanted after a pause that doubles per failure", async () => {
    vi.useFakeTimers();
    let fail = 2;
    const asked: Key[][] = [];
    const f = new KeyedFetcher(
      async (keys) => {
        asked.push(keys);
        if (fail-- > 0) throw new Error("OSError: disk busy");
        return keys.map((k) => `u${k}`);
      },
      { retryMs: 1000, release: () => {} },
    );
    f.want([4]);
    await vi.advanceTimersByTimeAsync(0);
    expect(f.error(4)).toBe("OSError: disk busy");
    await vi.advanceTimersByTimeAsync(999);
    f.want([4]);
    await vi.advanceTimersByTimeAsync(0);
    expect(asked.length).toBe(1); // still resting
    await vi.advanceTimersByTimeAsync(1);
    f.want([4]); // scrolled back after the pause
    await vi.advanceTimersByTimeAsync(0);
    expect(asked.length).toBe(2);
    await vi.advanceTimersByTimeAsync(1000);
    f.want([4]);
    await vi.advanceTimersByTimeAsync(0);
    expect(asked.length).toBe(2); // second failure: two seconds now
    await vi.advanceTimersByTimeAsync(1000);
    f.want([4]);
    await vi.advanceTimersByTimeAsync(0);
    expect(asked.length).toBe(3);
    expect(f.get(4)).toBe("u4");
    expect(f.error(4)).toBeUndefined();
  });
});

describe("pythonImages with a busy kernel", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("loads images that waited longer than a minute, without errors, and says it is waiting", async () => {
    vi.useFakeTimers();
    const m = new MockModel({ request_patience: 3 });
    const queued: any[] = [];
    m.responder = (msg) => {
      queued.push(msg);
      return undefined;
    };
    const { rpc, fetcher } = pythonImages(m, { batchSize: 2, release: () => {} });
    expect(rpc!.checkMs).toBe(3000);
    const errors: string[] = [];
    const loaded: Key[] = [];
    fetcher.onError((_k, e) => errors.push(e.message));
    fetcher.onLoad((k) => loaded.push(k));
    fetcher.want([1, 2, 3]);
    await vi.advanceTimersByTimeAsync(2000);
    expect(waitingText(rpc!.state)).toMatch(/waiting for the kernel: 2 requests/);
    await vi.advanceTimersByTimeAsync(73_000);
    expect(errors).toEqual([]);
    expect(loaded).toEqual([]);
    // the kernel frees up and answers what it queued, in order
    m.responder = null;
    for (const msg of queued.splice(0)) {
      if (msg.type === "fetch") {
        const [meta, bufs] = fakeImageBatch(msg.keys);
        m.emit({ ...meta, request_id: msg.request_id, ok: true }, bufs);
      } else m.emit({ request_id: msg.request_id, ok: true });
    }
    await vi.advanceTimersByTimeAsync(0);
    expect(loaded.sort()).toEqual([1, 2, 3]);
    expect(errors).toEqual([]);
    expect(waitingText(rpc!.state)).toBe("");
  });
});

describe("waitingText", () => {
  it("says what the widget waits for, and when the kernel has stopped", () => {
    const base = { waiting: true, pending: 2, forMs: 9000, resent: 0 };
    expect(waitingText({ ...base, waiting: false })).toBe("");
    expect(waitingText(base)).toBe("waiting for the kernel: 2 requests will be answered when it is free");
    expect(waitingText({ ...base, pending: 1, kernel: "busy" })).toMatch(/^waiting for the kernel: 1 request will/);
    expect(waitingText({ ...base, kernel: "dead" })).toMatch(/^the kernel has stopped: 2 requests wait/);
  });

  it("reads the kernel's status from the host's widget manager", () => {
    const kernel = { status: "busy" };
    const m = new MockModel({});
    Object.defineProperty(m, "widget_manager", { get: () => ({ kernel }) });
    const { rpc } = pythonImages(m, {});
    expect(rpc!.state.kernel).toBe("busy");
    kernel.status = "dead";
    expect(rpc!.state.kernel).toBe("dead");
    const plain = pythonImages(new MockModel({}), {});
    expect(plain.rpc!.state.kernel).toBeUndefined();
  });
});
