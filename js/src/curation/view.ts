// CurationSelector's view: a grid of a mid-range band's samples to mark keep /
// spurious / exclude. Keys act on the focused sample (k keep, s spurious, x exclude, 0
// or Backspace clears, u undo, arrows move); the K / S / X buttons do the same with the
// mouse. Every mark is sent to Python, which saves the curation file and then updates
// the `marks` trait; until then the cell shows the mark as pending. The band panel
// moves the band; Python selects the new samples and replaces `items`.
// Python side: repwidgets/widgets/curation.py.

import type { AnyModel } from "@anywidget/types";
import { h, setText } from "../lib/dom";
import type { KeyedFetcher } from "../lib/fetcher";
import { waitingText } from "../lib/images";
import { gridKey } from "../lib/keyboard";
import { oncePerTick, type Handlers } from "../lib/listen";
import { Disposables, nextFrame, ownImages } from "../lib/mount";
import type { RpcClient } from "../lib/rpc";
import { applyAutoTheme } from "../lib/theme";
import { VirtualGrid } from "../lib/vgrid";
import { BandPanel, type BandHost } from "./band";
import { cellSize, createCell, fillCell, type Cell } from "./cells";
import { countMarks, decodeItems, filterItems, marksOutside, type Items } from "./marks";
import { MARKS, type CurationModel, type CurationOptions, type Mark } from "./model";

const KEY_TO_MARK: Record<string, Mark | null> = { k: "keep", s: "spurious", x: "exclude", "0": null, Backspace: null, Delete: null };
const PAD = 6;
const GAP = 6;
const IMAGE_ERROR = "Could not load ";

export class CurationView implements BandHost {
  readonly d = new Disposables();
  readonly root: HTMLElement;
  readonly rpc: RpcClient | null;
  private readonly fetcher: KeyedFetcher;
  private readonly title = h("span", { class: "rw-cur-title" });
  private readonly countEls = Object.fromEntries(
    MARKS.map((m) => [m, h("span", { class: "rw-cur-count", attrs: { "data-mark": m } })]),
  ) as Record<Mark, HTMLElement>;
  private readonly undoButton = h("button", { text: "undo (u)", attrs: { type: "button", class: "rw-cur-undo", title: "undo the last mark" } });
  private readonly filter = h("select", { attrs: { "aria-label": "show", class: "rw-cur-filter" } });
  private readonly status = h("span", { class: "rw-cur-status rw-statusline", attrs: { "aria-live": "polite" } });
  private readonly band: BandPanel;
  private readonly viewport = h("div", { class: "rw-cur-viewport", attrs: { tabindex: "0", role: "grid", "aria-label": "band samples" } });
  private readonly empty = h("div", { class: "rw-cur-empty" });
  private readonly errorBox = h("div", { class: "rw-cur-error", attrs: { role: "alert" } });
  private readonly waiting = h("div", { class: "rw-cur-waiting", attrs: { role: "status", "aria-live": "polite" } });

  private items: Items | null = null;
  private order: number[] = [];
  private cursor = -1;
  /** Marks sent to Python and not yet in the marks trait (null: cleared). */
  private readonly pending = new Map<number, Mark | null>();
  private marks: Record<string, Mark> = {};
  private grid: VirtualGrid | null = null;
  private geometry = "";

  constructor(
    private readonly model: AnyModel<CurationModel>,
    el: HTMLElement,
    readonly options: CurationOptions = {},
  ) {
    this.root = h("div", { class: "rw-root rw-cur", attrs: { "data-lm-suppress-shortcuts": "true" } });
    el.appendChild(this.root);
    this.d.add(() => this.root.remove());
    applyAutoTheme(this.root);
    ({ rpc: this.rpc, fetcher: this.fetcher } = ownImages(this.d, model, { batchSize: options.batchSize ?? 48, maxInFlight: 2, cacheSize: 3000 }));
    this.band = new BandPanel(this);
    this.buildDom();
    this.watchImages();
    this.bindEvents();
    this.d.model(model, this.handlers());
    this.d.theme(this.root, () => this.band.draw());
    this.d.visibility(this.band.hist, () => this.band.draw());
    this.d.add(() => this.grid?.dispose());
    this.marks = { ...(this.get("marks") ?? {}) };
    this.updateCounts();
    this.loadTexts();
    this.loadItems();
    nextFrame(() => this.band.draw(), 16);
  }

  destroy(): void {
    this.d.dispose();
  }

  get<K extends keyof CurationModel>(k: K): CurationModel[K] {
    return this.model.get(k);
  }

  setStatus(text: string): void {
    setText(this.status, text);
  }

  setError(text: string): void {
    setText(this.errorBox, text);
  }

  sampleCount(): number {
    return this.items ? this.items.samples.data.length : 0;
  }

