// NeuronGallery's entry: anywidget calls render(), whose result removes the view.
// The view is gallery/view.ts; its CSS, gallery.css, arrives as the widget's _css.

import type { AnyModel, RenderProps } from "@anywidget/types";
import { mount } from "./lib/mount";
import { GalleryView } from "./gallery/view";
import type { GalleryModel, GalleryOptions } from "./gallery/model";

export * from "./gallery/model";
export { viewOrder } from "./gallery/filter";

export function renderGallery(model: AnyModel<GalleryModel>, el: HTMLElement, options: GalleryOptions = {}): () => void {
  return mount(new GalleryView(model, el, options));
}

export default {
  render({ model, el }: RenderProps<GalleryModel>) {
    return renderGallery(model, el);
  },
};
