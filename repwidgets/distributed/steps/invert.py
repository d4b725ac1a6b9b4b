"""The ``invert`` step: INVERT's formulas for every neuron, the neurons split over ranks.

Every rank reads the layer's pooled activations (from the job's store, through the
session) and the split's concept labels, explains its own blocks of neurons with
:func:`~repwidgets.engines.invert.explain_activations` and saves each block's
:class:`~repwidgets.engines.invert.InvertResult` (recorded in the manifest). The main
rank reads every rank's blocks (the output folder is shared) and joins them with
:func:`~repwidgets.engines.invert.concat_results`: a neuron's formula depends only on
its own activations, so the result equals :func:`rw.invert.explain
<repwidgets.engines.invert.explain>` on one process.

Job file:

.. code-block:: toml

    [[steps]]
    name = "invert"
    max_length = 3      # any InvertConfig setting
    split = "test"      # default
    block = 256         # neurons per resumable unit (default: one block per rank)

Example:
    >>> from repwidgets.engines.invert import InvertResult       # doctest: +SKIP
    >>> r = InvertResult.load("out/results/invert/layer4.safetensors")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from repwidgets.engines import _checks
from repwidgets.engines.invert import (
    InvertConfig,
    InvertResult,
    concat_results,
    explain_activations,
)

from ._parts import (
    blocks,
    each_layer,
    engine_overrides,
    show_progress,
    step_id,
    step_layers,
    step_pool,
)

__all__ = ["NAME", "check", "explain_sharded", "run"]

NAME = "invert"


def check(job: Any, step: dict) -> None:
    """Raise for unknown or bad settings before any step runs (names get "did you mean")."""
    InvertConfig.resolve(None, engine_overrides(step)).normalised()
    step_layers(job, step)
    if step_pool(job, step) not in ("mean", "max", "cls"):
        raise ValueError(f"INVERT needs pool='mean', 'max' or 'cls', not {step_pool(job, step)!r}.")


def run(ctx: Any, job: Any, step: dict, out: Path, manifest: Any) -> None:
    """Explain the neurons of every layer of the step; results in ``<out>/results/invert/``.

    Args:
        ctx: the :class:`~repwidgets.distributed.context.Context` of this rank.
        job: the parsed job (``job.session(ctx)``, ``job.layers``).
        step: the step's table from the job file (settings of :class:`InvertConfig`,
            plus ``layers``, ``split``, ``pool``, ``block``).
        out: the job's output folder.
        manifest: this rank's :class:`~repwidgets.distributed.manifest.Manifest`.
    """
    name = step_id(job, step)
    cfg = InvertConfig.resolve(None, engine_overrides(step)).normalised()
    layers = step_layers(job, step)
    sess = job.session(ctx)

    def compute(layer: str, work: Path) -> Any:
        return explain_sharded(
            ctx,
            sess,
            layer,
            cfg,
            split=step.get("split", "test"),
            pool=step_pool(job, step),
            block=step.get("block"),
            manifest=manifest,
            work=work,
            name=name,
        )

    each_layer(ctx, layers, name, out, manifest, compute)


def explain_sharded(
    ctx: Any,
    sess: Any,
    layer: str,
    cfg: InvertConfig,
    *,
    split: str = "test",
    pool: str = "mean",
    block: int | None = None,
    manifest: Any,
    work: Path,
    name: str = NAME,
) -> InvertResult | None:
    """INVERT on ``layer`` with this rank's blocks of neurons; the joined result on the
    main rank (None on the others). Every rank must call it (it meets at a barrier).

    Each block's result is saved to ``work`` (atomically) and recorded in ``manifest``;
    a recorded block is read back instead of recomputed. The main rank reads every
    rank's blocks from ``work`` (the job's output folder is shared by the ranks, as
    its manifest is), so nothing but the barrier goes through the process group.

    Example:
        >>> r = explain_sharded(Context.single(), sess, "features.conv3", InvertConfig(),
        ...                     manifest=Manifest("out"), work=Path("out/work/invert/x"))  # doctest: +SKIP
    """
    if pool not in ("mean", "max", "cls"):
        raise ValueError(f"INVERT needs pool='mean', 'max' or 'cls', not {pool!r}.")
    sess.module(layer)
    concepts = _checks.concept_table(sess, split, "INVERT")
    _checks.concept_fractions(concepts, cfg.min_fraction, cfg.max_fraction)
    acts = sess.activations(layer, split=split, pool=pool)  # the store's rows, not copied
    device = getattr(sess, "device", acts.device)
    N = acts.shape[1]

    def path_of(b: range) -> Path:
        return Path(work) / f"neurons-{b.start}-{b.stop}.safetensors"

    for b in blocks(N, ctx.world, ctx.rank, block):
        key = f"{layer}:{b.start}-{b.stop}"
        if manifest.done(name, key) and path_of(b).exists():
            continue
        part = explain_activations(
            acts[:, b.start : b.stop].to(device),  # only this block's columns on the device
            concepts,
            sess.concept_names,
            cfg,
            layer=layer,
            progress=show_progress(ctx, sess),
        )
        part.neurons = torch.arange(b.start, b.stop)
        part.save(path_of(b))
        manifest.record(name, key, neurons=[b.start, b.stop])
    ctx.barrier()
    if not ctx.is_main:
        return None
    every = [b for r in range(ctx.world) for b in blocks(N, ctx.world, r, block)]
    parts = [InvertResult.load(path_of(b)) for b in every]
    result = concat_results(parts)
    result.split, result.pool, result.neuron_axis = split, pool, None
    result._session = sess
    return result
