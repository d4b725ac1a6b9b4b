// DistanceHeatmap's entry: anywidget calls render(), whose result removes the view.
// The view is heatmap/view.ts; its CSS, heatmap.css, arrives as the widget's _css.
//
// Every frame rasterises only what is on screen (see lib/matrix.ts), so a 2,048 x 2,048
// matrix needs no k x k image and zoom stays exact.

import type { AnyModel, RenderProps } from "@anywidget/types";
import { mount } from "./lib/mount";
import type { HeatmapModel, HeatmapOptions } from "./heatmap/model";
import { HeatmapView } from "./heatmap/view";

export * from "./lib/matrix";
export type { HeatmapHandle, HeatmapModel, HeatmapOptions } from "./heatmap/model";

export function renderHeatmap(model: AnyModel<HeatmapModel>, el: HTMLElement, options: HeatmapOptions = {}): () => void {
  return mount(new HeatmapView(model, el, options));
}

export default {
  render({ model, el }: RenderProps<HeatmapModel>) {
    return renderHeatmap(model, el);
  },
};