  private buildDom(): void {
    for (const f of ["all", "unmarked", ...MARKS]) this.filter.appendChild(h("option", { text: `show: ${f}`, attrs: { value: f } }));
    const counts = h("span", { class: "rw-cur-counts", attrs: { "aria-live": "polite" } }, MARKS.map((m) => this.countEls[m]));
    const toolbar = h("div", { class: "rw-cur-bar" }, [this.title, counts, this.undoButton, this.filter, this.status]);
    const help = h("div", {
      class: "rw-cur-help",
      text: "click a sample, then: k keep · s spurious · x exclude · 0 clear · u undo · arrows move",
    });
    this.root.append(toolbar, this.band.el, this.viewport, this.empty, this.waiting, this.errorBox, help);
  }

  private watchImages(): void {
    this.fetcher.onLoad(oncePerTick(() => this.grid?.refresh()));
    this.fetcher.onError((keys, err) => this.setError(`${IMAGE_ERROR}${keys.length} image(s): ${err.message}`));
    this.fetcher.onLoad(() => {
      if (this.errorBox.textContent?.startsWith(IMAGE_ERROR)) this.setError("");
    });
    this.d.add(this.rpc?.onWait((s) => setText(this.waiting, waitingText(s))));
  }

  // ----- grid -----
  private thumb(): number {
    const t = Number(this.get("thumb_size"));
    return Number.isFinite(t) && t >= 24 ? Math.min(t, 256) : 72;
  }

  private ensureGrid(): void {
    const t = this.thumb();
    const { cellWidth, cellHeight } = cellSize(t);
    const h0 = Number(this.get("height"));
    this.viewport.style.height = `${Number.isFinite(h0) && h0 > 100 ? h0 : 480}px`;
    const key = `${cellWidth}x${cellHeight}`;
    if (this.grid && key === this.geometry) return;
    this.grid?.dispose();
    this.geometry = key;
    this.grid = new VirtualGrid(this.viewport, {
      cellWidth,
      cellHeight,
      gap: GAP,
      padding: PAD,
      overscan: 1,
      measure: this.options.measure,
      createCell: () => createCell(t),
      updateCell: (c, i) => this.updateCell(c as Cell, i),
      onRender: (start, end) => {
        if (!this.items) return;
        const keys: number[] = [];
        for (let i = start; i < end; i++) keys.push(this.items.samples.data[this.order[i]]);
        this.fetcher.want(keys);
      },
    });
    this.grid.setCount(this.order.length);
  }

  private markOf(sample: number): { mark: Mark | undefined; isPending: boolean } {
    if (this.pending.has(sample)) return { mark: this.pending.get(sample) ?? undefined, isPending: true };
    return { mark: this.marks[String(sample)], isPending: false };
  }

  private updateCell(cell: Cell, i: number): void {
    const items = this.items;
    if (!items) return;
    const pos = this.order[i];
    const sample = items.samples.data[pos];
    const { mark, isPending } = this.markOf(sample);
    fillCell(cell, items, {
      index: i,
      pos,
      mark,
      pending: isPending,
      cursor: i === this.cursor,
      scoreName: this.get("score_name"),
      classNames: this.get("class_names"),
      groupNames: this.get("group_names"),
      url: this.fetcher.get(sample),
    });
  }

  private refreshOrder(): void {
    const { items, cursor, order, filter } = this;
    const cursorSample = items && cursor >= 0 && cursor < order.length ? items.samples.data[order[cursor]] : null;
    this.order = items ? filterItems(items.samples.data, this.marks, filter.value) : [];
    this.cursor = cursorSample !== null && items ? this.order.findIndex((p) => items.samples.data[p] === cursorSample) : -1;
    this.ensureGrid();
    this.grid?.setCount(this.order.length);
    const none = items && items.samples.data.length === 0;
    setText(this.empty, none ? "no samples in this band" : this.order.length === 0 ? `no ${filter.value} samples in this band` : "");
    this.empty.style.display = this.order.length === 0 ? "" : "none";
  }

  private updateCounts(): void {
    const c = countMarks(this.marks);
    for (const m of MARKS) setText(this.countEls[m], `${m} ${c[m]}`);
    this.updateOutside();
  }

  private updateOutside(): void {
    const n = this.items ? marksOutside(this.items.samples.data, this.marks) : 0;
    const where = this.get("file") ? "kept in the file" : "kept in memory";
    this.band.showOutside(n === 0 ? "" : `${n} marked sample${n === 1 ? " is" : "s are"} outside the band (${where})`);
  }

  // ----- marking -----
  private setMark(sample: number, mark: Mark | null): void {
    const current = this.markOf(sample).mark ?? null;
    if (current === mark) return;
    this.pending.set(sample, mark);
    this.grid?.refresh();
    if (!this.rpc) return;
    this.setStatus("saving…");
    this.rpc
      .request("mark", { sample, mark })
      .then(() => {
        if (this.pending.get(sample) === mark) this.pending.delete(sample);
        if (this.pending.size === 0) this.setStatus("saved");
        this.setError("");
        this.grid?.refresh();
      })
      .catch((e: Error) => {
        this.pending.delete(sample);
        this.setStatus("");
        this.setError(`Not saved: ${e.message}`);
        this.grid?.refresh();
      });
  }

