// DistanceHeatmap's view: a k x k matrix on a canvas, rows/columns in clustered order,
// with a colour legend, hover details (both neurons' ids, labels, images and the
// value), wheel zoom, drag pan, click and brush (shift-drag) selection of rows.
// Python side: repwidgets/widgets/heatmap.py.

import type { AnyModel } from "@anywidget/types";
import { h, setStatus, setText } from "../lib/dom";
import type { KeyedFetcher } from "../lib/fetcher";
import { fmt } from "../lib/format";
import { suppressNotebookShortcuts } from "../lib/keyboard";
import type { Handlers } from "../lib/listen";
import {
  COLORMAPS,
  buildLut,
  cellCentre,
  clampView,
  codeColours,
  decodeMatrix,
  fitView,
  inversePermutation,
  matrixRange,
  valueAt,
  type HView,
  type Matrix,
} from "../lib/matrix";
import { Disposables, FrameScheduler, ownImages } from "../lib/mount";
import { applyAutoTheme } from "../lib/theme";
import { drawable } from "../lib/visibility";
import { MatrixCanvas } from "./canvas";
import { PointerControl } from "./pointer";
import { decodeIds, decodePermutation } from "./data";
import { Legend } from "./legend";
import { GUTTER, LEGEND_W, type HeatmapHandle, type HeatmapModel, type HeatmapOptions } from "./model";
import { Tooltip } from "./tooltip";

export class HeatmapView {
  readonly d = new Disposables();
  readonly root: HTMLElement;
  private readonly title = h("span", { class: "rw-title" });
  private readonly orderSelect = h("select", { attrs: { "aria-label": "order" } });
  private readonly cmapSelect = h("select", { attrs: { "aria-label": "colour map" } });
  private readonly resetButton = h("button", { text: "reset", title: "show the whole matrix (R)", attrs: { type: "button" } });
  private readonly clearButton = h("button", { text: "clear", title: "clear the selection (Esc)", attrs: { type: "button" } });
  private readonly status = h("span", { class: "rw-status rw-statusline", attrs: { "aria-live": "polite" } });
  readonly plot: HTMLElement;
  readonly canvas: MatrixCanvas;
  private readonly tip = new Tooltip();
  private readonly legend = new Legend();
  private readonly message = h("div", { class: "rw-message", attrs: { role: "status" } });
  private readonly fetcher: KeyedFetcher;
  readonly frame = new FrameScheduler(() => this.draw());
  private readonly pointer: PointerControl;

  private m: Matrix | null = null;
  k = 0;
  /** Display row -> matrix row, and back. */
  perm: Int32Array = new Int32Array(0);
  private inv: Int32Array = new Int32Array(0);
  ids: Int32Array = new Int32Array(0);
  /** Neuron id -> matrix row. */
  private idPos = new Map<number, number>();
  private range: [number, number] = [0, 1];
  private lut = buildLut("viridis");
  private codes: Uint32Array | null = null;
  view: HView = { x0: 0, y0: 0, s: 1 };
  /** Hovered display (row, col). */
  private hover: [number, number] | null = null;
  selected: number[] = [];

  constructor(
    private readonly model: AnyModel<HeatmapModel>,
    el: HTMLElement,
    private readonly options: HeatmapOptions = {},
  ) {
    this.root = h("div", { class: "rw-root rw-heatmap", attrs: { tabindex: "0" } });
    el.appendChild(this.root);
    this.d.add(() => this.root.remove());
    applyAutoTheme(this.root);
    this.buildToolbar();
    this.plot = h("div", { class: "rw-hm-plot" });
    this.canvas = new MatrixCanvas(this.plot);
    this.plot.append(this.canvas.base, this.canvas.overlay, this.tip.el);
    this.root.append(h("div", { class: "rw-hm-body" }, [this.plot, this.legend.el]), this.message);
    this.fetcher = ownImages(this.d, model, { batchSize: 8, maxInFlight: 2, cacheSize: 512 }).fetcher;
    this.fetcher.onLoad(() => this.fillTipImages());
    this.fetcher.onError((keys, err) => setText(this.message, `Could not load ${keys.length} image(s): ${err.message}`));
    this.pointer = new PointerControl(this);
    this.bindControls();
    this.d.model(model, this.handlers());
    this.d.visibility(this.root, this.frame.request);
    this.d.theme(this.root, this.frame.request);
    (this.root as unknown as { __rw: HeatmapHandle }).__rw = this.handle();
    this.syncControls();
    this.resize();
    this.loadMatrix();
    this.loadSelection();
    this.draw();
  }

