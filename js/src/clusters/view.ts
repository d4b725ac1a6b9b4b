// ConceptBrowser's view: a 2-D embedding of samples, coloured by concept, class or any
// label, with hover thumbnails, lasso / box selection and a side panel for the clicked
// cluster and the selection. Python side: repwidgets/widgets/clusters.py.
//
// Positions (float32 [n, 2]), colour codes ([n]) and cluster membership ([n]) arrive
// as binary arrays; thumbnails are fetched lazily on hover.

import type { AnyModel } from "@anywidget/types";
import { decodeArray, type ArrayMeta } from "../lib/codec";
import { h, setStatus, setText } from "../lib/dom";
import type { Key, KeyedFetcher } from "../lib/fetcher";
import { oncePerTick, type Handlers } from "../lib/listen";
import { Disposables, FrameScheduler, ownImages } from "../lib/mount";
import { fitView, toScreen, type View } from "../lib/scatter";
import { applyAutoTheme } from "../lib/theme";
import { drawable } from "../lib/visibility";
import { ScatterCanvas } from "./canvas";
import { categoryColours, codeLabel } from "./colours";
import { MODES, type BrowserHandle, type BrowserModel, type BrowserOptions, type Coloring, type Mode } from "./model";
import { PointerControl } from "./pointer";
import { CellOrder, colourIndex } from "./raster";
import { SidePanel } from "./side";
import { BrowserToolbar } from "./toolbar";

function hasBuffer(meta: ArrayMeta | null | undefined): meta is ArrayMeta {
  return !!meta && meta.buffer !== undefined && meta.buffer !== null;
}

export class BrowserView {
  readonly d = new Disposables();
  readonly root: HTMLElement;
  readonly bar = new BrowserToolbar();
  readonly plot: HTMLElement;
  readonly canvas = new ScatterCanvas();
  readonly side = new SidePanel();
  private readonly tipImg = h("img", { attrs: { alt: "" } });
  private readonly tipText = h("div");
  private readonly tip = h("div", { class: "rw-tip" }, [this.tipImg, this.tipText]);
  private readonly message = h("div", { class: "rw-message", attrs: { role: "status" } });
  private readonly fetcher: KeyedFetcher;
  readonly frame = new FrameScheduler(() => this.draw());
  readonly scheduleImages = oncePerTick(() => this.fillImages());
  private readonly pointer: PointerControl;

  xy: Float32Array = new Float32Array(0);
  n = 0;
  membership: ArrayLike<number> | null = null;
  codes: ArrayLike<number> | null = null;
  view: View = { cx: 0, cy: 0, scale: 1 };
  private viewFitted = false;
  /** The view follows the plot's size (refit on resize) until the user pans or zooms. */
  autoFit = true;
  /** The selection mask's buffer (n bytes), kept across selections. */
  private maskBuffer: Uint8Array | null = null;
  /** The points in grid-cell order (drawing, hover, lasso and box tests), rebuilt with the points. */
  cells = new CellOrder(new Float32Array(0), 0);
  /** Each point's colour index into `colours` (clamped), and the same in cell order. */
  private colourIdx: Uint16Array | null = null;
  private sortedColourIdx: Uint16Array | null = null;
  /** The selection mask in cell order (null: nothing selected). */
  private sortedMask: Uint8Array | null = null;
  private sortedMaskBuffer: Uint8Array | null = null;
  selectedList: number[] = [];
  hover = -1;
  private colours: Uint32Array = new Uint32Array(1);
  private dimmed: Uint32Array = new Uint32Array(1);

  constructor(
    readonly model: AnyModel<BrowserModel>,
    el: HTMLElement,
    private readonly options: BrowserOptions = {},
  ) {
    this.root = h("div", { class: "rw-root rw-browser", attrs: { tabindex: "0", "data-lm-suppress-shortcuts": "true" } });
    el.appendChild(this.root);
    this.d.add(() => this.root.remove());
    applyAutoTheme(this.root);
    this.tip.hidden = true;
    this.plot = h("div", { class: "rw-plot" }, [this.canvas.base, this.canvas.overlay, this.tip]);
    this.root.append(this.bar.el, h("div", { class: "rw-body" }, [this.plot, this.side.el]), this.message);
    this.fetcher = ownImages(this.d, model, { batchSize: 32, maxInFlight: 2, cacheSize: 2000 }).fetcher;
    this.fetcher.onLoad(this.scheduleImages);
    this.fetcher.onError((keys, err) => {
      setText(this.message, `Could not load ${keys.length} image(s): ${err.message}`);
      this.scheduleImages();
    });
    this.pointer = new PointerControl(this);
    this.bindControls();
    this.d.model(model, this.handlers());
    this.d.visibility(this.plot, this.frame.request);
    this.d.theme(this.root, this.frame.request);
    (this.root as unknown as { __rw: BrowserHandle }).__rw = {
      draw: () => this.draw(),
      screenOf: (i) => toScreen(this.view, this.canvas.width, this.canvas.height, this.xy[2 * i], this.xy[2 * i + 1]),
      view: () => ({ ...this.view }),
      count: () => this.n,
    };
    this.syncControls();
    this.loadPoints();
    this.renderClusterPanel();
    this.draw();
  }

