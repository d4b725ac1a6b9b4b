import { describe, expect, it } from "vitest";
import { KeyedFetcher, type Key } from "../src/lib/fetcher";
import { flush } from "./mockModel";

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
