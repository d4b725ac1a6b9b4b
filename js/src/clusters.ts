// ConceptBrowser's entry: anywidget calls render(), whose result removes the view.
// The view is clusters/view.ts; its CSS, clusters.css, arrives as the widget's _css.
//
// Points are drawn into an ImageData buffer (one 32-bit write per pixel, no per-point
// canvas calls) in grid-cell order, walking only the cells in view (clusters/raster.ts),
// which keeps a million points fluid on a plain 2-D canvas, including in browsers
// without WebGL. A colouring is categorical (a distinct colour per category) or
// continuous (a number per point on a sequential ramp).

import type { AnyModel, RenderProps } from "@anywidget/types";
import { mount } from "./lib/mount";
import type { BrowserModel, BrowserOptions } from "./clusters/model";
import { BrowserView } from "./clusters/view";

export { PALETTE } from "./lib/palette";
export * from "./lib/scatter";
export { categoryColour, codeLabel, isContinuous, packColour } from "./clusters/colours";
export { CellOrder, boxHits, lassoHits, rasterPoints } from "./clusters/raster";
export type { BrowserHandle, BrowserModel, BrowserOptions, ClusterInfo, Coloring, Mode } from "./clusters/model";

export function renderBrowser(model: AnyModel<BrowserModel>, el: HTMLElement, options: BrowserOptions = {}): () => void {
  return mount(new BrowserView(model, el, options));
}

export default {
  render({ model, el }: RenderProps<BrowserModel>) {
    return renderBrowser(model, el);
  },
};
