// The band panel: the score histogram with the band shaded, and two sliders that move
// the band's ends. The sliders move over score values, aligned with the histogram; for
// a band of quantiles the values are turned into quantiles with the histogram's
// cumulative counts (linear inside a bin), and Python places the exact band ("band").

import { activeElement, h, setText } from "../lib/dom";
import { decodeArray } from "../lib/codec";
import { fmt } from "../lib/format";
import { drawHistogram } from "../lib/histogram";
import type { Disposables } from "../lib/mount";
import type { RpcClient } from "../lib/rpc";
import { cssVar } from "../lib/theme";
import { drawable } from "../lib/visibility";
import type { CurationModel, CurationOptions } from "./model";

/** The fraction of samples below `value`, from a histogram over `range` (linear in a bin). */
export function quantileOf(value: number, counts: ArrayLike<number>, range: number[]): number {
  const n = counts.length;
  let total = 0;
  for (let i = 0; i < n; i++) total += counts[i];
  if (n === 0 || total <= 0) return 0;
  const span = range[1] - range[0];
  if (!(span > 0)) return value < range[0] ? 0 : 1;
  const pos = ((value - range[0]) / span) * n;
  if (pos <= 0) return 0;
  if (pos >= n) return 1;
  const bin = Math.floor(pos);
  let below = 0;
  for (let i = 0; i < bin; i++) below += counts[i];
  return Math.min(1, Math.max(0, (below + counts[bin] * (pos - bin)) / total));
}

export type BandEnd = "low" | "high";

/** The band after one end moved to `value`: the other end keeps its exact value, and
 * the moved end stops at it rather than push it. */
export function moveBandEnd(band: readonly number[], end: BandEnd, value: number): [number, number] {
  const [a, b] = [band[0], band[1]];
  return end === "low" ? [Math.min(value, b), b] : [a, Math.max(value, a)];
}

function bandPair(v: readonly number[] | undefined): [number, number] {
  return [Number(v?.[0] ?? 0), Number(v?.[1] ?? 0)];
}

/** What the band panel needs from its view. */
export interface BandHost {
  get<K extends keyof CurationModel>(k: K): CurationModel[K];
  readonly root: HTMLElement;
  readonly options: CurationOptions;
  readonly rpc: RpcClient | null;
  readonly d: Disposables;
  setStatus(text: string): void;
  setError(text: string): void;
  /** Samples in the band now. */
  sampleCount(): number;
}

export class BandPanel {
  readonly el: HTMLElement;
  readonly hist: HTMLElement;
  private readonly canvas = h("canvas");
  private readonly shade = h("div", { class: "rw-cur-shade" });
  private readonly lo = rangeInput("band low", "rw-cur-lo");
  private readonly hi = rangeInput("band high", "rw-cur-hi");
  private readonly bandText = h("div", { class: "rw-cur-bandtext" });
  private readonly outsideNote = h("div", { class: "rw-cur-outside", attrs: { role: "status" } });
  private readonly timer;
  private token = 0;
  /** The band last asked for, until Python's answer replaces the band trait. */
  private asked: { band: [number, number]; limits: [number, number] } | null = null;
  private readonly moved = new Set<BandEnd>();

  constructor(private readonly host: BandHost) {
    this.hist = h("div", { class: "rw-cur-hist" }, [this.canvas, this.shade]);
    const sliders = h("div", { class: "rw-cur-sliders" }, [this.lo, this.hi]);
    this.el = h("div", { class: "rw-cur-band" }, [h("div", {}, [this.hist, sliders]), this.bandText, this.outsideNote]);
    this.timer = host.d.timer();
    host.d.on(this.lo, "input", () => this.onSlider("low"));
    host.d.on(this.hi, "input", () => this.onSlider("high"));
  }

  /** Python answered: the band trait is the truth again. */
  settle(): void {
    this.asked = null;
    this.syncSliders();
  }

  /** The note on marked samples outside the band. */
  showOutside(text: string): void {
    setText(this.outsideNote, text);
    this.outsideNote.title = text;
  }

