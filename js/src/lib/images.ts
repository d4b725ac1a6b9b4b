// Thumbnails from Python: a KeyedFetcher whose batches are "fetch" requests over the
// widget's message channel, answered with one image batch (see codec.decodeImageBatch).
// Requests wait for a busy kernel as long as it takes (see rpc.ts); `waitingText`
// words the wait for the widget to show.

import { decodeImageBatch, type ImageBatchMeta } from "./codec";
import { KeyedFetcher, type FetcherOptions } from "./fetcher";
import { RpcClient, type MessageModel, type RpcOptions, type WaitState } from "./rpc";

/** True when the host can send custom messages to Python (a live kernel). */
export function isMessageModel(m: unknown): m is MessageModel {
  return typeof (m as MessageModel).send === "function" && typeof (m as MessageModel).on === "function";
}

export interface ImageSource {
  /** The request channel; null on hosts without a kernel (a saved page). */
  rpc: RpcClient | null;
  fetcher: KeyedFetcher;
}

/**
 * Request timing from the model: a widget with a `request_patience` trait (seconds)
 * sets how long a request waits before the client checks whether it was lost.
 */
export function rpcOptionsFrom(model: unknown): RpcOptions {
  const get = (model as { get?: (k: string) => unknown }).get;
  if (typeof get !== "function") return {};
  let patience: unknown;
  try {
    patience = get.call(model, "request_patience");
  } catch {
    return {};
  }
  if (typeof patience !== "number" || !Number.isFinite(patience) || patience <= 0) return {};
  const checkMs = patience * 1000;
  return { checkMs, noticeMs: Math.min(1500, checkMs) };
}

/** The kernel's status where the host's widget manager exposes it (JupyterLab, Notebook 7). */
export function hostKernelStatus(model: unknown): () => string | undefined {
  return () => {
    try {
      const manager = (model as { widget_manager?: { kernel?: { status?: unknown } } }).widget_manager;
      const status = manager?.kernel?.status;
      return typeof status === "string" ? status : undefined;
    } catch {
      return undefined;
    }
  };
}

/** A fetcher for the model's thumbnails; without a kernel every batch fails with a clear message. */
export function pythonImages(model: unknown, options: FetcherOptions & RpcOptions): ImageSource {
  const rpcOptions = { kernelStatus: hostKernelStatus(model), ...rpcOptionsFrom(model), ...options };
  const rpc = isMessageModel(model) ? new RpcClient(model, rpcOptions) : null;
  const fetcher = new KeyedFetcher(async (keys, signal) => {
    if (!rpc) throw new Error("this host cannot send messages to Python");
    const { content, buffers } = await rpc.request("fetch", { keys }, signal);
    return decodeImageBatch(content as unknown as ImageBatchMeta, buffers[0]);
  }, options);
  return { rpc, fetcher };
}

/** The line a widget shows while its requests wait for the kernel ("" when not waiting). */
export function waitingText(s: WaitState): string {
  if (!s.waiting || s.pending === 0) return "";
  const what = s.pending === 1 ? "1 request" : `${s.pending} requests`;
  if (s.kernel === "dead" || s.kernel === "terminating") {
    return `the kernel has stopped: ${what} wait for it; start it again and run this cell`;
  }
  return `waiting for the kernel: ${what} will be answered when it is free`;
}
