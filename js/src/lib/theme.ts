// Theming: widgets follow the host's light/dark theme through its CSS variables
// (JupyterLab / Notebook 7: --jp-*, VS Code: --vscode-*), with fallbacks. When the
// host defines none of them, the browser's preferred colour scheme decides.

export const THEME_CSS = `
.rw-root {
  --rw-bg: var(--jp-layout-color0, var(--vscode-editor-background, #ffffff));
  --rw-bg2: var(--jp-layout-color1, var(--vscode-editor-background, #ffffff));
  --rw-bg3: var(--jp-layout-color2, var(--vscode-editorWidget-background, #eeeeee));
  --rw-fg: var(--jp-ui-font-color1, var(--vscode-editor-foreground, rgba(0, 0, 0, 0.87)));
  --rw-fg2: var(--jp-ui-font-color2, var(--vscode-descriptionForeground, rgba(0, 0, 0, 0.54)));
  --rw-border: var(--jp-border-color2, var(--vscode-editorWidget-border, #e0e0e0));
  --rw-accent: var(--jp-brand-color1, var(--vscode-focusBorder, #1976d2));
  --rw-accent-soft: rgba(25, 118, 210, 0.18);
  --rw-warn: var(--jp-warn-color1, #f57c00);
  --rw-error: var(--jp-error-color1, #d32f2f);
  --rw-font: var(--jp-ui-font-family, var(--vscode-font-family, system-ui, -apple-system, "Segoe UI", sans-serif));
  --rw-font-size: var(--jp-ui-font-size1, 13px);
  --rw-mono: var(--jp-code-font-family, var(--vscode-editor-font-family, ui-monospace, monospace));
  color: var(--rw-fg);
  background: var(--rw-bg);
  font-family: var(--rw-font);
  font-size: var(--rw-font-size);
}
/* a translucent accent reads well on light and dark backgrounds alike (an opaque
   light tint such as --jp-brand-color3 would put light text on a light fill in dark themes) */
@supports (color: color-mix(in srgb, red 50%, blue)) {
  .rw-root { --rw-accent-soft: color-mix(in srgb, var(--rw-accent) 22%, transparent); }
}
/* a toolbar's status: one line of fixed height whatever its text (the full text on hover),
   so that the toolbar never wraps because of it and the plot below never moves */
.rw-root .rw-statusline { flex: 1 1 140px; min-width: 0; height: 20px; line-height: 20px; margin-left: auto;
  overflow: hidden; white-space: nowrap; text-overflow: ellipsis; text-align: right; color: var(--rw-fg2);
  font-variant-numeric: tabular-nums; }
.rw-root.rw-auto-dark {
  --rw-bg: #1e1e1e; --rw-bg2: #252526; --rw-bg3: #333333;
  --rw-fg: rgba(255, 255, 255, 0.87); --rw-fg2: rgba(255, 255, 255, 0.6);
  --rw-border: #444444; --rw-accent: #64b5f6; --rw-accent-soft: rgba(100, 181, 246, 0.22);
}
`;

/** Insert a <style> once per document (idempotent by id). */
export function injectStyle(id: string, css: string, doc: Document = document): void {
  const existing = doc.getElementById(id);
  if (existing) {
    if (existing.textContent !== css) existing.textContent = css;
    return;
  }
  const style = doc.createElement("style");
  style.id = id;
  style.textContent = css;
  doc.head.appendChild(style);
}

/** True when the page defines any of the host theme variables we follow. */
export function hostHasTheme(el: Element): boolean {
  const cs = getComputedStyle(el);
  return (
    cs.getPropertyValue("--jp-layout-color0").trim() !== "" ||
    cs.getPropertyValue("--vscode-editor-background").trim() !== ""
  );
}

/** Add or remove the dark fallback class according to the host and the OS preference. */
export function applyAutoTheme(root: HTMLElement): void {
  const dark =
    !hostHasTheme(root) &&
    typeof matchMedia === "function" &&
    matchMedia("(prefers-color-scheme: dark)").matches;
  root.classList.toggle("rw-auto-dark", dark);
}

/** Resolved value of a CSS custom property on `el` (for canvas drawing). */
export function cssVar(el: Element, name: string, fallback: string): string {
  const v = getComputedStyle(el).getPropertyValue(name).trim();
  return v === "" ? fallback : v;
}

/** Call `cb` when the host theme may have changed. Returns an unsubscribe function. */
export function watchTheme(cb: () => void): () => void {
  const observer = typeof MutationObserver === "function" ? new MutationObserver(() => cb()) : null;
  observer?.observe(document.body, {
    attributes: true,
    attributeFilter: ["data-jp-theme-light", "data-jp-theme-name", "class", "data-vscode-theme-kind"],
  });
  const mq = typeof matchMedia === "function" ? matchMedia("(prefers-color-scheme: dark)") : null;
  mq?.addEventListener?.("change", cb);
  return () => {
    observer?.disconnect();
    mq?.removeEventListener?.("change", cb);
  };
}