  draw(): void {
    const { counts, range } = this.histState();
    const { options, root } = this.host;
    const width = options.measure ? Math.max(100, options.measure().width - 200) : this.hist.clientWidth;
    // hidden: keep the last picture; the visibility watcher redraws once the band shows
    if (!drawable(width, 40)) return;
    drawHistogram(this.canvas, counts, width, 40, {
      bar: cssVar(root, "--rw-fg2", "#888"),
      baseline: cssVar(root, "--rw-border", "#999"),
    });
    const limits = this.host.get("limits") ?? [0, 0];
    const span = range[1] - range[0] || 1;
    const a = Math.max(0, Math.min(1, (limits[0] - range[0]) / span));
    const b = Math.max(0, Math.min(1, (limits[1] - range[0]) / span));
    this.shade.style.left = `${a * 100}%`;
    this.shade.style.width = `${Math.max(0, b - a) * 100}%`;
  }

  private histState(): { counts: ArrayLike<number>; range: number[] } {
    const state = this.host.get("histogram") ?? {};
    let counts: ArrayLike<number> = [];
    try {
      if (state.counts && state.counts.buffer != null) counts = decodeArray(state.counts).data;
    } catch {
      counts = [];
    }
    return { counts, range: state.range ?? [0, 1] };
  }

  syncSliders(): void {
    const { range } = this.histState();
    const step = String((range[1] - range[0]) / 500 || 0.01);
    for (const s of [this.lo, this.hi]) {
      s.min = String(range[0]);
      s.max = String(range[1]);
      s.step = step;
      s.disabled = !this.host.get("can_move_band");
    }
    const limits = this.host.get("limits") ?? [0, 0];
    if (activeElement(this.lo) !== this.lo) this.lo.value = String(limits[0]);
    if (activeElement(this.hi) !== this.hi) this.hi.value = String(limits[1]);
    const band = this.host.get("band") ?? [0.25, 0.75];
    this.updateText(band[0], band[1], limits[0], limits[1]);
  }

  private updateText(a: number, b: number, va: number, vb: number, waiting = false): void {
    const n = this.host.sampleCount();
    const score = this.host.get("score_name") || "score";
    const what = this.host.get("absolute")
      ? `${score} ${fmt(va)} … ${fmt(vb)}`
      : `quantiles ${fmt(a)} – ${fmt(b)} → ${score} ${fmt(va)} … ${fmt(vb)}`;
    setText(this.bandText, `band ${what} · ${waiting ? "…" : `${n} samples`}`);
  }

  // A handle moves only its own end: the other end keeps its exact value (never read
  // back from its slider, whose position is rounded to the slider's step).
  private onSlider(end: BandEnd): void {
    const host = this.host;
    const slider = end === "low" ? this.lo : this.hi;
    const base = this.asked ?? { band: bandPair(host.get("band")), limits: bandPair(host.get("limits")) };
    const otherValue = end === "low" ? base.limits[1] : base.limits[0];
    let v = Number(slider.value);
    if (end === "low" ? v > otherValue : v < otherValue) {
      v = otherValue;
      slider.value = String(v);
    }
    const { counts, range } = this.histState();
    const q = host.get("absolute") ? v : Math.round(quantileOf(v, counts, range) * 1000) / 1000;
    const band = moveBandEnd(base.band, end, q);
    const limits = moveBandEnd(base.limits, end, v);
    this.asked = { band, limits };
    this.moved.add(end);
    this.updateText(band[0], band[1], limits[0], limits[1], true);
    this.timer.set(() => this.request(band), host.options.bandDelay ?? 250);
  }

  private request(band: [number, number]): void {
    const host = this.host;
    if (!host.rpc) return;
    const token = ++this.token;
    const ends = [...this.moved];
    this.moved.clear();
    host.setStatus("selecting…");
    host.rpc
      .request("band", { band, moved: ends })
      .then(() => {
        if (token === this.token) host.setStatus("");
      })
      .catch((e: Error) => {
        if (token !== this.token) return;
        this.asked = null;
        host.setStatus("");
        host.setError(`Could not move the band: ${e.message}`);
        this.syncSliders();
      });
  }
}

function rangeInput(label: string, cls: string): HTMLInputElement {
  return h("input", { attrs: { type: "range", min: "0", max: "1", step: "0.01", "aria-label": label, class: cls } });
}
