import { afterEach, describe, expect, it, vi } from "vitest";
import { RpcClient } from "../src/lib/rpc";
import { MockModel, flush } from "./mockModel";

describe("RpcClient", () => {
  it("matches replies to requests by id and passes buffers", async () => {
    const m = new MockModel({});
    m.responder = (msg) => [{ request_id: msg.request_id, ok: true, echo: msg.x }, [new Uint8Array([9]).buffer]];
    const rpc = new RpcClient(m);
    const [a, b] = await Promise.all([rpc.request("t", { x: 1 }), rpc.request("t", { x: 2 })]);
    expect(a.content.echo).toBe(1);
    expect(b.content.echo).toBe(2);
    expect(a.buffers[0].getUint8(0)).toBe(9);
    expect(m.sent[0].type).toBe("t");
    expect(rpc.inFlight).toBe(0);
  });

  it("ignores replies meant for another view", async () => {
    const m = new MockModel({});
    const one = new RpcClient(m);
    const two = new RpcClient(m);
    const p = one.request("t");
    const id = m.sent[0].request_id;
    expect(id.startsWith(one.prefix)).toBe(true);
    m.emit({ request_id: `${two.prefix}:0`, ok: true });
    expect(one.inFlight).toBe(1);
    m.emit({ request_id: id, ok: true, v: 3 });
    expect((await p).content.v).toBe(3);
  });

  it("rejects on ok:false, abort and dispose", async () => {
    const m = new MockModel({});
    const rpc = new RpcClient(m);
    const failing = rpc.request("t");
    m.emit({ request_id: m.sent[0].request_id, ok: false, error: "KeyError: 7" });
    await expect(failing).rejects.toThrow("KeyError: 7");

    const ctl = new AbortController();
    const aborted = rpc.request("t", {}, ctl.signal);
    ctl.abort();
    await expect(aborted).rejects.toThrow(/cancelled/);

    const pending = rpc.request("t");
    rpc.dispose();
    await expect(pending).rejects.toThrow(/closed/);
    expect(m.listenerCount("msg:custom")).toBe(0);
    await flush();
  });

  it("gives up only with an explicit timeout", async () => {
    const rpc = new RpcClient(new MockModel({}), { timeoutMs: 5 });
    await expect(rpc.request("t")).rejects.toThrow(/no answer/);
  });
});

describe("RpcClient on a closed channel", () => {
  it("fails a request that cannot be sent, with the way out", async () => {
    const m = new MockModel({});
    m.send = () => {
      throw new Error("Cannot send on a closed comm");
    };
    const rpc = new RpcClient(m);
    await expect(rpc.request("fetch")).rejects.toThrow(/cannot reach the kernel \(Cannot send on a closed comm\); run the cell again/);
    expect(rpc.inFlight).toBe(0);
  });
});

