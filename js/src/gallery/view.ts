// NeuronGallery's view: one card per neuron (or concept) in a virtual grid, filtered,
// sorted and selected; images fetched lazily for the cards on screen.
// Python side: repwidgets/widgets/gallery.py.

import type { AnyModel } from "@anywidget/types";
import { h, setText } from "../lib/dom";
import { keyId, type Key, type KeyedFetcher } from "../lib/fetcher";
import type { HistogramStyle } from "../lib/histogram";
import { waitingText } from "../lib/images";
import { gridKey, suppressNotebookShortcuts } from "../lib/keyboard";
import { oncePerTick, type Handlers } from "../lib/listen";
import { Disposables, ownImages } from "../lib/mount";
import type { RpcClient } from "../lib/rpc";
import { Selection, clickModifiers } from "../lib/selection";
import { applyAutoTheme, cssVar } from "../lib/theme";
import { VirtualGrid } from "../lib/vgrid";
import { CARD_INSET, GAP, PAD, cardGeometry, createCard, fillCard, setImage, thumbSize, type CardCell } from "./cards";
import { decodeHistograms, viewOrder, type Histograms } from "./filter";
import { Lightbox } from "./lightbox";
import type { Card, GalleryModel, GalleryOptions } from "./model";
import { GalleryToolbar } from "./toolbar";

export class GalleryView {
  private readonly d = new Disposables();
  private readonly root: HTMLElement;
  private readonly bar = new GalleryToolbar();
  private readonly viewport: HTMLElement;
  private readonly empty = h("div", { class: "rw-empty" });
  private readonly message = h("div", { class: "rw-message", attrs: { role: "status" } });
  private readonly waiting = h("div", { class: "rw-waiting", attrs: { role: "status", "aria-live": "polite" } });
  private readonly lightbox: Lightbox;
  private readonly rpc: RpcClient | null;
  private readonly fetcher: KeyedFetcher;

  private cards: Card[] = [];
  private order: number[] = [];
  private orderIds: number[] = [];
  private posOfId = new Map<number, number>();
  private hists: Histograms | null = null;
  private cursor = -1;
  /** Most images on one card. */
  private k = 1;
  private readonly selection: Selection;
  private grid: VirtualGrid | null = null;
  private geometryKey = "";
  private histStyle: HistogramStyle = { bar: "#1976d2", baseline: "#999" };
  /** Keys whose last request failed; their message goes once they load after all. */
  private readonly failedKeys = new Set<string>();
  private lastImageError = "";
  private readonly queryTimer = this.d.timer();

  constructor(
    private readonly model: AnyModel<GalleryModel>,
    el: HTMLElement,
    private readonly options: GalleryOptions = {},
  ) {
    this.root = h("div", { class: "rw-root rw-gallery" });
    el.appendChild(this.root);
    this.d.add(() => this.root.remove());
    applyAutoTheme(this.root);
    this.viewport = h("div", {
      class: "rw-viewport",
      attrs: { tabindex: "0", role: "listbox", "aria-multiselectable": "true" },
    });
    this.selection = new Selection(this.get("selected") ?? []);
    ({ rpc: this.rpc, fetcher: this.fetcher } = ownImages(this.d, model, {
      batchSize: options.batchSize ?? 48,
      maxInFlight: options.maxInFlight ?? 2,
      cacheSize: options.cacheSize ?? 6000,
    }));
    this.lightbox = new Lightbox(this.rpc, this.fetcher, () => this.viewport.focus({ preventScroll: true }));
    this.d.add(() => this.lightbox.dispose());
    const { bar } = this;
    this.root.append(bar.el, this.viewport, this.empty, this.waiting, this.message, this.lightbox.el);
    // arrows and space reach the grid, and typing in the filter box runs no notebook command
    suppressNotebookShortcuts(this.viewport, bar.search, bar.sortSelect, bar.orderButton, bar.clearButton, this.lightbox.closeButton);
    this.watchImages();
    this.bindEvents();
    this.d.model(model, this.handlers());
    this.d.theme(this.root, () => {
      this.readHistStyle();
      this.grid?.refresh();
    });
    this.d.add(() => this.grid?.dispose());
    this.loadCards();
  }

  destroy(): void {
    this.d.dispose();
  }

  private get<K extends keyof GalleryModel>(k: K): GalleryModel[K] {
    return this.model.get(k);
  }

  // ----- images -----
  private watchImages(): void {
    const refill = oncePerTick(() => {
      this.showImageErrors();
      this.fillImages();
    });
    this.fetcher.onLoad((key) => {
      this.failedKeys.delete(keyId(key));
      refill();
    });
    this.fetcher.onError((keys, err) => {
      keys.forEach((key) => this.failedKeys.add(keyId(key)));
      this.lastImageError = err.message;
      refill();
    });
    this.d.add(
      this.rpc?.onWait((s) => {
        setText(this.waiting, waitingText(s));
        this.lightbox.onWait(s);
      }),
    );
  }

  private showImageErrors(): void {
    const n = this.failedKeys.size;
    setText(this.message, n ? `Could not load ${n} image(s): ${this.lastImageError}` : "");
  }

