// The heatmap's colour legend: the colour map as a bar as tall as the matrix, three
// ticks, the value's name and a mark at the hovered value.

import { h, setText } from "../lib/dom";
import { fmt } from "../lib/format";
import { scaleT } from "../lib/matrix";
import { context2d } from "../lib/mount";

export class Legend {
  readonly el: HTMLElement;
  private readonly bar = h("canvas", { attrs: { width: "1", height: "256" } });
  private readonly hi = h("span", { class: "rw-hm-tick" });
  private readonly mid = h("span", { class: "rw-hm-tick" });
  private readonly lo = h("span", { class: "rw-hm-tick" });
  private readonly name = h("span", { class: "rw-hm-name" });
  private readonly mark = h("div", { class: "rw-hm-mark" });
  private readonly ctx: CanvasRenderingContext2D | null;

  constructor() {
    this.mark.hidden = true;
    this.el = h("div", { class: "rw-hm-legend" }, [this.bar, this.hi, this.mid, this.lo, this.name, this.mark]);
    this.ctx = context2d(this.bar);
  }

  /** Draw colour map `lut` (256 packed colours) from `lo` to `hi`, `height` px tall. */
  draw(lut: Uint32Array, lo: number, hi: number, height: number, valueName: string): void {
    if (this.ctx) {
      const img = this.ctx.createImageData(1, 256);
      const px = new Uint32Array(img.data.buffer);
      for (let y = 0; y < 256; y++) px[y] = lut[255 - y];
      this.ctx.putImageData(img, 0, 0);
    }
    this.bar.style.height = `${height}px`;
    this.el.style.height = `${height}px`;
    setText(this.hi, fmt(hi));
    setText(this.mid, fmt((lo + hi) / 2));
    setText(this.lo, fmt(lo));
    this.hi.style.top = "1px";
    this.mid.style.top = `${height / 2}px`;
    this.lo.style.top = `${height - 1}px`;
    setText(this.name, valueName);
  }

  /** Mark value `v` on the bar (null hides the mark). */
  markValue(v: number | null, lo: number, hi: number, height: number): void {
    this.mark.hidden = v === null;
    if (v !== null) this.mark.style.top = `${(1 - scaleT(v, lo, hi)) * height}px`;
  }
}
