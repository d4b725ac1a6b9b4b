// Keyboard handling for grids of items: arrows move a cursor, space selects.
//
// `gridKey` is pure: given a key and the grid's shape it says where the cursor goes
// and what to do, so every widget (gallery, curation grid) shares the same keys:
//   arrows       move the cursor (left/right by one, up/down by a row)
//   Home / End   first / last item;  PageUp / PageDown  by a screen of rows
//   space        toggle the item under the cursor (shift+space: range from the anchor)
//   shift+arrow  move and add the range from the anchor to the new cursor
//   Enter        open the item;  Escape  close / clear the cursor;  ctrl/cmd+A  select all

export type GridAction = "none" | "move" | "toggle" | "range" | "open" | "escape" | "select-all";

export interface GridKeyResult {
  cursor: number;
  action: GridAction;
  /** True when the key was ours and the event should not reach the notebook. */
  handled: boolean;
}

export interface KeyLike {
  key: string;
  shiftKey?: boolean;
  ctrlKey?: boolean;
  metaKey?: boolean;
  altKey?: boolean;
}

export function gridKey(
  ev: KeyLike,
  cursor: number,
  count: number,
  columns: number,
  pageRows = 3,
): GridKeyResult {
  const none: GridKeyResult = { cursor, action: "none", handled: false };
  if (count <= 0 || ev.altKey) return none;
  const cur = cursor < 0 ? -1 : Math.min(cursor, count - 1);
  const clamp = (i: number) => Math.max(0, Math.min(count - 1, i));
  const start = cur < 0 ? 0 : cur;
  let next: number | null = null;
  switch (ev.key) {
    case "ArrowRight":
      next = cur < 0 ? 0 : clamp(cur + 1);
      break;
    case "ArrowLeft":
      next = cur < 0 ? 0 : clamp(cur - 1);
      break;
    case "ArrowDown":
      next = cur < 0 ? 0 : cur + columns < count ? cur + columns : cur;
      break;
    case "ArrowUp":
      next = cur < 0 ? 0 : cur - columns >= 0 ? cur - columns : cur;
      break;
    case "PageDown":
      next = clamp(start + columns * Math.max(1, pageRows));
      break;
    case "PageUp":
      next = clamp(start - columns * Math.max(1, pageRows));
      break;
    case "Home":
      next = 0;
      break;
    case "End":
      next = count - 1;
      break;
    case " ":
    case "Spacebar":
      if (cur < 0) return { cursor: 0, action: "move", handled: true };
      return { cursor: cur, action: ev.shiftKey ? "range" : "toggle", handled: true };
    case "Enter":
      return cur < 0 ? none : { cursor: cur, action: "open", handled: true };
    case "Escape":
      return { cursor: cur, action: "escape", handled: true };
    case "a":
    case "A":
      if (ev.ctrlKey || ev.metaKey) return { cursor: cur, action: "select-all", handled: true };
      return none;
    default:
      return none;
  }
  return { cursor: next, action: ev.shiftKey ? "range" : "move", handled: true };
}

/**
 * Keep the notebook's keyboard shortcuts away from these elements' key presses.
 *
 * JupyterLab and Notebook 7 (Lumino) match shortcuts such as arrows and space in a
 * capture-phase listener, before our handlers run, but skip events whose target
 * carries `data-lm-suppress-shortcuts`. Mark every element that can take focus in a
 * widget (the grid, inputs, buttons).
 */
export function suppressNotebookShortcuts(...els: Element[]): void {
  for (const el of els) el.setAttribute("data-lm-suppress-shortcuts", "true");
}