  destroy(): void {
    this.d.dispose();
  }

  private get<K extends keyof HeatmapModel>(key: K): HeatmapModel[K] {
    return this.model.get(key);
  }

  private buildToolbar(): void {
    for (const [v, t] of [["cluster", "clustered"], ["none", "original order"]]) {
      this.orderSelect.appendChild(h("option", { text: t, attrs: { value: v } }));
    }
    for (const name of Object.keys(COLORMAPS)) this.cmapSelect.appendChild(h("option", { text: name, attrs: { value: name } }));
    const { title, orderSelect, cmapSelect, resetButton, clearButton, status } = this;
    this.root.appendChild(h("div", { class: "rw-toolbar" }, [title, orderSelect, cmapSelect, resetButton, clearButton, status]));
    suppressNotebookShortcuts(this.root, orderSelect, cmapSelect, resetButton, clearButton);
  }

  private handle(): HeatmapHandle {
    return {
      draw: () => this.draw(),
      screenOf: (a, b) => {
        const { k, inv } = this;
        const size = this.canvas.size;
        if (!(a >= 0 && a < k && b >= 0 && b < k)) return null;
        const [x, y] = cellCentre(this.view, inv[a], inv[b]);
        return x < 0 || y < 0 || x > size || y > size ? null : [x, y];
      },
      view: () => ({ ...this.view }),
      setView: (v) => {
        this.view = clampView(v, this.k, this.canvas.size);
        this.draw();
      },
      k: () => this.k,
    };
  }

  // ----- loading -----
  /** The colour scale's ends: vmin / vmax, or the matrix's range where unset. */
  private scale(): [number, number] {
    const lo = this.get("vmin");
    const hi = this.get("vmax");
    const [r0, r1] = this.range;
    return [lo === null || lo === undefined ? r0 : Number(lo), hi === null || hi === undefined ? r1 : Number(hi)];
  }

  private loadMatrix(): void {
    setText(this.message, "");
    try {
      const st = this.get("values");
      this.m = st && st.values ? decodeMatrix(st) : null;
    } catch (e) {
      this.m = null;
      setText(this.message, `Cannot read the matrix: ${(e as Error).message}`);
    }
    this.k = this.m?.k ?? 0;
    this.range = this.m ? matrixRange(this.m) : [0, 1];
    this.ids = decodeIds(this.get("neuron_ids"), this.k);
    this.idPos = new Map();
    this.ids.forEach((id, p) => this.idPos.set(id, p));
    this.loadPermutation();
    this.loadColours();
    this.view = fitView(this.k, this.canvas.size || 1);
  }

  private loadPermutation(): void {
    this.perm = decodePermutation(this.get("permutation"), this.k);
    this.inv = inversePermutation(this.perm);
  }

  private loadColours(): void {
    const name = this.get("colormap") in COLORMAPS ? this.get("colormap") : "viridis";
    this.lut = buildLut(name, 256);
    const [lo, hi] = this.scale();
    this.codes = this.m ? codeColours(this.m, this.lut, lo, hi) : null;
    this.cmapSelect.value = name;
    this.drawLegend();
  }

  private drawLegend(): void {
    const [lo, hi] = this.scale();
    this.legend.draw(this.lut, lo, hi, this.canvas.size || 256, this.get("value_name") ?? "");
  }

  private loadSelection(): void {
    this.selected = (this.get("selected") ?? []).filter((i) => this.idPos.has(i));
  }

  // ----- drawing -----
  /** Side of the matrix area (CSS px), or 0 while the widget is hidden. */
  private measure(): number {
    if (this.options.measure) {
      const r = this.options.measure();
      return drawable(r.width, r.height) ? Math.max(50, Math.min(r.width, r.height)) : 0;
    }
    const box = this.root.getBoundingClientRect();
    if (!drawable(box.width, box.height)) return 0;
    const hh = Number(this.get("height"));
    const want = Number.isFinite(hh) && hh >= 150 ? hh : 520;
    const avail = box.width - LEGEND_W - 24 - GUTTER;
    return Math.max(120, Math.floor(avail > 0 ? Math.min(want, avail) : want));
  }

  /** Size the canvases; false (canvases and view untouched) while the widget is hidden. */
  private resize(): boolean {
    const sz = this.measure();
    if (sz === 0) return false;
    const view = this.canvas.resize(sz, this.view, this.k);
    if (view) {
      this.view = view;
      this.drawLegend();
    }
    return true;
  }

