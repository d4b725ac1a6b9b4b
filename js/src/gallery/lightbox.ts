// The gallery's details panel: a click on a thumbnail opens it over the grid with the
// thumbnail at once, then asks Python ("details") for the full-size image and fields.

import { bytesToUrl } from "../lib/codec";
import { clear, h, setText } from "../lib/dom";
import type { Key, KeyedFetcher } from "../lib/fetcher";
import { fmt } from "../lib/format";
import { waitingText } from "../lib/images";
import type { Reply, RpcClient, WaitState } from "../lib/rpc";
import type { Card } from "./model";

/** A details value as text: numbers formatted, lists joined, missing as a dash. */
export function fieldText(value: unknown): string {
  if (typeof value === "number") return fmt(value);
  if (Array.isArray(value)) {
    return value.length ? value.map((v) => (typeof v === "number" ? fmt(v) : String(v))).join(", ") : "–";
  }
  if (value === null || value === undefined) return "–";
  return String(value);
}

export class Lightbox {
  readonly el: HTMLElement;
  readonly closeButton: HTMLButtonElement;
  private readonly img: HTMLImageElement;
  private readonly title: HTMLElement;
  private readonly details: HTMLElement;
  private readonly status: HTMLElement;
  private token = 0;
  private loading = false;
  private bigUrl: string | null = null;

  constructor(
    private readonly rpc: RpcClient | null,
    private readonly fetcher: KeyedFetcher,
    /** Called after closing (the grid takes the focus back). */
    private readonly onClose: () => void,
  ) {
    this.img = h("img", { class: "rw-lightbox-img", attrs: { alt: "" } });
    this.title = h("span");
    this.closeButton = h("button", { text: "×", attrs: { type: "button", "aria-label": "close" } });
    this.details = h("dl", { class: "rw-details" });
    this.status = h("div", { class: "rw-status" });
    const head = h("div", { class: "rw-lightbox-head" }, [this.title, this.closeButton]);
    const panel = h("div", { class: "rw-lightbox-panel", attrs: { role: "dialog", "aria-modal": "true" } }, [
      this.img,
      h("div", { class: "rw-lightbox-side" }, [head, this.details, this.status]),
    ]);
    this.el = h("div", { class: "rw-lightbox" }, [panel]);
    this.el.hidden = true;
    this.closeButton.addEventListener("click", () => this.close());
    this.el.addEventListener("click", (ev) => {
      if (ev.target === this.el) this.close();
    });
  }

  get open(): boolean {
    return !this.el.hidden;
  }

  /** The kernel's wait state changed: say so while the details load. */
  onWait(s: WaitState): void {
    if (this.open && this.loading) setText(this.status, waitingText(s) || "loading details…");
  }

  private showField(name: string, value: unknown): void {
    this.details.append(h("dt", { text: name }), h("dd", { text: fieldText(value) }));
  }

  show(card: Card, key: Key): void {
    const token = ++this.token;
    this.el.hidden = false;
    clear(this.details);
    setText(this.title, `#${card.id}${card.label ? ` ${card.label}` : ""}`);
    this.title.title = card.label ?? "";
    this.showField("image", key);
    this.loading = true;
    setText(this.status, (this.rpc ? waitingText(this.rpc.state) : "") || "loading details…");
    const thumb = this.fetcher.get(key);
    if (thumb) this.img.src = thumb;
    else this.img.removeAttribute("src");
    this.closeButton.focus({ preventScroll: true });
    if (!this.rpc) {
      setText(this.status, "");
      return;
    }
    this.rpc
      .request("details", { card: card.id, key })
      .then(({ content, buffers }) => {
        if (token !== this.token || !this.open) return;
        this.showDetails(content, buffers);
      })
      .catch((e: Error) => {
        if (token !== this.token) return;
        this.loading = false;
        setText(this.status, `could not load details: ${e.message}`);
      });
  }

  private showDetails(content: Reply["content"], buffers: DataView[]): void {
    this.loading = false;
    setText(this.status, "");
    clear(this.details);
    const fields = Array.isArray(content.fields) ? (content.fields as [string, unknown][]) : [];
    for (const [name, value] of fields) this.showField(String(name), value);
    if (content.image && buffers.length > 0) {
      const url = bytesToUrl(buffers[0], String(content.image.mime ?? ""));
      this.revoke();
      this.bigUrl = url;
      this.img.src = url;
    }
  }

  close(): void {
    this.token++;
    this.loading = false;
    this.el.hidden = true;
    this.revoke();
    this.onClose();
  }

  private revoke(): void {
    if (this.bigUrl) URL.revokeObjectURL(this.bigUrl);
    this.bigUrl = null;
  }

  dispose(): void {
    this.token++;
    this.revoke();
  }
}
