// A virtualised grid of fixed-size cells inside a scroll container.
//
// Only the rows on screen (plus `overscan` rows above and below) exist in the DOM;
// cell elements are recycled from a pool as rows scroll in and out, and placed with
// CSS transforms, so scrolling thousands of cards stays fluid. With `stretch`, the
// cell width is a minimum: the columns are as many as fit, and the cells widen to
// share the row's width, so no strip of the grid stays empty.

export interface GridGeometry {
  cellWidth: number;
  cellHeight: number;
  gap: number;
  padding: number;
}

/** How many cells of `cellWidth` fit in a row of `width` pixels (at least 1). */
export function columnsFor(width: number, g: GridGeometry): number {
  const usable = width - 2 * g.padding + g.gap;
  return Math.max(1, Math.floor(usable / (g.cellWidth + g.gap)));
}

/** The width of each of `columns` cells that share a row of `width` pixels (whole pixels). */
export function stretchedWidth(width: number, columns: number, g: GridGeometry): number {
  const usable = width - 2 * g.padding - (columns - 1) * g.gap;
  return Math.max(g.cellWidth, Math.floor(usable / columns));
}

/** Index range [start, end) of cells intersecting the viewport, widened by `overscan` rows. */
export function visibleRange(
  scrollTop: number,
  viewportHeight: number,
  count: number,
  columns: number,
  g: GridGeometry,
  overscan = 1,
): { start: number; end: number } {
  if (count <= 0) return { start: 0, end: 0 };
  const rowH = g.cellHeight + g.gap;
  const rows = Math.ceil(count / columns);
  const top = Math.max(0, scrollTop - g.padding);
  const firstRow = Math.max(0, Math.floor(top / rowH) - overscan);
  const lastRow = Math.min(rows, Math.ceil((top + Math.max(viewportHeight, 0)) / rowH) + overscan);
  return { start: firstRow * columns, end: Math.min(count, lastRow * columns) };
}

/** Total scrollable height of the grid content. */
export function contentHeight(count: number, columns: number, g: GridGeometry): number {
  const rows = Math.ceil(count / columns);
  return rows === 0 ? 2 * g.padding : 2 * g.padding + rows * g.cellHeight + (rows - 1) * g.gap;
}

export interface VirtualGridOptions extends GridGeometry {
  overscan?: number;
  /** Widen cells beyond `cellWidth` to fill the row (see `cellWidthNow`). */
  stretch?: boolean;
  createCell: () => HTMLElement;
  /** Fill `el` with the content of cell `index` (called when a cell is (re)assigned). */
  updateCell: (el: HTMLElement, index: number) => void;
  /** Called after the set of rendered cells changed. */
  onRender?: (start: number, end: number) => void;
  /** Viewport size; defaults to the scroll container's client size. */
  measure?: () => { width: number; height: number };
}

const raf: (cb: () => void) => unknown =
  typeof requestAnimationFrame === "function" ? (cb) => requestAnimationFrame(cb) : (cb) => setTimeout(cb, 16);

export class VirtualGrid {
  readonly sizer: HTMLElement;
  private count = 0;
  private active = new Map<number, HTMLElement>();
  private pool: HTMLElement[] = [];
  private cols = 1;
  private width: number;
  private pending = false;
  private disposed = false;
  private resizeObserver: ResizeObserver | null = null;
  private onScroll = () => this.schedule();
  private onResize = () => {
    this.hiddenRetries = 0;
    this.schedule();
  };
  private range = { start: 0, end: 0 };
  private hiddenRetries = 0;
  private forceLater = false;

  constructor(
    readonly viewport: HTMLElement,
    private opts: VirtualGridOptions,
  ) {
    this.width = opts.cellWidth;
    this.sizer = document.createElement("div");
    this.sizer.className = "rw-vgrid-sizer";
    this.sizer.style.position = "relative";
    this.sizer.style.width = "100%";
    viewport.appendChild(this.sizer);
    viewport.addEventListener("scroll", this.onScroll, { passive: true });
    if (typeof ResizeObserver === "function") {
      this.resizeObserver = new ResizeObserver(this.onResize);
      this.resizeObserver.observe(viewport);
    } else {
      window.addEventListener("resize", this.onResize);
    }
  }

  get columns(): number {
    return this.cols;
  }

  get geometry(): GridGeometry {
    const { cellWidth, cellHeight, gap, padding } = this.opts;
    return { cellWidth, cellHeight, gap, padding };
  }

  /** The width cells have now (more than `cellWidth` when stretched to fill the row). */
  get cellWidthNow(): number {
    return this.width;
  }

  /** Rows that fit in the viewport (for Page Up / Page Down). */
  get pageRows(): number {
    const h = this.size().height;
    return Math.max(1, Math.floor(h / (this.opts.cellHeight + this.opts.gap)));
  }

