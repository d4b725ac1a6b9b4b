// The heatmap's hover details: both neurons' ids and labels, the value and, when the
// widget has thumbnails, both neurons' images (fetched on hover).

import { h, setText } from "../lib/dom";
import type { KeyedFetcher } from "../lib/fetcher";
import { GUTTER } from "./model";

export interface TipContent {
  idA: number;
  labelA: string;
  idB: number;
  labelB: string;
  value: number;
  valueText: string;
}

export class Tooltip {
  readonly el: HTMLElement;
  private readonly a = h("span", { class: "rw-hm-id" });
  private readonly aLabel = h("span", { class: "rw-hm-label" });
  private readonly b = h("span", { class: "rw-hm-id" });
  private readonly bLabel = h("span", { class: "rw-hm-label" });
  private readonly value = h("div", { class: "rw-hm-value" });
  private readonly imgA = h("img", { attrs: { alt: "" } });
  private readonly imgB = h("img", { attrs: { alt: "" } });
  private readonly imgs = h("div", { class: "rw-hm-imgs" }, [this.imgA, this.imgB]);

  constructor() {
    this.el = h("div", { class: "rw-hm-tip", attrs: { role: "tooltip" } }, [
      h("div", { class: "rw-hm-who" }, [this.a, this.aLabel, this.b, this.bLabel]),
      this.value,
      this.imgs,
    ]);
    this.el.hidden = true;
  }

  hide(): void {
    this.el.hidden = true;
  }

  /** Show `c` near the pointer at (sx, sy) (matrix px), inside a plot of side `size`. */
  show(c: TipContent, sx: number, sy: number, size: number): void {
    const tip = this.el;
    setText(this.a, `#${c.idA}`);
    setText(this.aLabel, c.labelA);
    setText(this.b, `#${c.idB}`);
    setText(this.bLabel, c.labelB);
    setText(this.value, c.valueText);
    tip.dataset.i = String(c.idA);
    tip.dataset.j = String(c.idB);
    tip.dataset.value = String(c.value);
    tip.hidden = false;
    const tw = tip.offsetWidth || 200;
    const th = tip.offsetHeight || 80;
    const px = sx + GUTTER;
    const py = sy + GUTTER;
    tip.style.left = `${px + 14 + tw > size + GUTTER ? Math.max(0, px - 14 - tw) : px + 14}px`;
    tip.style.top = `${py + 14 + th > size + GUTTER ? Math.max(0, py - 14 - th) : py + 14}px`;
  }

  /** Show neurons a and b's images (null: no images); asks the fetcher for missing ones. */
  showImages(pair: [number, number] | null, fetcher: KeyedFetcher): void {
    this.imgs.hidden = pair === null;
    if (!pair) {
      fetcher.want([]);
      return;
    }
    const [a, b] = pair;
    for (const [img, id] of [[this.imgA, a], [this.imgB, b]] as [HTMLImageElement, number][]) {
      const url = fetcher.get(id);
      if (url) {
        if (img.getAttribute("src") !== url) img.src = url;
        img.dataset.key = String(id);
      } else {
        img.removeAttribute("src");
        delete img.dataset.key;
      }
      img.alt = `neuron ${id}`;
    }
    fetcher.want(a === b ? [a] : [a, b]);
  }
}
