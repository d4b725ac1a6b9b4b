// The gallery's toolbar: title, search box, sort menu and order, clear, status line.

import { activeElement, clear, h, setText } from "../lib/dom";

export class GalleryToolbar {
  readonly el: HTMLElement;
  readonly title = h("span", { class: "rw-title" });
  readonly search = h("input", {
    attrs: { type: "search", placeholder: "filter labels…", "aria-label": "filter by label", spellcheck: "false" },
  });
  readonly sortSelect = h("select", { attrs: { "aria-label": "sort by" } });
  readonly orderButton = h("button", { attrs: { type: "button", "aria-label": "sort order" } });
  readonly clearButton = h("button", { text: "clear", attrs: { type: "button", title: "clear the selection" } });
  readonly status = h("span", { class: "rw-status", attrs: { "aria-live": "polite" } });

  constructor() {
    const { title, search, sortSelect, orderButton, clearButton, status } = this;
    this.el = h("div", { class: "rw-toolbar" }, [title, search, sortSelect, orderButton, clearButton, status]);
  }

  /** The sort menu: "order: id" then one entry per score. */
  fillSortOptions(names: readonly string[], sortBy: string): void {
    const s = this.sortSelect;
    clear(s);
    s.appendChild(h("option", { text: "order: id", attrs: { value: "" } }));
    for (const n of names) s.appendChild(h("option", { text: `sort: ${n}`, attrs: { value: n } }));
    s.value = names.includes(sortBy) ? sortBy : "";
    s.disabled = names.length === 0;
  }

  /** Title, query (unless the user is typing it) and the order button's arrow. */
  sync(titleText: string, query: string, descending: boolean): void {
    setText(this.title, titleText);
    this.title.style.display = titleText ? "" : "none";
    if (activeElement(this.search) !== this.search && this.search.value !== query) this.search.value = query;
    setText(this.orderButton, descending ? "↓" : "↑");
    this.orderButton.title = descending ? "descending (click for ascending)" : "ascending (click for descending)";
    this.orderButton.disabled = !this.sortSelect.value;
  }

  /** "n items · m selected" (or "n of N items"). */
  showCounts(shown: number, total: number, noun: string, selected: number): void {
    const what = shown === total ? `${total} ${noun}` : `${shown} of ${total} ${noun}`;
    setText(this.status, `${what} · ${selected} selected`);
    this.clearButton.disabled = selected === 0;
  }
}
