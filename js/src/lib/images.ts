// Thumbnails from Python: a KeyedFetcher whose batches are "fetch" requests over the
// widget's message channel, answered with one image batch (see codec.decodeImageBatch).

import { decodeImageBatch, type ImageBatchMeta } from "./codec";
import { KeyedFetcher, type FetcherOptions } from "./fetcher";
import { RpcClient, type MessageModel } from "./rpc";

/** True when the host can send custom messages to Python (a live kernel). */
export function isMessageModel(m: unknown): m is MessageModel {
  return typeof (m as MessageModel).send === "function" && typeof (m as MessageModel).on === "function";
}

export interface ImageSource {
  /** The request channel; null on hosts without a kernel (a saved page). */
  rpc: RpcClient | null;
  fetcher: KeyedFetcher;
}

/** A fetcher for the model's thumbnails; without a kernel every batch fails with a clear message. */
export function pythonImages(model: unknown, options: FetcherOptions): ImageSource {
  const rpc = isMessageModel(model) ? new RpcClient(model) : null;
  const fetcher = new KeyedFetcher(async (keys, signal) => {
    if (!rpc) throw new Error("this host cannot send messages to Python");
    const { content, buffers } = await rpc.request("fetch", { keys }, signal);
    return decodeImageBatch(content as unknown as ImageBatchMeta, buffers[0]);
  }, options);
  return { rpc, fetcher };
}
