// Selection of item ids with click, shift-click range and keyboard semantics.
//
// The selection keeps ids in the order they were selected (so the Python list reads
// as "what the person picked, in order"). Ranges are taken in the current view
// order (after sorting and filtering), from the anchor (last plainly toggled id).

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

  /** Mouse click: shift extends a range from the anchor, otherwise toggles. */
  click(id: number, order: readonly number[], shift: boolean): void {
    if (shift) this.selectRange(id, order);
    else this.toggle(id);
  }

  equals(ids: readonly number[]): boolean {
    return ids.length === this.ids.length && ids.every((x, i) => x === this.ids[i]);
  }
}
