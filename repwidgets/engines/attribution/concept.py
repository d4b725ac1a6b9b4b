"""Concept attribution: which training samples taught the network a concept at a layer.

TRAK with a linear probe's logit as the model output: probes for the concept are
fitted at every probed layer for every model of an ensemble
(:func:`~repwidgets.engines.attribution.probes.probe_layers`), and the training
samples are scored by how much they pushed the probe's logit up on samples that carry
the concept. The result (:class:`~repwidgets.engines.attribution.concept_result.ConceptAttributionResult`)
ranks them and hands a selection over to curation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from repwidgets.engines import _checks
from repwidgets.engines.attribution.concept_result import ConceptAttributionResult
from repwidgets.engines.attribution.config import ConceptAttributionConfig
from repwidgets.engines.attribution.data import Relabeled
from repwidgets.engines.attribution.outputs import ProbeLogit
from repwidgets.engines.attribution.probes import (
    concept_name,
    default_probe_layers,
    probe_layers,
    split_labels,
)
from repwidgets.engines.attribution.trak import TRAK
from repwidgets.session import check_layer_names

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Sequence

    from repwidgets.engines.attribution.probes import ProbeLayersResult
    from repwidgets.session import Session

__all__ = ["concept_attribution"]


def concept_attribution(
    sess: Session,
    concept: Any,
    layer: str | None = None,
    config: ConceptAttributionConfig | dict | None = None,
    *,
    models: nn.Module | Sequence[nn.Module] | None = None,
    progress: bool | None = None,
    **overrides: Any,
) -> ConceptAttributionResult:
    """Which training samples taught the network a concept at a layer (TRAK on a probe's logit).

    1. A linear probe for the concept is fitted at every probed layer for every model of
       the ensemble (:func:`probe_layers`); ``layer`` defaults to the layer where the
       concept is most linearly readable.
    2. TRAK with the probe's logit at ``layer`` as the model output (one probe per
       model): targets are samples of ``target_split`` that carry the concept; a
       training sample's score is its mean (or summed) score over the targets. A high
       score: training on that sample made the targets look more like the concept.

    Args:
        sess: the session; its model is the ensemble's first member.
        concept: a concept name (``sess.concept_names``) or a dict ``{split: indices or
            bool mask}`` with your own selection on every split used.
        layer: the layer whose probe is attributed; default the best probed layer.
        config: a :class:`ConceptAttributionConfig` or a dict of its settings;
            ``**overrides`` change single settings (an unknown name is a TypeError).
            The main ones:

            * ``n_models`` (4): ensemble size (the session's model plus default models
              with other seeds, ``seeds``).
            * ``proj_dim`` (1024): JL projection size; None for exact gradients.
            * ``layers``: layers to probe (default: every conv/linear block after its
              activation).
            * ``targets``: indices (in ``target_split``) of the targets; default the
              samples that carry the concept, at most ``n_targets`` of them (seeded
              random choice).
            * ``max_train`` / ``train_indices``: attribute over a random subset (or
              given indices) of the training split instead of all of it (faster on a CPU).
            * ``reduce``: "mean" or "sum" over targets.
            * ``lam``, ``lam_relative``, ``proj_kind``, ``soft_threshold``, ``grad_wrt``,
              ``batch_size``: TRAK options (see :class:`TRAK`).
            * ``out_to_loss``: TRAK's per-sample weight Q of the training samples.
              ``"none"`` (default): Q = 1, the scores are the kernel products alone.
              ``"probe"``: Q = 1 - the probe's probability of the sample's own concept
              label, TRAK's term for a model trained on that output. The network was
              never trained on the probe's loss, and where the concept is linearly
              separable the probe saturates: Q then spans orders of magnitude
              (1e-6..1e-2) set by the probe's margin, not by what the sample taught, and
              decides the ranking (on the demo model at ``pool``: precision@100 0.79
              with Q against 1.00 without on 1,000 training samples, 0.62 against 1.00
              on all of them; see ``benchmarks/bench_truth.py``). The result's
              ``out_to_loss`` always holds the probe's Q and ``notes`` says when it is
              saturated.
            * ``pool``, ``fit_split``: probe options (see :func:`probe_layers`).
        models: your own checkpoints instead of the default ensemble.
        progress: show progress bars (default: the session's setting).

    Returns:
        :class:`ConceptAttributionResult`: ``to_frame()``, ``top(k)``, ``plot()``,
        ``candidates()``; ``params`` holds the settings.

    Example:
        >>> r = concept_attribution(sess, "watermark", n_models=2, proj_dim=512)  # doctest: +SKIP
        >>> r.top(100)[:5], r.precision_at(100)                                   # doctest: +SKIP
    """
    cfg = ConceptAttributionConfig.resolve(config, overrides)
    progress = sess.progress if progress is None else progress
    probe_list = _check_inputs(sess, layer, cfg)
    y_train_all = split_labels(sess, concept, "train")
    y_target_all = split_labels(sess, concept, cfg.target_split)
    target_idx = _target_indices(sess, concept, y_target_all, cfg)
    probes = probe_layers(
        sess,
        concept,
        layers=probe_list,
        n_models=cfg.n_models,
        models=models,
        seeds=cfg.seeds,
        pool=cfg.pool,
        fit_split=cfg.fit_split,
        progress=progress,
        neuron_axis=cfg.neuron_axis,
    )
    model_list = probes._models  # type: ignore[attr-defined]
    layer = layer if layer is not None else probes.best_layer()
    idx = _train_subset(sess.n("train"), cfg.max_train, cfg.train_indices, cfg.seed)
    res, probe_q = _trak_on_probes(
        sess, probes, model_list, layer, idx, target_idx, y_train_all, y_target_all, cfg, progress
    )
    idx_t = torch.as_tensor(idx, dtype=torch.long)
    all_concepts, names = _concept_table(sess, idx_t)
    result = ConceptAttributionResult(
        concept=concept_name(concept),
        layer=layer,
        scores=res.scores.float(),
        train_indices=idx_t,
        classes=sess.targets("train")[idx_t].long(),
        concept_labels=y_train_all[idx_t].bool(),
        concepts=all_concepts,
        concept_names=names,
        class_names=list(sess.class_names),
        target_split=cfg.target_split,
        target_indices=torch.as_tensor(target_idx, dtype=torch.long),
        out_to_loss=probe_q.float(),
        probe_layers=list(probes.layers),
        probe_accuracy=probes.accuracy,
        probe_balanced_accuracy=probes.balanced_accuracy,
        n_models=len(model_list),
        proj_dim=cfg.proj_dim,
        lam=cfg.lam,
        reduce=cfg.reduce,
        grad_dims=res.grad_dims,
        out_to_loss_mode=cfg.out_to_loss,
        notes=out_to_loss_notes(probe_q, cfg.out_to_loss),
        params=cfg.to_dict(),
    )
    result._session = sess
    return result


def _check_inputs(sess: Session, layer: str | None, cfg: ConceptAttributionConfig) -> list[str]:
    """Check layers and sizes before any model is trained; return the layers to probe."""
    if layer is not None:
        sess.module(layer)
    probe_list = list(cfg.layers) if cfg.layers is not None else default_probe_layers(sess.model)
    if layer is not None and layer not in probe_list:
        probe_list.append(layer)
    check_layer_names(sess.model, probe_list)
    for name in ("proj_dim", "max_train", "n_targets"):
        _checks.optional_positive_int(name, getattr(cfg, name))
    _checks.positive_int("batch_size", cfg.batch_size)
    _checks.split_size(sess, cfg.target_split)
    return probe_list


def _target_indices(
    sess: Session, concept: Any, y_target_all: torch.Tensor, cfg: ConceptAttributionConfig
) -> np.ndarray:
    """The targets' indices in ``target_split``: the given ones, or (at most n_targets
    of) the samples that carry the concept."""
    split = cfg.target_split
    if cfg.targets is None:
        positives = torch.nonzero(y_target_all).flatten().numpy()
        if positives.size == 0:
            raise ValueError(
                f"No sample of split {split!r} carries the concept "
                f"{concept_name(concept)!r}: there is nothing to attribute. Choose another "
                "concept or target_split, or pass targets=[...]."
            )
        if cfg.n_targets is not None and positives.size > cfg.n_targets:
            rng = np.random.default_rng(cfg.seed)
            positives = np.sort(rng.choice(positives, size=int(cfg.n_targets), replace=False))
        return positives
    target_idx = np.asarray(cfg.targets, dtype=np.int64).reshape(-1)
    if target_idx.size == 0:
        raise ValueError("targets is empty: pass at least one target index.")
    n_t = sess.n(split)
    if target_idx.min() < 0 or target_idx.max() >= n_t:
        raise IndexError(f"targets must lie in [0, {n_t}) for split {split!r}.")
    return target_idx


def _train_subset(
    n: int, max_train: int | None, train_indices: Sequence[int] | None, seed: int
) -> np.ndarray:
    """The attributed training indices: the given ones, a seeded random subset, or all."""
    if train_indices is not None:
        idx = np.asarray(train_indices, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            raise ValueError("train_indices is empty.")
        if idx.min() < 0 or idx.max() >= n:
            raise IndexError(f"train_indices must lie in [0, {n}).")
        return idx
    if max_train is None or max_train >= n:
        return np.arange(n)
    if max_train < 1:
        raise ValueError(f"max_train must be a positive number of samples, got {max_train}.")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=int(max_train), replace=False))


def _trak_on_probes(
    sess: Session,
    probes: ProbeLayersResult,
    model_list: list[nn.Module],
    layer: str,
    idx: np.ndarray,
    target_idx: np.ndarray,
    y_train_all: torch.Tensor,
    y_target_all: torch.Tensor,
    cfg: ConceptAttributionConfig,
    progress: bool,
):
    """TRAK scores of the training subset for the targets, with each model's probe
    logit at ``layer`` as its output; also the probe's Q term [n] (checkpoint mean)."""
    li = probes.layers.index(layer)
    axis = sess.layout(layer, cfg.neuron_axis).neuron_axis
    output_fns = [
        ProbeLogit.from_probe(layer, probes._probes[li][j], pool=cfg.pool, neuron_axis=axis)
        for j in range(len(model_list))
    ]
    train = Relabeled(sess.dataset("train"), y_train_all[idx].long(), indices=idx.tolist())
    targets = Relabeled(
        sess.dataset(cfg.target_split),
        y_target_all[target_idx].long(),
        indices=target_idx.tolist(),
    )
    trak = TRAK(
        model_list,
        output_fn=output_fns,
        config=cfg.trak(),
        device=sess.device,
        feature_dir=cfg.feature_dir,
        preprocess=sess.preprocess,
        output=sess.output,
        progress=progress,
        memory_budget_mb=min(sess.memory_budget / 2**20, 2048),
    )
    try:
        trak.featurize(train)
        probe_q = _set_out_to_loss(trak, cfg.out_to_loss)
        res = trak.score(targets, reduce=cfg.reduce, soft_threshold=cfg.soft_threshold)
    finally:
        trak.close()
    return res, probe_q


