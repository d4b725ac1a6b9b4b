// Request/response over anywidget custom messages.
//
// The front end sends {type, request_id, ...} with model.send; Python answers with
// model.send(content, buffers) where content carries the same request_id and `ok`.
// Several views of one model share the message channel, so request ids carry a
// per-client prefix and every client ignores replies that are not its own.

export interface MessageModel {
  send(content: unknown, callbacks?: unknown, buffers?: ArrayBuffer[] | ArrayBufferView[]): void;
  on(event: "msg:custom", cb: (msg: any, buffers: DataView[]) => void): void;
  off(event: "msg:custom", cb: (msg: any, buffers: DataView[]) => void): void;
}

export interface Reply {
  content: Record<string, any>;
  buffers: DataView[];
}

export class RequestError extends Error {}
export class AbortedError extends Error {
  constructor() {
    super("request cancelled");
    this.name = "AbortError";
  }
}

interface Pending {
  resolve: (r: Reply) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout> | null;
}

let clientCounter = 0;

export class RpcClient {
  readonly prefix: string;
  private next = 0;
  private pending = new Map<string, Pending>();
  private listener: (msg: any, buffers: DataView[]) => void;
  private disposed = false;

  constructor(
    private model: MessageModel,
    private timeoutMs = 60_000,
  ) {
    this.prefix = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}-${clientCounter++}`;
    this.listener = (msg, buffers) => this.onMessage(msg, buffers);
    model.on("msg:custom", this.listener);
  }

  get inFlight(): number {
    return this.pending.size;
  }

  /** Send a request and resolve with Python's reply; rejects on `ok: false`, timeout or abort. */
  request(type: string, payload: Record<string, unknown> = {}, signal?: AbortSignal): Promise<Reply> {
    if (this.disposed) return Promise.reject(new RequestError("widget view was closed"));
    if (signal?.aborted) return Promise.reject(new AbortedError());
    const id = `${this.prefix}:${this.next++}`;
    return new Promise<Reply>((resolve, reject) => {
      const entry: Pending = { resolve, reject, timer: null };
      if (this.timeoutMs > 0) {
        entry.timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new RequestError(`no answer from Python to "${type}" after ${this.timeoutMs / 1000} s (is the kernel busy or dead?)`));
        }, this.timeoutMs);
      }
      this.pending.set(id, entry);
      signal?.addEventListener(
        "abort",
        () => {
          if (this.settle(id)) reject(new AbortedError());
        },
        { once: true },
      );
      this.model.send({ ...payload, type, request_id: id });
    });
  }

  private settle(id: string): Pending | undefined {
    const entry = this.pending.get(id);
    if (!entry) return undefined;
    this.pending.delete(id);
    if (entry.timer !== null) clearTimeout(entry.timer);
    return entry;
  }

  private onMessage(msg: any, buffers: DataView[] | undefined): void {
    if (!msg || typeof msg !== "object" || typeof msg.request_id !== "string") return;
    const entry = this.settle(msg.request_id);
    if (!entry) return;
    if (msg.ok === false) entry.reject(new RequestError(String(msg.error ?? "request failed in Python")));
    else entry.resolve({ content: msg, buffers: buffers ?? [] });
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.model.off("msg:custom", this.listener);
    for (const id of [...this.pending.keys()]) {
      this.settle(id)?.reject(new RequestError("widget view was closed"));
    }
  }
}
