import { describe, expect, it } from "vitest";
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

  it("times out when Python never answers", async () => {
    const rpc = new RpcClient(new MockModel({}), 5);
    await expect(rpc.request("t")).rejects.toThrow(/no answer/);
  });
});