describe("RpcClient with a busy kernel", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  /** A kernel that queues messages while busy and answers them in order when freed. */
  function kernel(m: MockModel) {
    const queue: any[] = [];
    let busy = true;
    const answer = (msg: any) => m.emit({ request_id: msg.request_id, ok: true, type: msg.type, v: msg.x });
    m.responder = (msg) => {
      if (busy) queue.push(msg);
      else answer(msg);
      return undefined;
    };
    return {
      queue,
      /** The kernel frees up; `drop` lists queued messages it lost (run-all after an error). */
      free(drop: (msg: any) => boolean = () => false) {
        busy = false;
        for (const msg of queue.splice(0)) if (!drop(msg)) answer(msg);
      },
      busy() {
        busy = true;
      },
    };
  }

  it("waits past the old limit, says so, and resolves when the kernel answers", async () => {
    vi.useFakeTimers();
    const m = new MockModel({});
    const k = kernel(m);
    const rpc = new RpcClient(m, { noticeMs: 1000, checkMs: 10_000, maxCheckMs: 40_000 });
    const states: boolean[] = [];
    rpc.onWait((s) => states.push(s.waiting));
    let result: any = null;
    let error: any = null;
    rpc.request("fetch", { x: 7 }).then((r) => (result = r), (e) => (error = e));
    await vi.advanceTimersByTimeAsync(1000);
    expect(rpc.state.waiting).toBe(true);
    await vi.advanceTimersByTimeAsync(5 * 60_000); // five minutes of a busy kernel
    expect(error).toBeNull();
    expect(result).toBeNull();
    const pings = k.queue.filter((msg) => msg.type === "ping");
    // pings back off: 10 s, then 20 s, then every 40 s
    expect(pings.length).toBeGreaterThanOrEqual(3);
    expect(pings.length).toBeLessThanOrEqual(10);
    expect(k.queue.filter((msg) => msg.type === "fetch").length).toBe(1); // never sent twice
    k.free();
    await vi.advanceTimersByTimeAsync(0);
    expect(result.content.v).toBe(7);
    expect(error).toBeNull();
    expect(rpc.state).toMatchObject({ waiting: false, pending: 0, resent: 0 });
    // waiting from the first second until the answer, without a break
    expect(states[states.length - 1]).toBe(false);
    expect(states.slice(0, -1).every((w) => w)).toBe(true);
  });

  it("sends a request again when the kernel answers a later ping but lost the request", async () => {
    vi.useFakeTimers();
    const m = new MockModel({});
    const k = kernel(m);
    const rpc = new RpcClient(m, { noticeMs: 1000, checkMs: 10_000 });
    let result: any = null;
    rpc.request("fetch", { x: 3 }).then((r) => (result = r));
    await vi.advanceTimersByTimeAsync(10_000);
    expect(k.queue.map((msg) => msg.type)).toEqual(["fetch", "ping"]);
    k.free((msg) => msg.type === "fetch"); // the kernel dropped the queued request
    await vi.advanceTimersByTimeAsync(0);
    expect(result).not.toBeNull();
    expect(result.content.v).toBe(3);
    const fetches = m.sent.filter((msg) => msg.type === "fetch");
    expect(fetches.length).toBe(2);
    expect(fetches[1].request_id).toBe(fetches[0].request_id);
    expect(rpc.state.resent).toBe(1);
  });

  it("keeps checking when the ping is lost too, and recovers once the kernel is free", async () => {
    vi.useFakeTimers();
    const m = new MockModel({});
    const k = kernel(m);
    const rpc = new RpcClient(m, { noticeMs: 500, checkMs: 2000, maxCheckMs: 8000 });
    let result: any = null;
    rpc.request("fetch", { x: 5 }).then((r) => (result = r));
    await vi.advanceTimersByTimeAsync(2000);
    k.free(() => true); // everything queued is lost, the kernel is idle now
    expect(result).toBeNull();
    expect(rpc.state.waiting).toBe(true);
    await vi.advanceTimersByTimeAsync(8000); // next check: a ping, answered, then the resend
    expect(result?.content.v).toBe(5);
    expect(rpc.state.waiting).toBe(false);
  });

  it("does not resend a request that is still queued behind a slow one", async () => {
    vi.useFakeTimers();
    const m = new MockModel({});
    const k = kernel(m);
    const rpc = new RpcClient(m, { checkMs: 1000 });
    const done: number[] = [];
    rpc.request("fetch", { x: 1 }).then((r) => done.push(r.content.v));
    await vi.advanceTimersByTimeAsync(1000);
    rpc.request("fetch", { x: 2 }).then((r) => done.push(r.content.v));
    await vi.advanceTimersByTimeAsync(5000);
    k.free();
    await vi.advanceTimersByTimeAsync(0);
    expect(done).toEqual([1, 2]);
    expect(m.sent.filter((msg) => msg.type === "fetch").length).toBe(2);
    expect(rpc.state.resent).toBe(0);
  });

  it("a Python error still rejects at once, and an aborted request is not resent", async () => {
    vi.useFakeTimers();
    const m = new MockModel({});
    const k = kernel(m);
    const rpc = new RpcClient(m, { checkMs: 1000 });
    const ctl = new AbortController();
    const aborted = rpc.request("fetch", { x: 1 }, ctl.signal);
    ctl.abort();
    await expect(aborted).rejects.toThrow(/cancelled/);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(k.queue.filter((msg) => msg.type === "ping").length).toBe(0);
    m.responder = null;
    const failing = rpc.request("t");
    m.emit({ request_id: m.sent[m.sent.length - 1].request_id, ok: false, error: "KeyError: 7" });
    await expect(failing).rejects.toThrow("KeyError: 7");
  });
});
