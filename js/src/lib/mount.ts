// Mounting and tearing down a widget view: every listener, observer, timer and
// request channel a view starts is registered with one Disposables, whose dispose()
// undoes them all (in reverse order) when the host removes the view.

import type { FetcherOptions } from "./fetcher";
import { pythonImages, type ImageSource } from "./images";
import type { Handlers } from "./listen";
import { listen } from "./listen";
import type { RpcOptions } from "./rpc";
import { applyAutoTheme, watchTheme } from "./theme";
import { watchVisibility } from "./visibility";

type Undo = () => void;

interface Observable {
  on(event: string, cb: () => void): void;
  off(event: string, cb: () => void): void;
}

/** A stack of undo functions run once, last first. */
export class Disposables {
  private undo: Undo[] = [];
  private disposed = false;

  /** Register `fn` to run on dispose (ignored when undefined). */
  add(fn: Undo | undefined | null): void {
    if (!fn) return;
    if (this.disposed) fn();
    else this.undo.push(fn);
  }

  /** addEventListener, removed on dispose. */
  on<K extends keyof HTMLElementEventMap>(
    target: HTMLElement,
    type: K,
    handler: (ev: HTMLElementEventMap[K]) => void,
    options?: AddEventListenerOptions,
  ): void {
    target.addEventListener(type, handler as EventListener, options);
    this.add(() => target.removeEventListener(type, handler as EventListener, options));
  }

  /** Subscribe to the model's trait changes, unsubscribed on dispose. */
  model(model: Observable, handlers: Handlers): void {
    this.add(listen(model, handlers));
  }

  /** Follow the host's theme: re-apply the fallback theme on `root`, then call `cb`. */
  theme(root: HTMLElement, cb: () => void): void {
    this.add(
      watchTheme(() => {
        applyAutoTheme(root);
        cb();
      }),
    );
  }

  /** Call `cb` whenever `el` may show at a new size (see visibility.ts). */
  visibility(el: Element, cb: () => void): void {
    this.add(watchVisibility(el, cb));
  }

  /** A timer slot: `set` replaces the pending call; cleared on dispose. */
  timer(): { set(fn: () => void, ms: number): void; clear(): void } {
    let id: ReturnType<typeof setTimeout> | null = null;
    const clear = () => {
      if (id !== null) clearTimeout(id);
      id = null;
    };
    this.add(clear);
    return {
      set(fn, ms) {
        clear();
        id = setTimeout(() => {
          id = null;
          fn();
        }, ms);
      },
      clear,
    };
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const fn of this.undo.splice(0).reverse()) fn();
  }
}

/** A view the entry mounts: built by its constructor, removed by destroy(). */
export interface WidgetView {
  destroy(): void;
}

/** A `render` result: the host calls it when it removes the view. */
export function mount(view: WidgetView): () => void {
  return () => view.destroy();
}

/** requestAnimationFrame where there is one (a timer elsewhere). */
export function nextFrame(cb: () => void, fallbackMs = 0): void {
  if (typeof requestAnimationFrame === "function") requestAnimationFrame(() => cb());
  else setTimeout(cb, fallbackMs);
}

/** Coalesce redraw requests: any number of `request()` calls draw once per frame. */
export class FrameScheduler {
  private requested = false;
  constructor(private readonly draw: () => void) {}
  request = (): void => {
    if (this.requested) return;
    this.requested = true;
    nextFrame(() => {
      this.requested = false;
      this.draw();
    });
  };
}

/** A canvas's 2-D context, or null where the host has none (jsdom, blocked canvases). */
export function context2d(c: HTMLCanvasElement): CanvasRenderingContext2D | null {
  try {
    return c.getContext("2d");
  } catch {
    return null;
  }
}

/** The model's thumbnails (see images.ts), disposed with `d`. */
export function ownImages(d: Disposables, model: unknown, options: FetcherOptions & RpcOptions): ImageSource {
  const source = pythonImages(model, options);
  d.add(() => source.rpc?.dispose());
  d.add(() => source.fetcher.dispose());
  return source;
}
