// Canvas widgets draw only into a real size. A widget that is hidden (display: none, a
// collapsed output, a notebook cell taken out of the page while scrolled away) measures
// 0 x 0; drawing then would shrink its canvases to nothing and fit its view to nothing.
// Instead it keeps its last picture and redraws when it has a real size again: when
// its size changes or when it scrolls back into view, whichever the browser reports.

/** Smallest width and height (CSS px) worth drawing into. */
export const MIN_DRAW_PX = 8;

/** True when a width x height area (CSS px) is big enough to draw into. */
export function drawable(width: number, height: number): boolean {
  return Number.isFinite(width) && Number.isFinite(height) && width >= MIN_DRAW_PX && height >= MIN_DRAW_PX;
}

/**
 * Call `onChange` whenever `el` may show at a new size: it was resized, shown again or
 * scrolled into view. Returns the function that stops watching.
 */
export function watchVisibility(el: Element, onChange: () => void): () => void {
  const resize = typeof ResizeObserver === "function" ? new ResizeObserver(() => onChange()) : null;
  resize?.observe(el);
  const intersect =
    typeof IntersectionObserver === "function"
      ? new IntersectionObserver((entries) => {
          if (entries.some((e) => e.isIntersecting)) onChange();
        })
      : null;
  intersect?.observe(el);
  return () => {
    resize?.disconnect();
    intersect?.disconnect();
  };
}
