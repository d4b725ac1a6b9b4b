// The browser's side panel: the legend (click selects a category), the focused
// cluster (label, description, fields, images) and the selection (summary, images).

import { clear, h, setText } from "../lib/dom";
import type { Key, KeyedFetcher } from "../lib/fetcher";
import { STEPS, categoryColour, codeValue, formatValue, isContinuous, rampGradient } from "./colours";
import { isClusterColouring, type ClusterInfo, type Coloring } from "./model";

function thumb(key: number): HTMLImageElement {
  const img = h("img", { attrs: { alt: `sample ${key}`, draggable: "false" } });
  img.dataset.key = String(key);
  return img;
}

/** Mean, min and max of a continuous colouring over the selection (from its codes). */
function rangeSummary(col: Coloring & { range: [number, number] }, sel: number[], codes: ArrayLike<number>): string {
  let sum = 0, k = 0, lo = Infinity, hi = -Infinity;
  for (const i of sel) {
    const v = codeValue(col, codes[i]);
    if (v === null) continue;
    sum += v;
    k++;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (k === 0) return `${col.name}: missing`;
  return `${col.name}: mean ≈ ${formatValue(sum / k)} · ${formatValue(lo)} to ${formatValue(hi)}`;
}

export class SidePanel {
  readonly el: HTMLElement;
  readonly legend = h("div", { class: "rw-legend" });
  private readonly clusterHead = h("h4");
  private readonly clusterDesc = h("div", { class: "rw-desc" });
  private readonly clusterFields = h("dl", { class: "rw-details" });
  private readonly clusterImgs = h("div", { class: "rw-imgs rw-cluster-imgs" });
  private readonly clusterBox: HTMLElement;
  private readonly selHead = h("h4");
  private readonly selSummary = h("div", { class: "rw-desc" });
  private readonly selImgs = h("div", { class: "rw-imgs rw-selection-imgs" });
  private readonly selBox: HTMLElement;

  constructor() {
    const { clusterHead, clusterDesc, clusterFields, clusterImgs, selHead, selSummary, selImgs } = this;
    this.clusterBox = h("div", { class: "rw-cluster" }, [clusterHead, clusterDesc, clusterFields, clusterImgs]);
    this.selBox = h("div", { class: "rw-selection" }, [selHead, selSummary, selImgs]);
    this.el = h("div", { class: "rw-side" }, [this.legend, this.clusterBox, this.selBox]);
  }

  /** One entry per category present (all when `codes` is null), "none" last. */
  renderLegend(col: Coloring | undefined, codes: ArrayLike<number> | null, n: number, focus: number): void {
    const legend = this.legend;
    clear(legend);
    if (!col) return;
    if (isContinuous(col)) {
      this.renderRamp(col, codes, n);
      return;
    }
    const counts = new Array(col.categories.length).fill(0);
    if (codes) for (let i = 0; i < n; i++) if (codes[i] < counts.length) counts[codes[i]]++;
    const order = col.categories.map((_, c) => c);
    if (col.none) order.push(order.shift() as number); // "none" last
    for (const c of order) {
      if (counts[c] === 0 && codes) continue;
      const sw = h("span", { class: "rw-swatch" });
      sw.style.background = categoryColour(col, c);
      const item = h("div", { class: "rw-legend-item", title: "click: select these points; shift- or ctrl-click: add" }, [
        sw,
        h("span", { class: "rw-legend-name", text: col.categories[c] }),
        h("span", { class: "rw-legend-count", text: String(counts[c]) }),
      ]);
      item.dataset.code = String(c);
      if (col.none && c - 1 === focus && focus >= 0 && isClusterColouring(col)) item.classList.add("rw-on");
      legend.appendChild(item);
    }
  }

  /** A continuous colouring's legend: its ramp, the values at both ends, missing values. */
  private renderRamp(col: Coloring & { range: [number, number] }, codes: ArrayLike<number> | null, n: number): void {
    const bar = h("div", { class: "rw-ramp", attrs: { role: "img", "aria-label": `${col.name}: colour ramp` } });
    bar.style.background = rampGradient(col);
    const ends = h("div", { class: "rw-ramp-ends" }, [
      h("span", { text: formatValue(col.range[0]) }),
      h("span", { class: "rw-legend-name", text: col.name }),
      h("span", { text: formatValue(col.range[1]) }),
    ]);
    this.legend.append(bar, ends);
    let missing = 0;
    if (codes) for (let i = 0; i < n; i++) if (!(codes[i] >= 1 && codes[i] <= STEPS)) missing++;
    if (missing > 0) {
      const sw = h("span", { class: "rw-swatch" });
      sw.style.background = categoryColour(col, 0);
      const item = h("div", { class: "rw-legend-item rw-ramp-missing", title: "click: select these points; shift- or ctrl-click: add" }, [
        sw,
        h("span", { class: "rw-legend-name", text: "missing" }),
        h("span", { class: "rw-legend-count", text: String(missing) }),
      ]);
      item.dataset.code = "0";
      this.legend.appendChild(item);
    }
  }

  /** The focused cluster (hidden when `info` is undefined). */
  renderCluster(info: ClusterInfo | undefined): void {
    this.clusterBox.hidden = !info;
    clear(this.clusterFields);
    clear(this.clusterImgs);
    if (!info) return;
    setText(this.clusterHead, info.label || `cluster ${info.id}`);
    setText(this.clusterDesc, info.description ?? "");
    for (const [k, v] of info.fields ?? []) {
      this.clusterFields.append(h("dt", { text: k }), h("dd", { text: v === null ? "–" : String(v) }));
    }
    for (const key of (info.images ?? []).slice(0, 24)) this.clusterImgs.appendChild(thumb(key));
  }

  /** The selection: its size, its four commonest categories and its first images. */
  renderSelection(sel: number[], col: Coloring | undefined, codes: ArrayLike<number> | null): void {
    this.selBox.hidden = sel.length === 0;
    clear(this.selImgs);
    if (sel.length === 0) return;
    setText(this.selHead, `${sel.length.toLocaleString()} selected`);
    if (isContinuous(col) && codes) setText(this.selSummary, rangeSummary(col, sel, codes));
    else if (col && codes) {
      const counts = new Float64Array(Math.max(1, col.categories.length));
      for (const i of sel) {
        const c = codes[i];
        if (c < counts.length) counts[c]++;
      }
      const top = [...counts.keys()].filter((c) => counts[c] > 0).map((c) => [c, counts[c]] as const);
      top.sort((a, b) => b[1] - a[1]).splice(4);
      setText(this.selSummary, top.map(([c, k]) => `${col.categories[c] ?? c}: ${k}`).join(" · "));
    } else setText(this.selSummary, "");
    for (const key of sel.slice(0, 24)) this.selImgs.appendChild(thumb(key));
  }

  /** Show fetched images in the panel; returns the keys it shows. */
  fillImages(fetcher: KeyedFetcher): Key[] {
    const keys: Key[] = [];
    for (const img of this.el.querySelectorAll<HTMLImageElement>(".rw-imgs img")) {
      const key = Number(img.dataset.key);
      keys.push(key);
      const url = fetcher.get(key);
      if (url && img.getAttribute("src") !== url) img.src = url;
      img.classList.toggle("rw-failed", fetcher.error(key) !== undefined);
    }
    return keys;
  }
}
