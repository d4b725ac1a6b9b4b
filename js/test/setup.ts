// jsdom lacks Blob URLs and canvas: provide small stand-ins so widget code runs.
let urlCounter = 0;
const live = new Set<string>();
(globalThis as any).__liveBlobUrls = live;
URL.createObjectURL = (_b: Blob | MediaSource) => {
  const u = `blob:test/${urlCounter++}`;
  live.add(u);
  return u;
};
URL.revokeObjectURL = (u: string) => {
  live.delete(u);
};
HTMLCanvasElement.prototype.getContext = (() => null) as any;
