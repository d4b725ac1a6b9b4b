// A stand-in for the anywidget model: traits, change events and custom messages.
export type Handler = (content: any, buffers: DataView[]) => void;

export class MockModel {
  state: Record<string, any>;
  sent: any[] = [];
  saves = 0;
  private listeners = new Map<string, Set<(...a: any[]) => void>>();
  /** Answer requests: return [content, buffers] or undefined (no answer). */
  responder: ((msg: any) => [any, ArrayBuffer[]] | undefined) | null = null;

  constructor(state: Record<string, any>) {
    this.state = { ...state };
  }
  get(k: string) {
    return this.state[k];
  }
  set(k: string, v: any) {
    this.state[k] = v;
  }
  save_changes() {
    this.saves++;
  }
  on(ev: string, cb: (...a: any[]) => void) {
    if (!this.listeners.has(ev)) this.listeners.set(ev, new Set());
    this.listeners.get(ev)!.add(cb);
  }
  off(ev?: string | null, cb?: ((...a: any[]) => void) | null) {
    if (ev && cb) this.listeners.get(ev)?.delete(cb);
  }
  listenerCount(ev: string) {
    return this.listeners.get(ev)?.size ?? 0;
  }
  /** Python changed a trait. */
  update(k: string, v: any) {
    this.state[k] = v;
    this.listeners.get(`change:${k}`)?.forEach((cb) => cb());
  }
  /** Python sent a custom message. */
  emit(content: any, buffers: ArrayBuffer[] = []) {
    const views = buffers.map((b) => new DataView(b));
    this.listeners.get("msg:custom")?.forEach((cb) => cb(content, views));
  }
  send(content: any) {
    this.sent.push(content);
    if (this.responder) {
      const r = this.responder(content);
      if (r) queueMicrotask(() => this.emit(r[0], r[1]));
    }
  }
  get widget_manager(): any {
    return {};
  }
}

/** Pack fake "images" (bytes [i]) as Python's encode_image_batch does. */
export function fakeImageBatch(keys: (string | number)[]): [any, ArrayBuffer[]] {
  const parts = keys.map((k) => new TextEncoder().encode(`img:${k}`));
  const offsets = [0];
  for (const p of parts) offsets.push(offsets[offsets.length - 1] + p.length);
  const buf = new Uint8Array(offsets[offsets.length - 1]);
  parts.forEach((p, i) => buf.set(p, offsets[i]));
  return [{ offsets, mimes: keys.map(() => "image/png") }, [buf.buffer]];
}

export const flush = () => new Promise((r) => setTimeout(r, 0));

/** Holds every message sent to Python (a busy kernel) until `release()` answers them in order. */
export function holdRequests(model: MockModel): { release: () => void } {
  const held: any[] = [];
  const answer = model.responder!;
  model.responder = (msg) => {
    held.push(msg);
    return undefined;
  };
  return {
    release() {
      model.responder = answer;
      for (const msg of held.splice(0)) {
        const r = answer(msg) ?? [{ request_id: msg.request_id, ok: true }, []];
        model.emit(r[0], r[1]);
      }
    },
  };
}
