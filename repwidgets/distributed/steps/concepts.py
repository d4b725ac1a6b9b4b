"""The ``concepts`` step: concept discovery with the Gram matrix summed over ranks.

Concept discovery's passes over the data are the Gram matrix ``X^T X`` [C, C] of the
layer's pooled activations, their mean, and the relevance (one forward and backward
pass over the split). Each rank takes a contiguous block of the rows: it sums its
rows' Gram matrix and column sums in float64
(:func:`~repwidgets.engines.concepts.gram_matrix`) and computes its samples'
relevance and predictions. The Gram matrices and sums are all-reduced (``C^2 + C``
numbers per rank), and the main rank reads the relevance rows from the ranks' files
and runs
:func:`~repwidgets.engines.concepts.discover_activations` with the summed Gram matrix
(``gram=``): the same directions as one process up to the order of the float64 sums,
oriented by the same rule (each direction's extreme tail on the positive side), then
the clustering, outliers and map as usual.

Job file:

.. code-block:: toml

    [[steps]]
    name = "concepts"
    n_components = 16   # any ConceptConfig setting
    relevance = true    # also objective = "predicted", sign = 1.0
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from repwidgets.distributed.context import shard_range
from repwidgets.engines import _checks
from repwidgets.engines.concepts import (
    OBJECTIVES,
    ConceptConfig,
    ConceptResult,
    discover_activations,
    gram_matrix,
    layer_relevance,
)

from ._parts import (
    each_layer,
    engine_overrides,
    load_tensors,
    save_tensors,
    show_progress,
    step_id,
    step_layers,
    step_pool,
)

__all__ = ["NAME", "check", "discover_sharded", "run"]

NAME = "concepts"
_OWN = ("relevance", "objective", "sign")


def check(job: Any, step: dict) -> None:
    """Raise for unknown or bad settings before any step runs (names get "did you mean")."""
    ConceptConfig.resolve(None, engine_overrides(step, _OWN)).check()
    _checks.one_of("objective", step.get("objective", "predicted"), OBJECTIVES)
    _checks.one_of("pool", step_pool(job, step), ("mean", "max", "cls"))
    step_layers(job, step)


def run(ctx: Any, job: Any, step: dict, out: Path, manifest: Any) -> None:
    """Concept discovery on every layer of the step; results in ``<out>/results/concepts/``.

    Args:
        ctx, job, out, manifest: as for every step (see :mod:`repwidgets.distributed.steps`).
        step: the step's table: settings of :class:`ConceptConfig`, plus ``layers``,
            ``split``, ``pool``, ``relevance``, ``objective`` and ``sign`` (as in
            :func:`rw.concepts.discover <repwidgets.engines.concepts.discover>`).
    """
    name = step_id(job, step)
    check(job, step)
    cfg = ConceptConfig.resolve(None, engine_overrides(step, _OWN))
    sess = job.session(ctx)

    def compute(layer: str, work: Path) -> Any:
        return discover_sharded(
            ctx,
            sess,
            layer,
            cfg,
            split=step.get("split", "test"),
            pool=step_pool(job, step),
            relevance=bool(step.get("relevance", True)),
            objective=str(step.get("objective", "predicted")),
            sign=float(step.get("sign", 1.0)),
            manifest=manifest,
            work=work,
            name=name,
        )

    each_layer(ctx, step_layers(job, step), name, out, manifest, compute)


def discover_sharded(
    ctx: Any,
    sess: Any,
    layer: str,
    cfg: ConceptConfig,
    *,
    split: str = "test",
    pool: str = "mean",
    relevance: bool = True,
    objective: str = "predicted",
    sign: float = 1.0,
    manifest: Any,
    work: Path,
    name: str = NAME,
) -> ConceptResult | None:
    """Concept discovery on ``layer`` with the rows split over ranks; the result on the
    main rank (None elsewhere). Every rank must call it (it all-reduces).

    Each rank's partial sums, relevance and predictions are saved to ``work`` and
    recorded in ``manifest``; the main rank reads the relevance rows of every rank
    from there (the output folder is shared, as its manifest is).

    Example:
        >>> r = discover_sharded(Context.single(), sess, "features.conv4", ConceptConfig(),
        ...                      manifest=Manifest("out"), work=Path("out/work/concepts/x"))  # doctest: +SKIP
    """
    _checks.one_of("pool", pool, ("mean", "max", "cls"))
    module = sess.module(layer)
    layout = sess.layout(layer)
    n = _checks.split_size(sess, split)
    _checks.n_components(cfg.n_components, n, _checks.layer_width(sess, layer), of=layer)
    X = sess.activations(layer, split=split, pool=pool)

    def path_of(rows: range) -> Path:
        return Path(work) / f"rows-{rows.start}-{rows.stop}.safetensors"

    rows = ctx.shard(n)
    key = f"{layer}:{rows.start}-{rows.stop}"
    if manifest.done(name, key) and path_of(rows).exists():
        part = load_tensors(path_of(rows))
    else:
        part = {
            "gram": gram_matrix(X[rows.start : rows.stop]).cpu(),
            "sum": X[rows.start : rows.stop].sum(dim=0, dtype=torch.float64).cpu(),
        }
        if relevance:
            how = {"objective": objective, "sign": sign, "pool": pool}
            R, pred = _relevance_rows(ctx, sess, module, layout, split, rows, X.shape[1], how)
            part.update(relevance=R, predictions=pred)
        save_tensors(path_of(rows), part)
        manifest.record(name, key, rows=[rows.start, rows.stop])
    gram = ctx.all_reduce_sum(part["gram"])
    total = ctx.all_reduce_sum(part["sum"])
    if not ctx.is_main:
        return None
    C = X.shape[1]
    if relevance:
        every = [load_tensors(path_of(shard_range(n, r, ctx.world))) for r in range(ctx.world)]
        R = torch.cat([e["relevance"] for e in every])
        predictions = torch.cat([e["predictions"] for e in every])
    else:
        R, predictions = None, sess.predictions(split)
    if X.device.type == "cpu" and sess.device.type != "cpu":
        X = X.to(sess.device)
    concepts, names = _concept_labels(sess, split)
    result = discover_activations(
        X,
        cfg,
        relevance=R.to(X.device) if R is not None else None,
        predictions=predictions,
        labels=sess.targets(split),
        concepts=concepts,
        concept_names=names,
        class_names=sess.class_names,
        gram=(gram, total / n) if n >= 2 * C else None,  # as one process: eigh of X^T X
        progress=show_progress(ctx, sess),
    )
    result.layer, result.split = layer, split
    result.pool, result.neuron_axis = pool, None
    result.params.update({"objective": objective, "sign": sign, "relevance": bool(relevance)})
    result._session = sess
    return result


def _relevance_rows(
    ctx: Any, sess: Any, module, layout, split: str, rows: range, width: int, how: dict
) -> tuple[Tensor, Tensor]:
    """Relevance [len(rows), width] and predictions [len(rows)] of this rank's samples."""
    if len(rows) == 0:
        return torch.zeros(0, width), torch.zeros(0, dtype=torch.long)
    subset = Subset(sess.dataset(split), list(rows))
    loader = DataLoader(subset, batch_size=sess.batch_size, shuffle=False)
    R, predictions = layer_relevance(
        sess.model,
        module,
        loader,
        device=sess.device,
        preprocess=sess.preprocess,
        total=len(loader),
        progress=show_progress(ctx, sess),
        output=sess.output,
        neuron_axis=layout.neuron_axis,
        **how,
    )
    return R.float().cpu(), predictions.cpu()


def _concept_labels(sess: Any, split: str) -> tuple[Tensor | None, list[str] | None]:
    """The split's concept labels and names, or (None, None) when the data has none."""
    try:
        return sess.concepts(split), list(sess.concept_names)
    except ValueError:
        return None, None
