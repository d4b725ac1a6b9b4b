import { describe, expect, it } from "vitest";
import { VirtualGrid, columnsFor, contentHeight, stretchedWidth, visibleRange } from "../src/lib/vgrid";
import { Selection, clickModifiers } from "../src/lib/selection";
import { gridKey } from "../src/lib/keyboard";

const G = { cellWidth: 100, cellHeight: 50, gap: 10, padding: 5 };

describe("grid geometry", () => {
  it("fits columns and rows", () => {
    expect(columnsFor(335, G)).toBe(3); // 5 + 3*100 + 2*10 + 5 = 330
    expect(columnsFor(20, G)).toBe(1);
    expect(contentHeight(7, 3, G)).toBe(5 + 3 * 50 + 2 * 10 + 5);
    expect(visibleRange(0, 120, 100, 3, G, 0)).toEqual({ start: 0, end: 6 });
    expect(visibleRange(600, 120, 100, 3, G, 1)).toEqual({ start: 24, end: 39 });
    expect(visibleRange(0, 120, 0, 3, G)).toEqual({ start: 0, end: 0 });
  });
});

describe("VirtualGrid", () => {
  it("renders only the visible rows and recycles cells while scrolling", () => {
    const viewport = document.createElement("div");
    document.body.appendChild(viewport);
    let created = 0;
    const filled: number[] = [];
    const grid = new VirtualGrid(viewport, {
      ...G,
      overscan: 0,
      measure: () => ({ width: 335, height: 120 }),
      createCell: () => {
        created++;
        return document.createElement("div");
      },
      updateCell: (el, i) => {
        el.textContent = `cell ${i}`;
        filled.push(i);
      },
    });
    grid.setCount(1000);
    expect(grid.columns).toBe(3);
    expect(grid.rendered).toEqual({ start: 0, end: 6 });
    expect(grid.sizer.style.height).toBe(`${contentHeight(1000, 3, G)}px`);
    viewport.scrollTop = 6000;
    grid.update();
    const r = grid.rendered;
    expect(r.start).toBeGreaterThan(200);
    expect(grid.cellAt(r.start)?.textContent).toBe(`cell ${r.start}`);
    expect(grid.cellAt(0)).toBeUndefined();
    expect(created).toBeLessThanOrEqual(9); // recycled, not one per card
    const visible = [...grid.sizer.children].filter((c) => (c as HTMLElement).style.display !== "none");
    expect(visible.length).toBe(r.end - r.start);
    grid.dispose();
  });
});

describe("VirtualGrid with stretch", () => {
  it("fills the row: as many columns as fit, cells widened to share the width", () => {
    // 430 px: 3 columns of at least 100 px; 430 - 2*5 - 2*10 = 400 -> 133 px each
    expect(stretchedWidth(430, 3, G)).toBe(133);
    expect(stretchedWidth(50, 1, G)).toBe(100); // never below the minimum
    const viewport = document.createElement("div");
    document.body.appendChild(viewport);
    let width = 430;
    const widths: number[] = [];
    const grid = new VirtualGrid(viewport, {
      ...G,
      stretch: true,
      overscan: 0,
      measure: () => ({ width, height: 120 }),
      createCell: () => document.createElement("div"),
      updateCell: () => widths.push(grid.cellWidthNow),
    });
    grid.setCount(10);
    expect(grid.columns).toBe(3);
    expect(grid.cellWidthNow).toBe(133);
    const cells = [0, 1, 2].map((i) => grid.cellAt(i)!);
    expect(cells.map((c) => c.style.width)).toEqual(["133px", "133px", "133px"]);
    expect(cells[2].style.transform).toBe("translate(291px, 5px)"); // 5 + 2 * (133 + 10)
    width = 600; // 5 columns: (600 - 2*5 - 4*10) / 5 = 110 px each
    widths.length = 0;
    grid.update();
    expect(grid.columns).toBe(5);
    expect(grid.cellWidthNow).toBe(110);
    expect(grid.cellAt(0)!.style.width).toBe("110px");
    expect(widths.length).toBeGreaterThan(0); // cells refilled at their new width
    expect(widths.every((w) => w === 110)).toBe(true);
    grid.dispose();
  });

  it("without stretch keeps the fixed width", () => {
    const viewport = document.createElement("div");
    const grid = new VirtualGrid(viewport, {
      ...G,
      measure: () => ({ width: 430, height: 120 }),
      createCell: () => document.createElement("div"),
      updateCell: () => {},
    });
    grid.setCount(4);
    expect(grid.cellWidthNow).toBe(100);
    expect(grid.cellAt(0)!.style.width).toBe("100px");
    grid.dispose();
  });
});