def _concept_table(sess: Session, idx: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
    """All concept labels [n, K] of the attributed samples and their names (none without)."""
    try:
        return sess.concepts("train")[idx].bool(), list(sess.concept_names)
    except ValueError:  # data without concept labels
        return torch.zeros(len(idx), 0, dtype=torch.bool), []


def _set_out_to_loss(trak: TRAK, mode: str) -> torch.Tensor:
    """Keep the probe's Q term ("probe") or replace it by 1 ("none"); return the probe's
    Q averaged over the checkpoints."""
    probe_q = torch.stack([ck.q for ck in trak.checkpoints]).mean(dim=0)
    if mode == "none":
        for ck in trak.checkpoints:
            ck.q = torch.ones_like(ck.q)
    return probe_q


def out_to_loss_notes(probe_q: torch.Tensor, mode: str) -> list[str]:
    """A note when the probe is saturated (its Q term would decide the ranking)."""
    q = probe_q.double().clamp(min=1e-30)
    median = float(q.median())
    spread = float(torch.quantile(q.log10(), 0.9) - torch.quantile(q.log10(), 0.1))
    if median >= 1e-2 and spread < 2:
        return []
    used = "kept (out_to_loss='probe')" if mode == "probe" else "left out (the default)"
    return [
        f"The probe is saturated: its Q term (1 - probability of the own label) has median "
        f"{median:.1e} and spans {spread:.1f} decades over the training samples, so it "
        f"would rank samples by the probe's confidence rather than by what they taught; "
        f"it is {used}."
    ]