  private undo(): void {
    if (!this.rpc) return;
    this.setStatus("undoing…");
    this.rpc
      .request("undo", {})
      .then(({ content }) => this.setStatus(content.sample === null ? "nothing to undo" : `undid #${content.sample}`))
      .catch((e: Error) => {
        this.setStatus("");
        this.setError(`Undo failed: ${e.message}`);
      });
  }

  private moveCursor(next: number): void {
    const prev = this.cursor;
    this.cursor = next;
    if (prev >= 0) this.grid?.refreshIndex(prev);
    if (next >= 0) {
      this.grid?.scrollToIndex(next);
      this.grid?.refreshIndex(next);
    }
  }

  // ----- events -----
  private bindEvents(): void {
    const { d, viewport } = this;
    d.on(viewport, "click", (ev) => this.onClick(ev));
    d.on(viewport, "keydown", (ev) => this.onKey(ev));
    // keys typed in the widget belong to it, not to the notebook (but let run-cell through)
    d.on(this.root, "keydown", (ev) => {
      if (ev.key === "Enter" && (ev.shiftKey || ev.ctrlKey || ev.metaKey)) return;
      ev.stopPropagation();
    });
    d.on(this.undoButton, "click", () => this.undo());
    d.on(this.filter, "change", () => {
      this.refreshOrder();
      viewport.focus({ preventScroll: true });
    });
  }

  private onClick(ev: MouseEvent): void {
    const t = ev.target as HTMLElement;
    const cell = t.closest?.(".rw-cur-cell") as Cell | null;
    const items = this.items;
    if (!cell || !items || cell._pos < 0) return;
    this.viewport.focus({ preventScroll: true });
    this.moveCursor(cell._pos);
    const set = t.closest?.("button")?.getAttribute("data-set") as Mark | null;
    if (set) {
      const sample = items.samples.data[this.order[cell._pos]];
      this.setMark(sample, this.markOf(sample).mark === set ? null : set);
    }
  }

  private onKey(ev: KeyboardEvent): void {
    const items = this.items;
    if (!items || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const key = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
    if (key === "u") {
      ev.preventDefault();
      this.undo();
      return;
    }
    if (key in KEY_TO_MARK) {
      ev.preventDefault();
      if (this.cursor < 0 && this.order.length > 0) this.moveCursor(0);
      if (this.cursor < 0) return;
      this.setMark(items.samples.data[this.order[this.cursor]], KEY_TO_MARK[key]);
      // move on to the next sample, as in any labelling tool (not after clearing)
      const next = this.cursor + 1;
      if (KEY_TO_MARK[key] !== null && next < this.order.length && this.filter.value === "all") this.moveCursor(next);
      return;
    }
    const r = gridKey(ev, this.cursor, this.order.length, this.grid?.columns ?? 1, this.grid?.pageRows ?? 3);
    if (!r.handled) return;
    ev.preventDefault();
    if (r.action === "move" || r.action === "range") this.moveCursor(r.cursor);
    else if (r.action === "escape") this.moveCursor(-1);
  }

  // ----- Python -> view -----
  private loadItems(): void {
    try {
      this.items = decodeItems(this.get("items"));
    } catch (e) {
      this.items = null;
      this.setError(`Could not read the band: ${(e as Error).message}`);
    }
    this.geometry = "";
    this.cursor = -1;
    this.refreshOrder();
    this.band.syncSliders();
    this.band.draw();
    this.updateOutside();
  }

  private loadMarks(): void {
    this.marks = { ...(this.get("marks") ?? {}) };
    for (const [s, m] of [...this.pending]) if ((this.marks[String(s)] ?? null) === m) this.pending.delete(s);
    this.updateCounts();
    if (this.filter.value !== "all") this.refreshOrder();
    else this.grid?.refresh();
  }

  private loadTexts(): void {
    setText(this.title, this.get("title") ?? "");
    const file = this.get("file") ?? "";
    this.status.title = file ? `saved to ${file}` : "marks kept in memory (no file)";
    if (!this.status.textContent) this.setStatus(file ? file.split(/[\\/]/).pop() ?? file : "in memory");
    this.setError(this.get("error") ?? "");
  }

  private handlers(): Handlers {
    const texts = () => this.loadTexts();
    const drawBand = () => this.band.draw();
    return [
      ["change:items", () => this.loadItems()],
      ["change:version", () => {}],
      ["change:marks", () => this.loadMarks()],
      ["change:band", () => this.band.settle()],
      ["change:limits", () => { drawBand(); this.band.syncSliders(); }],
      ["change:histogram", drawBand],
      ["change:title", texts],
      ["change:file", texts],
      ["change:error", texts],
      ["change:thumb_size", () => { this.geometry = ""; this.ensureGrid(); this.grid?.setCount(this.order.length); }],
      ["change:height", () => this.ensureGrid()],
      ["change:can_move_band", () => this.band.syncSliders()],
    ];
  }
}
