// Request/response over anywidget custom messages.
//
// The front end sends {type, request_id, ...} with model.send; Python answers with
// model.send(content, buffers) where content carries the same request_id and `ok`.
// Several views of one model share the message channel, so request ids carry a
// per-client prefix and every client ignores replies that are not its own.
//
// A busy kernel is normal (Run All queues our requests behind every later cell), so
// a request never fails for taking long. The kernel answers messages in the order it
// received them; so when a request has waited `checkMs`, the client sends a "ping"
// behind it: if the ping is answered while the request is not, the request was lost
// (say, the kernel was interrupted while handling it) and is sent again. While nothing
// comes back the client keeps pinging, less and less often, and reports that it is
// waiting for the kernel.

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

export interface RpcOptions {
  /** Without an answer for this long (ms), the client reports that it is waiting. */
  noticeMs?: number;
  /** A request unanswered for this long (ms) is checked with a ping (see above). */
  checkMs?: number;
  /** Unanswered pings double the interval between checks, up to this (ms). */
  maxCheckMs?: number;
  /** Give up on a request after this long (ms); 0, the default, waits as long as it takes. */
  timeoutMs?: number;
  /** The kernel's status ("idle", "busy", "dead", ...) where the host tells it. */
  kernelStatus?: () => string | undefined;
}

/** What the client is waiting for; `waiting` is false once Python answers. */
export interface WaitState {
  waiting: boolean;
  /** Requests sent and not answered. */
  pending: number;
  /** Milliseconds since the oldest unanswered request was first sent. */
  forMs: number;
  /** Requests sent again because the kernel lost them. */
  resent: number;
  /** The kernel's status where the host tells it. */
  kernel?: string;
}

export const PING = "ping";

interface Pending {
  message: Record<string, unknown>;
  resolve: (r: Reply) => void;
  reject: (e: Error) => void;
  firstSent: number;
  lastSent: number;
  /** Position of the last send in the client's message order. */
  seq: number;
  deadline: ReturnType<typeof setTimeout> | null;
}

let clientCounter = 0;

export class RpcClient {
  readonly prefix: string;
  private next = 0;
  private seq = 0;
  private pending = new Map<string, Pending>();
  /** Ping request id -> seq of the ping. */
  private pings = new Map<string, number>();
  private listener: (msg: any, buffers: DataView[]) => void;
  private waitListeners = new Set<(s: WaitState) => void>();
  private disposed = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private noticeTimer: ReturnType<typeof setTimeout> | null = null;
  private lastHeard = 0;
  private lastPing = 0;
  private interval: number;
  private waiting = false;
  private resentCount = 0;
  readonly noticeMs: number;
  readonly checkMs: number;
  readonly maxCheckMs: number;
  readonly timeoutMs: number;
  private kernelStatus: () => string | undefined;

