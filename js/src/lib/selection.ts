// Selection of item ids with click, shift-click range and keyboard semantics.
//
// The selection keeps ids in the order they were selected (so the Python list reads
// as "what the person picked, in order"). Ranges are taken in the current view
// order (after sorting and filtering), from the anchor (the last id clicked without
// shift). Widgets turn a mouse event into modifiers with `clickModifiers(ev)` and call
// `selection.click(id, clickModifiers(ev), viewOrder)`.

/** What a click does besides pointing at an id: see `Selection.click`. */
export interface ClickModifiers {
  /** Add or remove the id, keeping the rest (ctrl-click, cmd-click on macOS). */
  toggle?: boolean;
  /** Select the range from the anchor to the id (shift-click). */
  extend?: boolean;
}

/** The click convention's modifiers from a mouse or keyboard event. */
export function clickModifiers(ev: { ctrlKey: boolean; metaKey: boolean; shiftKey: boolean }): ClickModifiers {
  return { toggle: ev.ctrlKey || ev.metaKey, extend: ev.shiftKey };
}

export class Selection {
  private ids: number[] = [];
  private set = new Set<number>();
  anchor: number | null = null;

  constructor(initial: Iterable<number> = []) {
    this.replace(initial);
  }

  has(id: number): boolean {
    return this.set.has(id);
  }

  get size(): number {
    return this.ids.length;
  }

  values(): number[] {
    return [...this.ids];
  }

  /** Replace the selection (e.g. from Python); keeps the anchor if still meaningful. */
  replace(ids: Iterable<number>): void {
    this.ids = [];
    this.set.clear();
    for (const id of ids) this.add(id);
  }

  add(id: number): boolean {
    if (this.set.has(id)) return false;
    this.set.add(id);
    this.ids.push(id);
    return true;
  }

  remove(id: number): boolean {
    if (!this.set.delete(id)) return false;
    this.ids = this.ids.filter((x) => x !== id);
    return true;
  }

  /** Toggle one id and make it the anchor of later ranges. */
  toggle(id: number): void {
    if (!this.remove(id)) this.add(id);
    this.anchor = id;
  }

  clear(): void {
    this.replace([]);
  }

  /**
   * Add every id between the anchor and `id` in `order` (inclusive) to the selection.
   * Without an anchor (or when the anchor is filtered out) this toggles `id`.
   */
  selectRange(id: number, order: readonly number[]): void {
    const a = this.anchor === null ? -1 : order.indexOf(this.anchor);
    const b = order.indexOf(id);
    if (a < 0 || b < 0) {
      this.toggle(id);
      return;
    }
    const [lo, hi] = a <= b ? [a, b] : [b, a];
    for (let i = lo; i <= hi; i++) this.add(order[i]);
  }

  /**
   * Mouse click with the usual list convention:
   * - plain click: select only `id`;
   * - `toggle` (ctrl or cmd held): add or remove `id`, keeping the rest;
   * - `extend` (shift held): select the range from the anchor to `id` in `order`
   *   (the view order after sorting and filtering) instead of the current selection;
   *   with `toggle` too, the range is added to the current selection.
   * Plain and toggle clicks move the anchor to `id`; range clicks keep it, so that
   * successive shift-clicks resize one range. A range click whose anchor is unset or
   * not in `order` acts as a click without shift.
   * Returns true when the selection changed.
   */
  click(id: number, mods: ClickModifiers, order: readonly number[]): boolean {
    const before = this.values();
    const range = mods.extend ? this.rangeFromAnchor(id, order) : null;
    if (range) {
      if (!mods.toggle) this.replace([]);
      for (const x of range) this.add(x);
    } else if (mods.toggle) {
      this.toggle(id);
    } else {
      this.replace([id]);
      this.anchor = id;
    }
    return !this.equals(before);
  }

  /** Ids from the anchor to `id` in `order`, both included; null without a visible anchor. */
  private rangeFromAnchor(id: number, order: readonly number[]): number[] | null {
    const a = this.anchor === null ? -1 : order.indexOf(this.anchor);
    const b = order.indexOf(id);
    if (a < 0 || b < 0) return null;
    const step = a <= b ? 1 : -1;
    const out: number[] = [];
    for (let i = a; i !== b + step; i += step) out.push(order[i]);
    return out;
  }

  equals(ids: readonly number[]): boolean {
    return ids.length === this.ids.length && ids.every((x, i) => x === this.ids[i]);
  }
}
