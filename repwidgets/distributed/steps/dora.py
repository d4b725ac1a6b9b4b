"""The ``dora`` step: DORA's s-AMS made on all ranks, neurons split, one result.

DORA's cost is the optimisation of the synthetic signals (s-AMS): ``steps`` forward and
backward passes for every (neuron, signal) image. Each rank optimises the images of
its contiguous block of neurons and feeds them back through the model, keeping the
rows of the activation matrix ``A`` (the layer's mean response to each of its
neurons' signals) and each neuron's peak on its own signals. The main rank gathers
the rows and the signals and runs the analysis (:func:`rw.dora.analyze_activations
<repwidgets.engines.dora.analyze_activations>`: EA distances, dead neurons, LOF, the
map) once, on the whole matrix.

Seeds do not depend on the rank: the optimisation runs over the index space of all
``k x n_signals`` images (as :func:`rw.dora.analyze <repwidgets.engines.dora.analyze>`
does on one process), so image ``e`` starts from the same random image and sees the
same random transforms on every world size; a rank passes the model only over its
own images (the others are rendered and dropped, a small cost next to a model's
forward and backward pass). The result equals the one-process ``analyze`` up to the
floating-point effect of different batch compositions.

Job file:

.. code-block:: toml

    [[steps]]
    name = "dora"
    n_signals = 2     # any DoraConfig setting
    steps = 128
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from repwidgets.distributed.context import shard_range
from repwidgets.engines import _checks
from repwidgets.engines.dora import DoraConfig, DoraResult, analyze_activations
from repwidgets.engines.dora.layer import (
    FrozenParams,
    check_neurons,
    layer_fn,
    probe_channels,
    probe_layout,
)
from repwidgets.engines.dora.signals import (
    chunk_size,
    layer_responses,
    optimise_signals,
    signal_memory_mb,
    signal_objective,
)

from ._parts import (
    each_layer,
    engine_overrides,
    load_tensors,
    save_tensors,
    show_progress,
    step_id,
    step_layers,
)

__all__ = ["NAME", "analyze_sharded", "check", "run"]

NAME = "dora"


def check(job: Any, step: dict) -> None:
    """Raise for unknown or bad settings before any step runs (names get "did you mean")."""
    DoraConfig.resolve(None, engine_overrides(step, ("neurons",)))
    step_layers(job, step)


def run(ctx: Any, job: Any, step: dict, out: Path, manifest: Any) -> None:
    """DORA on every layer of the step; results in ``<out>/results/dora/``.

    Args:
        ctx, job, out, manifest: as for every step (see :mod:`repwidgets.distributed.steps`).
        step: the step's table: settings of :class:`DoraConfig`, plus ``layers`` and
            ``neurons`` (indices, default all).
    """
    name = step_id(job, step)
    cfg = DoraConfig.resolve(None, engine_overrides(step, ("neurons",)))
    sess = job.session(ctx)

    def compute(layer: str, work: Path) -> Any:
        return analyze_sharded(
            ctx,
            sess,
            layer,
            cfg,
            neurons=step.get("neurons"),
            manifest=manifest,
            work=work,
            name=name,
        )

    each_layer(ctx, step_layers(job, step), name, out, manifest, compute)


def analyze_sharded(
    ctx: Any,
    sess: Any,
    layer: str,
    cfg: DoraConfig,
    *,
    neurons: list[int] | None = None,
    manifest: Any,
    work: Path,
    name: str = NAME,
) -> DoraResult | None:
    """DORA on ``layer`` with this rank's block of neurons; the result on the main rank
    (None elsewhere). Every rank must call it (it meets at a barrier).

    A rank's block (its signals, rows of ``A`` and peaks) is saved to ``work`` and
    recorded in ``manifest``; a recorded block is read back instead of recomputed. The
    main rank reads every rank's block from ``work`` (the output folder is shared by
    the ranks, as its manifest is).

    Example:
        >>> r = analyze_sharded(Context.single(), sess, "features.conv3", DoraConfig(),
        ...                     manifest=Manifest("out"), work=Path("out/work/dora/x"))  # doctest: +SKIP
    """
    module = sess.module(layer)
    layout = sess.layout(layer)
    width = int(sess.layer_shapes()[layer][layout.neuron_axis - 1])
    _checks.neuron_indices(neurons, width, layer, minimum=2)
    idx = check_neurons(neurons if neurons is not None else list(range(width)), width)
    input_shape = cfg.signal_shape(tuple(sess.input_shape))

    def path_of(b: range) -> Path:
        return Path(work) / f"neurons-{b.start}-{b.stop}.safetensors"

    mine = ctx.shard(idx.numel())
    key = f"{layer}:{mine.start}-{mine.stop}"
    if not (manifest.done(name, key) and path_of(mine).exists()):
        part = _block(ctx, sess, module, layout, idx, mine, cfg.replace(input_shape=input_shape))
        save_tensors(path_of(mine), part)
        manifest.record(name, key, neurons=[mine.start, mine.stop])
    ctx.barrier()
    if not ctx.is_main:
        return None
    every = [shard_range(idx.numel(), r, ctx.world) for r in range(ctx.world)]
    parts = [load_tensors(path_of(b)) for b in every]
    A = torch.cat([p["A"] for p in parts])
    peak = torch.cat([p["peak"] for p in parts])
    result = analyze_activations(A, idx, cfg, self_peak=peak, layer=layer)
    result.signals = torch.cat([p["signals"] for p in parts]).float()
    result.params["signal_shape"] = list(input_shape)
    result.params["neuron_axis"] = layout.neuron_axis
    result._session = sess
    return result


def _block(
    ctx: Any, sess: Any, module, layout, idx: Tensor, mine: range, cfg: DoraConfig
) -> dict[str, Tensor]:
    """This rank's signals [k_r, n, C, H, W], rows of A [k_r, k] and own peaks [k_r]."""
    n = int(cfg.n_signals)
    signals = _signals(ctx, sess, module, layout, idx, mine, cfg)
    k_r = len(mine)
    if k_r == 0:
        return {
            "signals": signals,
            "A": torch.zeros(0, idx.numel()),
            "peak": torch.zeros(0),
        }
    flat = signals.reshape(k_r * n, *signals.shape[2:]).to(sess.device)
    with FrozenParams(sess.model):
        lay = probe_layout(
            sess.model, module, tuple(signals.shape[2:]), sess.device, sess.preprocess, layout
        )
    mean, peak = layer_responses(sess.model, module, flat, sess.preprocess, sess.batch_size, lay)
    cols = idx.to(mean.device)
    A = mean.view(k_r, n, -1)[:, :, cols].mean(dim=1)
    own = cols[mine.start : mine.stop]
    peaks = peak.view(k_r, n, -1)[torch.arange(k_r, device=mean.device), :, own].amax(dim=1)
    return {"signals": signals.detach().float().cpu(), "A": A.cpu(), "peak": peaks.cpu()}