  constructor(
    private model: MessageModel,
    options: RpcOptions = {},
  ) {
    this.prefix = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}-${clientCounter++}`;
    this.noticeMs = Math.max(0, options.noticeMs ?? 1500);
    this.checkMs = Math.max(1, options.checkMs ?? 10_000);
    this.maxCheckMs = Math.max(this.checkMs, options.maxCheckMs ?? 60_000);
    this.timeoutMs = Math.max(0, options.timeoutMs ?? 0);
    this.kernelStatus = options.kernelStatus ?? (() => undefined);
    this.interval = this.checkMs;
    this.listener = (msg, buffers) => this.onMessage(msg, buffers);
    model.on("msg:custom", this.listener);
  }

  get inFlight(): number {
    return this.pending.size;
  }

  /** The current wait state (see `onWait`). */
  get state(): WaitState {
    let first = Infinity;
    for (const p of this.pending.values()) first = Math.min(first, p.firstSent);
    return {
      waiting: this.waiting,
      pending: this.pending.size,
      forMs: first === Infinity ? 0 : Date.now() - first,
      resent: this.resentCount,
      kernel: this.kernelStatus(),
    };
  }

  /** Call `cb` when the client starts or stops waiting for the kernel, and on each check. */
  onWait(cb: (s: WaitState) => void): () => void {
    this.waitListeners.add(cb);
    return () => this.waitListeners.delete(cb);
  }

  /** Send a request and resolve with Python's reply; rejects on `ok: false`, abort or dispose. */
  request(type: string, payload: Record<string, unknown> = {}, signal?: AbortSignal): Promise<Reply> {
    if (this.disposed) return Promise.reject(new RequestError("widget view was closed"));
    if (signal?.aborted) return Promise.reject(new AbortedError());
    const id = `${this.prefix}:${this.next++}`;
    return new Promise<Reply>((resolve, reject) => {
      const now = Date.now();
      const message = { ...payload, type, request_id: id };
      const entry: Pending = { message, resolve, reject, firstSent: now, lastSent: now, seq: 0, deadline: null };
      if (this.timeoutMs > 0) {
        entry.deadline = setTimeout(() => {
          if (this.settle(id)) {
            reject(new RequestError(`no answer from Python to "${type}" after ${this.timeoutMs / 1000} s`));
          }
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
      this.transmit(entry);
      this.arm();
    });
  }

  /** Send (or send again) a request; a channel that cannot send any more fails it. */
  private transmit(entry: Pending): void {
    entry.seq = this.seq++;
    entry.lastSent = Date.now();
    try {
      this.model.send(entry.message);
    } catch (e) {
      if (this.settle(String(entry.message.request_id))) {
        const why = e instanceof Error ? e.message : String(e);
        entry.reject(new RequestError(`cannot reach the kernel (${why}); run the cell again to reconnect`));
      }
    }
  }

  private settle(id: string): Pending | undefined {
    const entry = this.pending.get(id);
    if (!entry) return undefined;
    this.pending.delete(id);
    if (entry.deadline !== null) clearTimeout(entry.deadline);
    if (this.pending.size === 0) this.idle();
    return entry;
  }

  private onMessage(msg: any, buffers: DataView[] | undefined): void {
    if (!msg || typeof msg !== "object" || typeof msg.request_id !== "string") return;
    const id: string = msg.request_id;
    if (!id.startsWith(`${this.prefix}:`)) return;
    this.heard();
    const pingSeq = this.pings.get(id);
    if (pingSeq !== undefined) {
      this.onPingAnswered(pingSeq);
      return;
    }
    const entry = this.settle(id);
    if (!entry) return;
    if (msg.ok === false) entry.reject(new RequestError(String(msg.error ?? "request failed in Python")));
    else entry.resolve({ content: msg, buffers: buffers ?? [] });
  }

  /** Python answered something: it is alive and working through our messages. */
  private heard(): void {
    this.lastHeard = Date.now();
    this.interval = this.checkMs;
    this.setWaiting(false);
    if (this.pending.size > 0) this.arm();
  }

  /** Requests sent before an answered ping were lost on the way: send them again. */
  private onPingAnswered(pingSeq: number): void {
    for (const [id, s] of this.pings) if (s <= pingSeq) this.pings.delete(id);
    for (const entry of [...this.pending.values()]) {
      if (entry.seq < pingSeq) {
        this.resentCount++;
        this.transmit(entry);
      }
    }
  }

  private ping(): void {
    const id = `${this.prefix}:${this.next++}`;
    this.pings.set(id, this.seq++);
    try {
      this.model.send({ type: PING, request_id: id });
    } catch {
      this.pings.delete(id); // the requests' own sends report a closed channel
    }
  }

  /** (Re)start the timers that notice a silent kernel and check for lost requests. */
  private arm(): void {
    if (this.disposed) return;
    if (this.noticeTimer === null && !this.waiting) {
      this.noticeTimer = setTimeout(() => {
        this.noticeTimer = null;
        this.notice();
      }, this.noticeMs);
    }
    if (this.timer === null) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.check();
      }, this.interval);
    }
  }

  /** Milliseconds since Python last answered, counted from the oldest unanswered send. */
  private silence(): number {
    let oldest = Infinity;
    for (const p of this.pending.values()) oldest = Math.min(oldest, p.lastSent);
    if (oldest === Infinity) return 0;
    return Date.now() - Math.max(oldest, this.lastHeard);
  }

  private notice(): void {
    if (this.pending.size === 0) return;
    if (this.silence() >= this.noticeMs) this.setWaiting(true);
    else this.arm();
  }

  private check(): void {
    if (this.disposed || this.pending.size === 0) return;
    const now = Date.now();
    let overdue = false;
    for (const p of this.pending.values()) overdue ||= now - p.lastSent >= this.interval;
    if (overdue && now - this.lastPing >= this.interval) {
      // pings still unanswered: the kernel is busy, check less often
      if (this.pings.size > 0) this.interval = Math.min(this.maxCheckMs, this.interval * 2);
      this.lastPing = now;
      this.ping();
      if (this.silence() >= this.noticeMs) this.setWaiting(true);
      this.emit();
    }
    this.arm();
  }

  private setWaiting(w: boolean): void {
    if (w === this.waiting) return;
    this.waiting = w;
    this.emit();
  }

  private emit(): void {
    const s = this.state;
    this.waitListeners.forEach((cb) => cb(s));
  }

  private idle(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.noticeTimer !== null) clearTimeout(this.noticeTimer);
    this.timer = null;
    this.noticeTimer = null;
    this.pings.clear();
    this.interval = this.checkMs;
    this.setWaiting(false);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.model.off("msg:custom", this.listener);
    for (const id of [...this.pending.keys()]) {
      this.settle(id)?.reject(new RequestError("widget view was closed"));
    }
    this.idle();
    this.waitListeners.clear();
  }
}
