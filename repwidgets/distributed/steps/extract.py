"""The ``extract`` step: every layer's pooled activations over the splits, into the store.

The rows of a split are cut into chunks of ``chunk`` samples (a fixed grid, whatever
the number of ranks); each rank takes a contiguous block of chunks
(:meth:`Context.shard`), runs the model on them and writes their rows into the
memory-mapped arrays of :mod:`repwidgets.distributed.store`, then records the chunk
in the manifest. A killed job redoes only unrecorded chunks, and since a chunk's
batches are the same for any world size, 1 and N processes write the same numbers.
Nothing is communicated but barriers: the ranks' rows meet in the shared files.

Settings (``[[steps]]`` keys): ``splits`` (default: every split of the data) and
``chunk`` (samples per unit of work, rounded up to whole batches; default four
batches).

Example (job file)::

    [[steps]]
    name = "extract"
    splits = ["train", "test"]
"""

from __future__ import annotations

import math
from pathlib import Path

from torch.utils.data import Subset

from repwidgets._progress import progress_bar
from repwidgets.datasets.bundle import DataBundle
from repwidgets.distributed.context import Context
from repwidgets.distributed.job import Job, JobError
from repwidgets.distributed.manifest import Manifest
from repwidgets.distributed.store import ActivationStore
from repwidgets.session import Session

__all__ = ["check", "run"]

_SETTINGS = ("name", "splits", "chunk")


def check(job: Job, step: dict) -> None:
    """Raise a JobError for settings ``extract`` does not know or cannot use."""
    unknown = [k for k in step if k not in _SETTINGS]
    if unknown:
        raise JobError(f"extract has no setting(s) {unknown}; it takes splits and chunk.")
    splits = step.get("splits")
    if splits is not None and (not isinstance(splits, list) or not splits):
        raise JobError(f"extract: splits must be a non-empty list of split names, got {splits!r}.")
    chunk = step.get("chunk")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise JobError(f"extract: chunk must be an int >= 1 (samples), got {chunk!r}.")


def _chunk_size(step: dict, batch_size: int) -> int:
    rows = int(step.get("chunk", 4 * batch_size))
    return math.ceil(rows / batch_size) * batch_size


def _chunk_session(sess: Session, split: str, rows: range) -> Session:
    """A session over ``rows`` of ``split`` only (as its "test" split), computing as
    ``sess`` does."""
    rows_ds = Subset(sess.dataset(split), list(rows))
    return Session(
        sess.model,
        DataBundle("chunk", {"train": rows_ds, "test": rows_ds}, sess.class_names),
        device=sess.device,
        batch_size=sess.batch_size,
        memory_budget_mb=sess.memory_budget / 2**20,
        preprocess=sess.preprocess,
        progress=False,
        output=sess.output,
        neuron_axis=sess.neuron_axis,
        precision=sess.precision,
    )


def run(ctx: Context, job: Job, step: dict, out: Path, manifest: Manifest) -> None:
    """Fill ``out/store`` with ``job.layers``' activations over the step's splits."""
    check(job, step)
    sess = job.session(ctx)
    splits = step.get("splits") or sess.splits
    for split in splits:
        if split not in sess.splits:
            raise JobError(f"extract: the data has no split {split!r}; splits: {sess.splits}.")
    sess.batch_size = ctx.broadcast_object(sess.batch_size)  # one batching on every rank
    layouts = {layer: sess.layout(layer) for layer in job.layers}
    widths = {
        layer: sess.layer_shapes()[layer][layouts[layer].neuron_axis - 1] for layer in job.layers
    }
    store = ActivationStore(out / "store")
    for split in splits:
        todo = [layer for layer in job.layers if store.meta(layer, split) is None]
        if todo:
            chunk = _chunk_size(step, sess.batch_size)
            _extract_split(ctx, sess, store, manifest, split, todo, widths, chunk, job.pool)
            ctx.barrier()  # every rank's rows are in the files
        if ctx.is_main:
            for layer in todo:
                store.mark_complete(
                    layer, split, pool=job.pool, neuron_axis=layouts[layer].neuron_axis
                )
        ctx.barrier()


def _extract_split(
    ctx: Context,
    sess: Session,
    store: ActivationStore,
    manifest: Manifest,
    split: str,
    layers: list[str],
    widths: dict[str, int],
    chunk: int,
    pool: str,
) -> None:
    """Allocate (main rank), then write this rank's unrecorded chunks of ``split``."""
    n = sess.n(split)
    if ctx.is_main:
        for layer in layers:
            key = f"{split}/{layer}:{n}x{widths[layer]}"
            if not manifest.done("extract-allocate", key):
                store.allocate(layer, split, n, widths[layer])
                manifest.record("extract-allocate", key)
    ctx.barrier()
    n_chunks = math.ceil(n / chunk)
    mine = ctx.shard(n_chunks)
    bar = progress_bar(
        mine, total=len(mine), desc=f"extract {split} (rank 0 of {ctx.world})", enable=ctx.is_main
    )
    for c in bar:
        rows = range(c * chunk, min(n, (c + 1) * chunk))
        key = f"{split}:{rows.start}-{rows.stop}"
        if manifest.done("extract", key):
            continue
        acts = _chunk_session(sess, split, rows).activations_many(layers, "test", pool)
        for layer in layers:
            store.write_rows(layer, split, rows.start, acts[layer])
        manifest.record("extract", key, rank=ctx.rank)
