// Lazy, batched fetching of keyed resources (image thumbnails) for what is on screen.
//
// The view calls `want(keys)` with the keys it needs now, in priority order (top of
// the screen first). Keys not yet cached are queued and sent to the loader in
// batches of `batchSize`, with at most `maxInFlight` batches outstanding. Calling
// `want` again replaces the queue: keys that scrolled out of view before their batch
// was sent are dropped (cancelled) and never requested. Results are kept in an LRU
// cache of Blob URLs (revoked on eviction); keys wanted right now are never evicted.
// A key whose batch failed is asked for again when it is wanted after a pause that
// doubles with each failure (`retryMs`, up to five minutes), so that scrolling back to
// it recovers from a transient error without hammering a persistent one.

export type Key = string | number;

/** Loads a batch; resolves with one URL per key, in the same order. */
export type BatchLoader = (keys: Key[], signal: AbortSignal) => Promise<string[]>;

export interface FetcherOptions {
  batchSize?: number;
  maxInFlight?: number;
  cacheSize?: number;
  /** Release a URL when evicted (URL.revokeObjectURL by default). */
  release?: (url: string) => void;
  /** Pause before a failed key is requested again (ms; doubles per failure). */
  retryMs?: number;
}

const MAX_RETRY_MS = 5 * 60_000;

interface Failure {
  message: string;
  at: number;
  count: number;
}

export interface FetcherStats {
  requests: number;
  keysRequested: number;
  keysDropped: number;
  cacheHits: number;
  evicted: number;
}

export function keyId(k: Key): string {
  return typeof k === "number" ? `n${k}` : `s${k}`;
}

type LoadListener = (key: Key, url: string) => void;
type ErrorListener = (keys: Key[], error: Error) => void;

export class KeyedFetcher {
  private cache = new Map<string, string>(); // insertion order = LRU order
  private failed = new Map<string, Failure>();
  private queue: Key[] = [];
  private wanted = new Set<string>();
  private loading = new Set<string>();
  private controllers = new Set<AbortController>();
  private loadListeners = new Set<LoadListener>();
  private errorListeners = new Set<ErrorListener>();
  private scheduled = false;
  private disposed = false;
  readonly batchSize: number;
  readonly maxInFlight: number;
  readonly cacheSize: number;
  readonly retryMs: number;
  private release: (url: string) => void;
  readonly stats: FetcherStats = { requests: 0, keysRequested: 0, keysDropped: 0, cacheHits: 0, evicted: 0 };

  constructor(
    private loader: BatchLoader,
    opts: FetcherOptions = {},
  ) {
    this.batchSize = Math.max(1, opts.batchSize ?? 48);
    this.maxInFlight = Math.max(1, opts.maxInFlight ?? 2);
    this.cacheSize = Math.max(1, opts.cacheSize ?? 4096);
    this.release = opts.release ?? ((u) => URL.revokeObjectURL(u));
    this.retryMs = Math.max(0, opts.retryMs ?? 5000);
  }

  /** The cached URL of `key`, or undefined. */
  get(key: Key): string | undefined {
    const id = keyId(key);
    const url = this.cache.get(id);
    if (url !== undefined) {
      this.cache.delete(id);
      this.cache.set(id, url);
    }
    return url;
  }

  /** The error message if loading `key` failed. */
  error(key: Key): string | undefined {
    return this.failed.get(keyId(key))?.message;
  }

  get inFlight(): number {
    return this.controllers.size;
  }

  get queued(): number {
    return this.queue.length;
  }

  get cached(): number {
    return this.cache.size;
  }

  onLoad(cb: LoadListener): () => void {
    this.loadListeners.add(cb);
    return () => this.loadListeners.delete(cb);
  }

  onError(cb: ErrorListener): () => void {
    this.errorListeners.add(cb);
    return () => this.errorListeners.delete(cb);
  }

  /** Declare the keys needed now (priority order). Replaces the previous wish list. */
  want(keys: Iterable<Key>): void {
    if (this.disposed) return;
    const wanted = new Set<string>();
    const queue: Key[] = [];
    for (const k of keys) {
      const id = keyId(k);
      if (wanted.has(id)) continue;
      wanted.add(id);
      if (this.cache.has(id)) {
        this.stats.cacheHits++;
        continue;
      }
      if (this.loading.has(id) || this.resting(id)) continue;
      queue.push(k);
    }
    for (const k of this.queue) if (!wanted.has(keyId(k))) this.stats.keysDropped++;
    this.wanted = wanted;
    this.queue = queue;
    this.schedule();
  }

  /** True while a failed key waits before it may be requested again. */
  private resting(id: string): boolean {
    const f = this.failed.get(id);
    if (!f) return false;
    return Date.now() - f.at < Math.min(MAX_RETRY_MS, this.retryMs * 2 ** (f.count - 1));
  }

  /** Forget failures so that those keys are requested again when wanted. */
  retryFailed(): void {
    this.failed.clear();
  }

  /** Abort all batches in flight and drop the queue. */
  cancelAll(): void {
    this.stats.keysDropped += this.queue.length;
    this.queue = [];
    for (const c of [...this.controllers]) c.abort();
  }

  private schedule(): void {
    if (this.scheduled || this.disposed) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    while (!this.disposed && this.controllers.size < this.maxInFlight && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.batchSize);
      void this.load(batch);
    }
  }

  private async load(batch: Key[]): Promise<void> {
    const ids = batch.map(keyId);
    ids.forEach((id) => this.loading.add(id));
    const controller = new AbortController();
    this.controllers.add(controller);
    this.stats.requests++;
    this.stats.keysRequested += batch.length;
    try {
      const urls = await this.loader(batch, controller.signal);
      if (urls.length !== batch.length) {
        throw new Error(`asked for ${batch.length} images, got ${urls.length}`);
      }
      if (this.disposed) {
        urls.forEach((u) => this.release(u));
        return;
      }
      batch.forEach((k, i) => this.store(k, urls[i]));
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      if (err.name !== "AbortError" && !this.disposed) {
        const at = Date.now();
        ids.forEach((id) => this.failed.set(id, { message: err.message, at, count: (this.failed.get(id)?.count ?? 0) + 1 }));
        this.errorListeners.forEach((cb) => cb(batch, err));
      }
    } finally {
      ids.forEach((id) => this.loading.delete(id));
      this.controllers.delete(controller);
      this.schedule();
    }
  }

  private store(key: Key, url: string): void {
    const id = keyId(key);
    this.failed.delete(id);
    const old = this.cache.get(id);
    if (old !== undefined && old !== url) this.release(old);
    this.cache.delete(id);
    this.cache.set(id, url);
    this.evict();
    this.loadListeners.forEach((cb) => cb(key, url));
  }

  private evict(): void {
    if (this.cache.size <= this.cacheSize) return;
    for (const [id, url] of this.cache) {
      if (this.cache.size <= this.cacheSize) break;
      if (this.wanted.has(id)) continue;
      this.cache.delete(id);
      this.release(url);
      this.stats.evicted++;
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.cancelAll();
    this.disposed = true;
    for (const url of this.cache.values()) this.release(url);
    this.cache.clear();
    this.loadListeners.clear();
    this.errorListeners.clear();
  }
}
