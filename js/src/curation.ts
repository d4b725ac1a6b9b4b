// CurationSelector's entry: anywidget calls render(), whose result removes the view.
// The view is curation/view.ts; its CSS, curation.css, arrives as the widget's _css.

import type { AnyModel, RenderProps } from "@anywidget/types";
import { mount } from "./lib/mount";
import type { CurationModel, CurationOptions } from "./curation/model";
import { CurationView } from "./curation/view";

export * from "./curation/model";
export { countMarks, filterItems, marksOutside } from "./curation/marks";
export { moveBandEnd, quantileOf, type BandEnd } from "./curation/band";

export function renderCuration(model: AnyModel<CurationModel>, el: HTMLElement, options: CurationOptions = {}): () => void {
  return mount(new CurationView(model, el, options));
}

export default {
  render({ model, el }: RenderProps<CurationModel>) {
    return renderCuration(model, el);
  },
};