  private draw(): number {
    const t0 = performance.now();
    this.updateStatus();
    if (!this.resize()) return 0;
    if (this.m) {
      const [lo, hi] = this.scale();
      this.canvas.paint(this.view, { m: this.m, perm: this.perm, lut: this.lut, codes: this.codes, lo, hi });
    }
    this.drawOverlay();
    return performance.now() - t0;
  }

  drawOverlay(): void {
    const rows = this.selected.map((id) => this.inv[this.idPos.get(id)!]).sort((a, b) => a - b);
    this.canvas.drawOverlay({ view: this.view, rows, brush: this.pointer?.brush ?? null, hover: this.hover });
  }

  private updateStatus(): void {
    const { k, view } = this;
    const size = this.canvas.size;
    const zoom = k > 0 && size > 0 ? view.s / (size / k) : 1;
    const parts = [`${k.toLocaleString()} × ${k.toLocaleString()}`];
    if (zoom > 1.01) parts.push(`zoom ${zoom < 10 ? zoom.toFixed(1) : Math.round(zoom)}×`);
    if (this.selected.length) parts.push(`${this.selected.length.toLocaleString()} selected`);
    setStatus(this.status, parts.join(" · "));
  }

  private syncControls(): void {
    setText(this.title, this.get("title") ?? "");
    this.title.hidden = !this.get("title");
    this.orderSelect.value = this.get("order") === "none" ? "none" : "cluster";
  }

  // ----- hover -----
  setHover(cell: [number, number] | null, sx: number, sy: number): void {
    const changed = cell?.[0] !== this.hover?.[0] || cell?.[1] !== this.hover?.[1];
    this.hover = cell;
    if (changed) this.drawOverlay();
    const { m } = this;
    const [lo, hi] = this.scale();
    const size = this.canvas.size;
    if (!cell || !m) {
      this.tip.hide();
      this.legend.markValue(null, lo, hi, size || 256);
      return;
    }
    const a = this.perm[cell[0]];
    const b = this.perm[cell[1]];
    const labels = this.get("labels") ?? [];
    const v = valueAt(m, a, b);
    const valueText = `${this.get("value_name") || "value"}: ${fmt(v)}${m.quantized ? " (±" + fmt(m.step / 2) + ")" : ""}`;
    const c = { idA: this.ids[a], labelA: labels[a] ?? "", idB: this.ids[b], labelB: labels[b] ?? "", value: v, valueText };
    this.tip.show(c, sx, sy, size);
    this.legend.markValue(v, lo, hi, size || 256);
    this.fillTipImages();
  }

  private fillTipImages(): void {
    const { hover } = this;
    const show = !!this.get("has_thumbnails") && hover !== null && !!this.m;
    const pair: [number, number] | null = show ? [this.ids[this.perm[hover![0]]], this.ids[this.perm[hover![1]]]] : null;
    this.tip.showImages(pair, this.fetcher);
  }

  // ----- selection -----
  pushSelection(next: number[]): void {
    this.selected = [...new Set(next)];
    this.model.set("selected", this.selected);
    this.model.save_changes();
    this.updateStatus();
    this.drawOverlay();
  }

  // ----- controls -----
  private bindControls(): void {
    const { d } = this;
    d.on(this.resetButton, "click", () => this.resetView());
    d.on(this.clearButton, "click", () => this.pushSelection([]));
    d.on(this.orderSelect, "change", () => {
      this.model.set("order", this.orderSelect.value);
      this.model.save_changes();
    });
    d.on(this.cmapSelect, "change", () => {
      this.model.set("colormap", this.cmapSelect.value);
      this.model.save_changes();
      this.loadColours();
      this.frame.request();
    });
  }

  resetView(): void {
    this.view = fitView(this.k, this.canvas.size);
    this.frame.request();
  }

  // ----- Python -> view -----
  private handlers(): Handlers {
    const frame = this.frame.request;
    const reload = () => {
      this.loadMatrix();
      this.loadSelection();
      frame();
    };
    const recolour = () => {
      this.loadColours();
      frame();
    };
    return [
      ["change:values", reload],
      ["change:neuron_ids", reload],
      ["change:permutation", () => { this.loadPermutation(); this.setHover(null, 0, 0); frame(); }],
      ["change:selected", () => { this.loadSelection(); this.updateStatus(); this.drawOverlay(); }],
      ["change:colormap", recolour],
      ["change:vmin", recolour],
      ["change:vmax", recolour],
      ["change:value_name", () => this.drawLegend()],
      ["change:order", () => this.syncControls()],
      ["change:title", () => this.syncControls()],
      ["change:height", frame],
      ["change:has_thumbnails", () => this.fillTipImages()],
    ];
  }
}