  private fillImages(): void {
    if (!this.grid) return;
    const { start, end } = this.grid.rendered;
    for (let i = start; i < end; i++) {
      const cell = this.grid.cellAt(i) as CardCell | undefined;
      if (!cell) continue;
      const keys = this.cards[this.order[i]].images ?? [];
      for (let j = 0; j < Math.min(keys.length, cell._imgs.length); j++) setImage(cell._imgs[j], keys[j], this.fetcher);
    }
  }

  private wantImages(start: number, end: number): void {
    const keys: Key[] = [];
    for (let i = start; i < end; i++) for (const key of this.cards[this.order[i]].images ?? []) keys.push(key);
    this.fetcher.want(keys);
  }

  // ----- grid -----
  private geometry() {
    return cardGeometry(thumbSize(this.get("thumb_size")), this.k, this.hists !== null);
  }

  private ensureGrid(): void {
    const g = this.geometry();
    const key = `${g.cellWidth}x${g.cellHeight}x${g.t}x${g.imgCols}x${this.hists ? 1 : 0}`;
    const h0 = Number(this.get("height"));
    this.viewport.style.height = `${Number.isFinite(h0) && h0 > 80 ? h0 : 520}px`;
    if (this.grid && key === this.geometryKey) return;
    const scrollTop = this.viewport.scrollTop;
    this.grid?.dispose();
    this.geometryKey = key;
    const k = this.k;
    const hasHists = this.hists !== null;
    this.grid = new VirtualGrid(this.viewport, {
      cellWidth: g.cellWidth,
      cellHeight: g.cellHeight,
      gap: GAP,
      padding: PAD,
      overscan: 1,
      stretch: true,
      measure: this.options.measure,
      createCell: () => createCard(g, k, hasHists),
      updateCell: (cell, i) => this.updateCell(cell as CardCell, i),
      onRender: (start, end) => this.wantImages(start, end),
    });
    this.grid.setCount(this.order.length);
    this.viewport.scrollTop = scrollTop;
    this.grid.update();
  }

  private updateCell(cell: CardCell, i: number): void {
    const row = this.order[i];
    const card = this.cards[row];
    fillCard(cell, card, {
      index: i,
      row,
      selected: this.selection.has(card.id),
      cursor: i === this.cursor,
      scoreNames: this.get("score_names") ?? [],
      fetcher: this.fetcher,
      hists: this.hists,
      histWidth: (this.grid?.cellWidthNow ?? this.geometry().cellWidth) - CARD_INSET,
      histStyle: this.histStyle,
    });
  }

  private readHistStyle(): void {
    this.histStyle = { bar: cssVar(this.root, "--rw-accent", "#1976d2"), baseline: cssVar(this.root, "--rw-border", "#999") };
  }

  // ----- data -----
  private loadCards(): void {
    const cards = this.get("cards");
    this.cards = Array.isArray(cards) ? cards : [];
    this.k = 0;
    for (const c of this.cards) this.k = Math.max(this.k, c.images?.length ?? 0);
    try {
      this.hists = decodeHistograms(this.get("histograms"), this.cards.length);
    } catch (e) {
      this.hists = null;
      setText(this.message, `Could not read histograms: ${(e as Error).message}`);
    }
    this.readHistStyle();
    this.bar.fillSortOptions(this.get("score_names") ?? [], this.get("sort_by"));
    this.recomputeOrder();
  }

  private recomputeOrder(): void {
    const sortBy = (this.get("score_names") ?? []).includes(this.get("sort_by")) ? this.get("sort_by") : "";
    const { cursor, orderIds } = this;
    const cursorId = cursor >= 0 && cursor < orderIds.length ? orderIds[cursor] : null;
    this.order = viewOrder(this.cards, this.get("query") ?? "", sortBy, this.get("descending") ?? true);
    this.orderIds = this.order.map((i) => this.cards[i].id);
    this.posOfId = new Map(this.orderIds.map((id, i) => [id, i]));
    this.cursor = cursorId !== null ? this.posOfId.get(cursorId) ?? -1 : -1;
    this.ensureGrid();
    this.grid?.setCount(this.order.length);
    this.syncControls();
  }

  private syncControls(): void {
    this.bar.sync(this.get("title") ?? "", this.get("query") ?? "", this.get("descending") ?? true);
    this.updateStatus();
    const noun = this.get("noun") || "items";
    if (this.cards.length === 0) setText(this.empty, `no ${noun}`);
    else if (this.order.length === 0) setText(this.empty, `no ${noun} match “${this.get("query")}”`);
    else setText(this.empty, "");
    this.empty.style.display = this.order.length === 0 ? "" : "none";
  }

  private updateStatus(): void {
    this.bar.showCounts(this.order.length, this.cards.length, this.get("noun") || "items", this.selection.size);
  }

  // ----- selection -----
  private pushSelection(): void {
    const values = this.selection.values();
    const current = this.get("selected") ?? [];
    if (!this.selection.equals(current) || values.length !== current.length) {
      this.model.set("selected", values);
      this.model.save_changes();
    }
    this.grid?.refresh();
    this.updateStatus();
  }

