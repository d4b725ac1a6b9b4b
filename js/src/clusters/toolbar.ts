// The browser's toolbar: title, colouring menu, selection modes, reset, clear, status.

import { clear, h, setText } from "../lib/dom";
import { MODES, type Coloring, type Mode } from "./model";

const MODE_TIPS: Record<Mode, string> = {
  lasso: "lasso select (L); shift or ctrl adds, alt removes; click: one point, ctrl-click toggles",
  box: "box select (B); shift or ctrl adds, alt removes; click: one point, ctrl-click toggles",
  pan: "pan (P); the wheel zooms in every mode",
};

export class BrowserToolbar {
  readonly el: HTMLElement;
  readonly title = h("span", { class: "rw-title" });
  readonly colourSelect = h("select", { attrs: { "aria-label": "colour by" } });
  readonly modeButtons = new Map<Mode, HTMLButtonElement>();
  readonly resetButton = h("button", { text: "reset", title: "fit all points (R)", attrs: { type: "button" } });
  readonly clearButton = h("button", { text: "clear", title: "clear the selection (Esc)", attrs: { type: "button" } });
  readonly status = h("span", { class: "rw-status rw-statusline", attrs: { "aria-live": "polite" } });

  constructor() {
    for (const m of MODES) {
      this.modeButtons.set(m, h("button", { text: m, title: MODE_TIPS[m], attrs: { type: "button", "data-mode": m } }));
    }
    this.el = h("div", { class: "rw-toolbar" }, [
      this.title,
      h("span", { text: "colour" }),
      this.colourSelect,
      ...this.modeButtons.values(),
      this.resetButton,
      this.clearButton,
      this.status,
    ]);
  }

  /** The colouring menu (rebuilt only when the names change), set to `colourBy`. */
  fillColourOptions(list: readonly Coloring[], colourBy: string): void {
    const s = this.colourSelect;
    const names = list.map((c) => c.name).join("\u0000");
    if (s.dataset.names !== names) {
      clear(s);
      for (const c of list) s.appendChild(h("option", { text: c.name, attrs: { value: c.name } }));
      s.dataset.names = names;
    }
    s.value = colourBy;
  }

  sync(titleText: string, mode: Mode): void {
    setText(this.title, titleText);
    this.title.hidden = !titleText;
    for (const [k, b] of this.modeButtons) b.classList.toggle("rw-on", k === mode);
  }
}
