// Small DOM helpers. Text from data is only ever set through textContent, never as
// HTML, so a label like `<img src=x onerror=alert(1)>` shows up as those characters.

export interface Props {
  class?: string;
  text?: string;
  title?: string;
  attrs?: Record<string, string>;
}

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  children: Node[] = [],
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (props.class) el.className = props.class;
  if (props.text !== undefined) el.textContent = props.text;
  if (props.title !== undefined) el.title = props.title;
  if (props.attrs) for (const [k, v] of Object.entries(props.attrs)) el.setAttribute(k, v);
  for (const c of children) el.appendChild(c);
  return el;
}

/** Set text (as text) only when it changed, to avoid needless layout work. */
export function setText(el: Element, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

/** Remove all children. */
export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

/** Set a one-line status (as text) with its full text on hover, for when it is cut short. */
export function setStatus(el: HTMLElement, text: string): void {
  setText(el, text);
  if (el.title !== text) el.title = text;
}

/** The focused element as seen from `el`'s tree: inside a shadow root (marimo) the
 * document's activeElement is the shadow host, not the input that has the focus. */
export function activeElement(el: Node): Element | null {
  const root = el.getRootNode() as Document | ShadowRoot;
  return "activeElement" in root ? root.activeElement : document.activeElement;
}