  /** The [start, end) range of cells currently in the DOM. */
  get rendered(): { start: number; end: number } {
    return { ...this.range };
  }

  setCount(n: number): void {
    this.count = Math.max(0, n);
    this.hiddenRetries = 0;
    this.update(true);
  }

  /** Re-fill every rendered cell (data changed). */
  refresh(): void {
    for (const [i, el] of this.active) this.opts.updateCell(el, i);
  }

  /** Re-fill cell `index` if it is rendered. */
  refreshIndex(index: number): void {
    const el = this.active.get(index);
    if (el) this.opts.updateCell(el, index);
  }

  cellAt(index: number): HTMLElement | undefined {
    return this.active.get(index);
  }

  /** Scroll the least amount that makes cell `index` fully visible. */
  scrollToIndex(index: number): void {
    if (index < 0 || index >= this.count) return;
    const g = this.geometry;
    const row = Math.floor(index / this.cols);
    const top = g.padding + row * (g.cellHeight + g.gap);
    const bottom = top + g.cellHeight;
    const h = this.size().height;
    const st = this.viewport.scrollTop;
    if (top < st) this.viewport.scrollTop = Math.max(0, top - g.padding);
    else if (bottom > st + h) this.viewport.scrollTop = bottom - h + g.padding;
    this.update();
  }

  private size(): { width: number; height: number } {
    if (this.opts.measure) return this.opts.measure();
    return { width: this.viewport.clientWidth, height: this.viewport.clientHeight };
  }

  private schedule(): void {
    if (this.pending || this.disposed) return;
    this.pending = true;
    raf(() => {
      this.pending = false;
      this.update();
    });
  }

  /** Lay out now: (re)assign cells for the rows on screen. */
  update(force = false): void {
    if (this.disposed) return;
    const g = this.geometry;
    const { width, height } = this.size();
    if (width <= 0 || height <= 0) {
      this.forceLater ||= force;
      // Not laid out (not attached yet, hidden, or a host relayout in progress, such
      // as a theme switch): keep what is rendered and look again on the next frames.
      // A ResizeObserver does not report a size that is back to its last value.
      if (this.hiddenRetries++ < 120) this.schedule();
      return;
    }
    this.hiddenRetries = 0;
    force ||= this.forceLater;
    this.forceLater = false;
    const cols = columnsFor(width, g);
    const cellWidth = this.opts.stretch ? stretchedWidth(width, cols, g) : g.cellWidth;
    const resized = cellWidth !== this.width;
    const reflow = cols !== this.cols || resized;
    this.cols = cols;
    if (resized) {
      this.width = cellWidth;
      for (const el of [...this.active.values(), ...this.pool]) el.style.width = `${cellWidth}px`;
      force = true; // content may depend on the width
    }
    this.sizer.style.height = `${contentHeight(this.count, cols, g)}px`;
    const { start, end } = visibleRange(this.viewport.scrollTop, height, this.count, cols, g, this.opts.overscan ?? 1);
    const unchanged = !force && !reflow && start === this.range.start && end === this.range.end;
    if (unchanged) return;
    for (const [i, el] of this.active) {
      if (i >= start && i < end) continue;
      this.active.delete(i);
      el.style.display = "none";
      this.pool.push(el);
    }
    for (let i = start; i < end; i++) {
      let el = this.active.get(i);
      if (el === undefined) {
        el = this.pool.pop() ?? this.create();
        el.style.display = "";
        this.active.set(i, el);
        this.place(el, i);
        this.opts.updateCell(el, i);
      } else {
        if (reflow) this.place(el, i);
        if (force) this.opts.updateCell(el, i);
      }
    }
    this.range = { start, end };
    this.opts.onRender?.(start, end);
  }

  private create(): HTMLElement {
    const el = this.opts.createCell();
    el.style.position = "absolute";
    el.style.left = "0";
    el.style.top = "0";
    el.style.width = `${this.width}px`;
    el.style.height = `${this.opts.cellHeight}px`;
    this.sizer.appendChild(el);
    return el;
  }

  private place(el: HTMLElement, i: number): void {
    const g = this.geometry;
    const r = Math.floor(i / this.cols);
    const c = i % this.cols;
    const x = g.padding + c * (this.width + g.gap);
    const y = g.padding + r * (g.cellHeight + g.gap);
    el.style.transform = `translate(${x}px, ${y}px)`;
  }

  dispose(): void {
    this.disposed = true;
    this.viewport.removeEventListener("scroll", this.onScroll);
    this.resizeObserver?.disconnect();
    window.removeEventListener("resize", this.onResize);
    this.sizer.remove();
    this.active.clear();
    this.pool = [];
  }
}