  destroy(): void {
    this.d.dispose();
  }

  get<K extends keyof BrowserModel>(k: K): BrowserModel[K] {
    return this.model.get(k);
  }

  coloring(): Coloring | undefined {
    const name = this.get("color_by");
    return (this.get("colorings") ?? []).find((c) => c.name === name);
  }

  pointSize(): number {
    const s = Number(this.get("point_size"));
    return Number.isFinite(s) && s >= 1 ? Math.min(s, 12) : 3;
  }

  mode(): Mode {
    const m = this.get("mode") as Mode;
    return MODES.includes(m) ? m : "lasso";
  }

  // ----- loading -----
  private loadPoints(): void {
    const pts = this.get("points");
    if (pts && hasBuffer(pts.xy)) {
      const arr = decodeArray(pts.xy);
      this.xy = arr.data instanceof Float32Array ? (arr.data as Float32Array) : Float32Array.from(arr.data);
      this.n = arr.shape[0] ?? 0;
    } else {
      this.xy = new Float32Array(0);
      this.n = 0;
    }
    this.membership = pts && hasBuffer(pts.membership) ? decodeArray(pts.membership).data : null;
    this.cells = new CellOrder(this.xy, this.n);
    this.viewFitted = false;
    this.loadSelection();
    this.loadCodes();
  }

  private loadCodes(): void {
    const meta = this.get("codes");
    this.codes = hasBuffer(meta) ? decodeArray(meta).data : null;
    if (this.codes && this.codes.length !== this.n) this.codes = null;
    ({ colours: this.colours, dimmed: this.dimmed } = categoryColours(this.coloring()));
    this.colourIdx = colourIndex(this.codes, this.n, this.colours.length, this.colourIdx);
    this.sortedColourIdx = this.cells.gather16(this.colourIdx, this.sortedColourIdx);
    this.bar.fillColourOptions(this.get("colorings") ?? [], this.get("color_by"));
    this.renderLegend();
    this.renderSelectionPanel();
    this.frame.request();
  }

  private loadSelection(): void {
    const n = this.n;
    const given = this.get("selected") ?? [];
    const sel: number[] = [];
    for (let k = 0; k < given.length; k++) {
      const i = given[k];
      if (Number.isInteger(i) && i >= 0 && i < n) sel.push(i);
    }
    this.selectedList = sel;
    if (sel.length === 0) {
      this.sortedMask = null;
      return;
    }
    const mask = this.maskBuffer && this.maskBuffer.length === n ? this.maskBuffer : new Uint8Array(n);
    mask.fill(0);
    for (const i of sel) mask[i] = 1;
    this.maskBuffer = mask;
    this.sortedMask = this.sortedMaskBuffer = this.cells.gather8(mask, this.sortedMaskBuffer);
  }

  // ----- drawing -----
  private measure() {
    if (this.options.measure) return this.options.measure();
    const r = this.plot.getBoundingClientRect();
    return { width: Math.floor(r.width), height: Math.floor(r.height) };
  }

  /** Size the canvases to the plot; false (canvases and view untouched) while it is hidden. */
  resize(): boolean {
    const hh = Number(this.get("height"));
    this.plot.style.height = `${Number.isFinite(hh) && hh >= 150 ? hh : 480}px`;
    this.side.el.style.maxHeight = this.plot.style.height;
    const m = this.measure();
    if (!drawable(m.width, m.height)) return false;
    if (!this.canvas.resize(m.width, m.height)) {
      if (!this.viewFitted) this.fit();
      return true;
    }
    if (!this.viewFitted || this.autoFit) this.fit();
    return true;
  }

  fit(): void {
    this.autoFit = true;
    const { width, height } = this.canvas;
    this.viewFitted = this.n > 0 && drawable(width, height);
    if (this.viewFitted) this.view = fitView(this.xy, this.n, width, height);
  }

  draw(): number {
    const t0 = performance.now();
    this.updateStatus();
    if (!this.resize()) return 0;
    const { cells, sortedColourIdx, colours, dimmed, sortedMask } = this;
    this.canvas.paint(this.view, { cells, index: sortedColourIdx, colours, dimmed, selected: sortedMask, size: this.pointSize() });
    this.drawOverlay();
    return performance.now() - t0;
  }

