// Theming: widgets follow the host's light/dark theme through its CSS variables
// (JupyterLab / Notebook 7: --jp-*, VS Code: --vscode-*), with fallbacks. When the
// host defines none of them, the browser's preferred colour scheme decides. The
// variables themselves are in theme.css, which the build puts in every widget's CSS.

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
