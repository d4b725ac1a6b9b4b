// Wiring a view to its model's trait changes, and coalescing bursts of callbacks.

export type Handlers = [event: string, callback: () => void][];

interface Observable {
  on(event: string, cb: () => void): void;
  off(event: string, cb: () => void): void;
}

/** Subscribe every handler; returns the function that unsubscribes them all. */
export function listen(model: Observable, handlers: Handlers): () => void {
  for (const [event, cb] of handlers) model.on(event, cb);
  return () => {
    for (const [event, cb] of handlers) model.off(event, cb);
  };
}

/** Wrap `fn` so that any number of calls in one task run it once, in a microtask. */
export function oncePerTick(fn: () => void): () => void {
  let scheduled = false;
  return () => {
    if (scheduled) return;
    scheduled = true;
    queueMicrotask(() => {
      scheduled = false;
      fn();
    });
  };
}