describe("Selection", () => {
  const order = [5, 3, 9, 1, 7];
  const plain = {};
  const ctrl = { toggle: true };
  const shift = { extend: true };
  it("a plain click selects only that id", () => {
    const s = new Selection([5, 9]);
    expect(s.click(3, plain, order)).toBe(true);
    expect(s.values()).toEqual([3]);
    expect(s.anchor).toBe(3);
    expect(s.click(3, plain, order)).toBe(false);
    expect(s.values()).toEqual([3]);
  });
  it("ctrl-click toggles one id and keeps the rest", () => {
    const s = new Selection();
    s.click(3, plain, order);
    s.click(1, ctrl, order);
    expect(s.values()).toEqual([3, 1]);
    s.click(3, ctrl, order);
    expect(s.values()).toEqual([1]);
    expect(s.anchor).toBe(3);
  });
  it("shift-click selects the range from the anchor in view order", () => {
    const s = new Selection();
    s.click(3, plain, order);
    s.click(1, shift, order);
    expect(s.values()).toEqual([3, 9, 1]);
    // the anchor stays: a second shift-click resizes the same range
    s.click(5, shift, order);
    expect(s.values()).toEqual([3, 5]);
    expect(s.anchor).toBe(3);
  });
  it("shift-click replaces other selected ids; ctrl+shift adds the range", () => {
    const s = new Selection();
    s.click(7, plain, order);
    s.click(5, ctrl, order); // anchor 5
    s.click(9, shift, order);
    expect(s.values()).toEqual([5, 3, 9]);
    s.click(7, ctrl, order); // anchor 7
    s.click(9, { toggle: true, extend: true }, order);
    expect(s.values()).toEqual([5, 3, 9, 7, 1]);
  });
  it("without a visible anchor a shift-click acts as a plain click", () => {
    const s = new Selection([7]);
    s.click(1, shift, order);
    expect(s.values()).toEqual([1]);
    s.anchor = 42; // filtered out of the view
    s.click(5, { toggle: true, extend: true }, order);
    expect(s.values()).toEqual([1, 5]);
  });
  it("keyboard helpers keep working: toggle and selectRange add", () => {
    const s = new Selection();
    s.toggle(3);
    s.selectRange(1, order);
    expect(s.values()).toEqual([3, 9, 1]);
    s.toggle(9);
    expect(s.values()).toEqual([3, 1]);
    expect(s.equals([3, 1])).toBe(true);
  });
  it("clickModifiers maps ctrl or cmd to toggle and shift to extend", () => {
    const ev = (o: Partial<MouseEvent>) => ({ ctrlKey: false, metaKey: false, shiftKey: false, ...o });
    expect(clickModifiers(ev({}))).toEqual({ toggle: false, extend: false });
    expect(clickModifiers(ev({ ctrlKey: true }))).toEqual({ toggle: true, extend: false });
    expect(clickModifiers(ev({ metaKey: true }))).toEqual({ toggle: true, extend: false });
    expect(clickModifiers(ev({ shiftKey: true }))).toEqual({ toggle: false, extend: true });
  });
});

describe("gridKey", () => {
  it("moves by cells and rows within bounds", () => {
    expect(gridKey({ key: "ArrowRight" }, -1, 10, 4).cursor).toBe(0);
    expect(gridKey({ key: "ArrowRight" }, 9, 10, 4).cursor).toBe(9);
    expect(gridKey({ key: "ArrowDown" }, 1, 10, 4).cursor).toBe(5);
    expect(gridKey({ key: "ArrowDown" }, 7, 10, 4).cursor).toBe(7);
    expect(gridKey({ key: "ArrowUp" }, 5, 10, 4).cursor).toBe(1);
    expect(gridKey({ key: "End" }, 0, 10, 4).cursor).toBe(9);
    expect(gridKey({ key: "PageDown" }, 0, 100, 4, 3).cursor).toBe(12);
  });
  it("maps space, shift and other keys to actions", () => {
    expect(gridKey({ key: " " }, 3, 10, 4)).toEqual({ cursor: 3, action: "toggle", handled: true });
    expect(gridKey({ key: " ", shiftKey: true }, 3, 10, 4).action).toBe("range");
    expect(gridKey({ key: "ArrowLeft", shiftKey: true }, 3, 10, 4)).toEqual({ cursor: 2, action: "range", handled: true });
    expect(gridKey({ key: "a", ctrlKey: true }, 3, 10, 4).action).toBe("select-all");
    expect(gridKey({ key: "a" }, 3, 10, 4).handled).toBe(false);
    expect(gridKey({ key: "x" }, 3, 10, 4).handled).toBe(false);
    expect(gridKey({ key: "ArrowDown" }, 0, 0, 4).handled).toBe(false);
  });
});