  drawOverlay(): void {
    const { view, xy, n, hover, membership } = this;
    const shape = this.pointer.shape();
    const focus = Number(this.get("focus"));
    this.canvas.drawOverlay({ view, xy, n, shape, hover, focus, membership, pointSize: this.pointSize() });
  }

  private updateStatus(): void {
    const sel = this.selectedList.length;
    setStatus(this.bar.status, `${this.n.toLocaleString()} points${sel ? ` · ${sel.toLocaleString()} selected` : ""}`);
  }

  syncControls(): void {
    const m = this.mode();
    this.bar.sync(this.get("title") ?? "", m);
    this.plot.classList.toggle("rw-pan", m === "pan");
  }

  // ----- side panel and images -----
  renderLegend(): void {
    this.side.renderLegend(this.coloring(), this.codes, this.n, Number(this.get("focus")));
  }

  renderClusterPanel(): void {
    const focus = Number(this.get("focus"));
    const info = focus >= 0 ? (this.get("clusters") ?? []).find((c) => c.id === focus) : undefined;
    this.side.renderCluster(info);
    if (info) this.scheduleImages();
  }

  private renderSelectionPanel(): void {
    this.side.renderSelection(this.selectedList, this.coloring(), this.codes);
    if (this.selectedList.length) this.scheduleImages();
  }

  private fillImages(): void {
    const { hover, fetcher } = this;
    const keys: Key[] = hover >= 0 ? [hover] : [];
    keys.push(...this.side.fillImages(fetcher));
    if (hover >= 0) {
      const url = fetcher.get(hover);
      if (url) {
        if (this.tipImg.getAttribute("src") !== url) this.tipImg.src = url;
        this.tipImg.dataset.key = String(hover);
      }
    }
    fetcher.want(keys);
  }

  setHover(i: number, sx: number, sy: number): void {
    if (i !== this.hover) {
      this.hover = i;
      this.drawOverlay();
    }
    const { tip, tipImg } = this;
    if (i < 0) {
      tip.hidden = true;
      return;
    }
    const col = this.coloring();
    const code = this.codes ? Number(this.codes[i]) : -1;
    const cat = codeLabel(col, code);
    setText(this.tipText, `#${i}${cat ? ` · ${cat}` : ""}`);
    tip.dataset.key = String(i);
    const url = this.fetcher.get(i);
    if (url) {
      tipImg.src = url;
      tipImg.dataset.key = String(i);
    } else {
      tipImg.removeAttribute("src");
      delete tipImg.dataset.key;
    }
    tip.hidden = false;
    const { width, height } = this.canvas;
    tip.style.left = `${sx + 14 + 130 > width ? sx - 14 - 110 : sx + 14}px`;
    tip.style.top = `${Math.max(0, Math.min(sy + 14, height - 130))}px`;
    this.scheduleImages();
  }

  // ----- selection -----
  pushSelection(ids: number[]): void {
    this.model.set("selected", ids);
    this.model.save_changes();
    this.applySelection();
  }

  private applySelection(): void {
    this.loadSelection();
    this.updateStatus();
    this.renderSelectionPanel();
    this.frame.request();
  }

  setFocus(c: number): void {
    if (Number(this.get("focus")) === c) return;
    this.model.set("focus", c);
    this.model.save_changes();
    this.renderClusterPanel();
    this.renderLegend();
    this.frame.request();
  }

  setMode(m: Mode): void {
    this.model.set("mode", m);
    this.model.save_changes();
    this.syncControls();
  }

  private bindControls(): void {
    const { d, bar } = this;
    d.on(bar.colourSelect, "change", () => {
      this.model.set("color_by", bar.colourSelect.value);
      this.model.save_changes();
    });
    for (const [m, b] of bar.modeButtons) d.on(b, "click", () => this.setMode(m));
    d.on(bar.resetButton, "click", () => {
      this.fit();
      this.frame.request();
    });
    d.on(bar.clearButton, "click", () => this.pushSelection([]));
  }

  // ----- Python -> view -----
  private handlers(): Handlers {
    const frame = this.frame.request;
    return [
      ["change:points", () => { this.loadPoints(); frame(); }],
      ["change:codes", () => this.loadCodes()],
      ["change:colorings", () => this.loadCodes()],
      ["change:color_by", () => this.bar.fillColourOptions(this.get("colorings") ?? [], this.get("color_by"))],
      ["change:selected", () => this.applySelection()],
      ["change:focus", () => { this.renderClusterPanel(); this.renderLegend(); frame(); }],
      ["change:clusters", () => this.renderClusterPanel()],
      ["change:mode", () => this.syncControls()],
      ["change:title", () => this.syncControls()],
      ["change:height", () => { this.resize(); frame(); }],
      ["change:point_size", frame],
    ];
  }
}