  private moveCursor(next: number): void {
    const prev = this.cursor;
    this.cursor = next;
    if (prev >= 0) this.grid?.refreshIndex(prev);
    this.grid?.scrollToIndex(this.cursor);
    this.grid?.refreshIndex(this.cursor);
  }

  private openDetails(card: Card, slot: number): void {
    const key = (card.images ?? [])[slot];
    if (key !== undefined) this.lightbox.show(card, key);
  }

  // ----- events -----
  private bindEvents(): void {
    const { d, viewport, bar } = this;
    d.on(viewport, "click", (ev) => this.onClick(ev));
    // keep shift-click from selecting text
    d.on(viewport, "mousedown", (ev) => {
      if (ev.shiftKey) ev.preventDefault();
    });
    d.on(viewport, "keydown", (ev) => this.onGridKey(ev));
    // Keys typed into our controls belong to us, not to the notebook's shortcuts
    // (but let Shift/Ctrl+Enter through so "run cell" still works).
    d.on(this.root, "keydown", (ev) => {
      if (ev.key === "Enter" && (ev.shiftKey || ev.ctrlKey || ev.metaKey)) return;
      if (ev.key === "Escape" && this.lightbox.open) {
        ev.preventDefault();
        this.lightbox.close();
      }
      ev.stopPropagation();
    });
    d.on(bar.clearButton, "click", () => {
      this.selection.clear();
      this.pushSelection();
    });
    d.on(bar.search, "input", () => {
      this.model.set("query", bar.search.value);
      this.recomputeOrder();
      this.queryTimer.set(() => this.model.save_changes(), 200);
    });
    d.on(bar.sortSelect, "change", () => this.setAndReorder("sort_by", bar.sortSelect.value));
    d.on(bar.orderButton, "click", () => this.setAndReorder("descending", !(this.get("descending") ?? true)));
  }

  private setAndReorder<K extends "sort_by" | "descending">(name: K, value: GalleryModel[K]): void {
    this.model.set(name, value);
    this.model.save_changes();
    this.recomputeOrder();
  }

  private onClick(ev: MouseEvent): void {
    const target = ev.target as HTMLElement | null;
    const cell = target?.closest?.(".rw-card") as CardCell | null;
    if (!cell || !this.viewport.contains(cell)) return;
    if (cell._index < 0 || cell._index >= this.order.length) return;
    const i = cell._index;
    const card = this.cards[this.order[i]];
    const modified = ev.shiftKey || ev.ctrlKey || ev.metaKey;
    if (target!.classList.contains("rw-thumb") && target!.dataset.slot !== undefined && !modified) {
      this.openDetails(card, Number(target!.dataset.slot));
      return;
    }
    this.viewport.focus({ preventScroll: true });
    this.selection.click(card.id, clickModifiers(ev), this.orderIds);
    this.moveCursor(i);
    this.pushSelection();
  }

  private onGridKey(ev: KeyboardEvent): void {
    if (this.lightbox.open) return;
    const { selection, orderIds } = this;
    const r = gridKey(ev, this.cursor, this.order.length, this.grid?.columns ?? 1, this.grid?.pageRows ?? 3);
    if (!r.handled) return;
    ev.preventDefault();
    ev.stopPropagation();
    switch (r.action) {
      case "move":
        this.moveCursor(r.cursor);
        break;
      case "range":
        this.moveCursor(r.cursor);
        selection.selectRange(orderIds[r.cursor], orderIds);
        if (ev.key === " " || ev.key === "Spacebar") selection.anchor = orderIds[r.cursor];
        this.pushSelection();
        break;
      case "toggle":
        this.moveCursor(r.cursor);
        selection.toggle(orderIds[r.cursor]);
        this.pushSelection();
        break;
      case "open":
        this.openDetails(this.cards[this.order[r.cursor]], 0);
        break;
      case "escape":
        this.moveCursor(-1);
        break;
      case "select-all":
        for (const id of orderIds) selection.add(id);
        this.pushSelection();
        break;
    }
  }

  // ----- Python -> view -----
  private handlers(): Handlers {
    const onCards = () => {
      this.geometryKey = "";
      this.loadCards();
    };
    const onView = () => {
      this.bar.fillSortOptions(this.get("score_names") ?? [], this.get("sort_by"));
      this.recomputeOrder();
    };
    const onSelected = () => {
      const vals = this.get("selected") ?? [];
      if (this.selection.equals(vals)) return;
      this.selection.replace(vals);
      this.grid?.refresh();
      this.updateStatus();
    };
    const onLayout = () => this.ensureGrid();
    const onTitle = () => this.syncControls();
    return [
      ["change:cards", onCards],
      ["change:histograms", onCards],
      ["change:score_names", onView],
      ["change:selected", onSelected],
      ["change:sort_by", onView],
      ["change:descending", onView],
      ["change:query", onView],
      ["change:thumb_size", onLayout],
      ["change:height", onLayout],
      ["change:title", onTitle],
      ["change:noun", onTitle],
    ];
  }
}