def _signals(
    ctx: Any, sess: Any, module, layout, idx: Tensor, mine: range, cfg: DoraConfig
) -> Tensor:
    """s-AMS [len(mine), n, C, H, W] of the neurons ``idx[mine]``, each image optimised as
    in the one-process run over all of ``idx`` (same index, same seed, same chunks)."""
    model, device, n = sess.model, sess.device, int(cfg.n_signals)
    input_shape = tuple(cfg.input_shape)
    k = idx.numel()
    lo, hi = mine.start * n, mine.stop * n
    with FrozenParams(model):
        lay = probe_layout(model, module, input_shape, device, sess.preprocess, layout)
        fn = layer_fn(model, module, sess.preprocess, redirect_relu=True, layout=lay)
        check_neurons(idx, probe_channels(fn, input_shape, device, lay))
        unit_of = idx.to(device).repeat_interleave(n)
        objective = signal_objective(fn, unit_of, cfg.minimize, lay, cfg.objective)

        def own_objective(x: Tensor, elements: Tensor) -> Tensor:
            own = (elements >= lo) & (elements < hi)
            if bool(own.all()):
                return objective(x, elements)
            values = x.flatten(1).sum(dim=1) * 0.0  # others' images: no model pass
            if bool(own.any()):
                where = own.nonzero().squeeze(1)
                values = values.index_put((where,), objective(x[where], elements[where]))
            return values

        budget = signal_memory_mb(device, getattr(sess, "memory_budget", 2**31) / 2**21)
        batch_size = chunk_size(cfg, objective, input_shape, device, budget)
        images = optimise_signals(
            cfg,
            own_objective,
            k * n,
            input_shape,
            device,
            batch_size,
            progress=show_progress(ctx, sess),
            desc=f"s-AMS (neurons {mine.start}-{mine.stop} of {k} x {n})",
        )
    return images[lo:hi].reshape(len(mine), n, *input_shape)
