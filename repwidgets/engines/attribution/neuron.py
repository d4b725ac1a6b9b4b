"""Per-neuron attribution: which training samples taught one neuron to fire.

TRAK (see :mod:`repwidgets.engines.attribution`) with one neuron's pooled activation at
a layer as the model output (:class:`~repwidgets.engines.attribution.outputs.NeuronActivation`).
The targets are the neuron's top-activating samples of ``target_split``; a training
sample's score is its mean TRAK score over them. A high score: training on that sample
made the network fire this neuron more on the samples it fires on most.

Choices, and why:

* One model, the session's: the neuron is a unit of this network. Another seed's
  network has a neuron with the same index but not the same role, so there is no
  ensemble to average over (unlike concept attribution, whose probe is refitted per
  model).
* Q = 1 (no out-to-loss term): the network was not trained on the neuron's activation,
  so there is no loss whose probability could weight the training samples.
* ``target_split="test"`` by default: the explorer shows a neuron's top samples from the
  test split, and targets outside the attributed training set have no self-influence
  (a training target's own features would put it at the top of its ranking, which
  says nothing about what taught the neuron).
* The output is unsigned (the activation itself, not its magnitude): a sample that
  pushes the activation up on the targets scores high.

The core is :class:`~repwidgets.engines.attribution.trak.TRAK`; this module adds the
session-level call :func:`neuron_attribution` (settings in
:class:`NeuronAttributionConfig`), with ``cancel`` and ``on_progress`` for a UI that
runs it in a background thread. The result is
:class:`~repwidgets.engines.attribution.neuron_result.NeuronAttributionResult`.

Example:
    >>> r = rw.attribution.neuron_attribution(sess, "features.relu4", 12)   # doctest: +SKIP
    >>> r.top(10), r.precision_at(100, "watermark")                          # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from repwidgets.config import Config
from repwidgets.engines import _checks
from repwidgets.engines.attribution.concept import _concept_table, _train_subset
from repwidgets.engines.attribution.config import TRAKConfig, _grad_wrt, _jsonable_grad_wrt
from repwidgets.engines.attribution.data import Relabeled
from repwidgets.engines.attribution.neuron_result import NeuronAttributionResult
from repwidgets.engines.attribution.outputs import NeuronActivation
from repwidgets.engines.attribution.trak import TRAK, ProgressCallback, check_cancel
from repwidgets.engines.neurons import top_activating

if TYPE_CHECKING:  # pragma: no cover
    from repwidgets.layouts import Layout
    from repwidgets.session import Session

__all__ = ["NeuronAttributionConfig", "neuron_attribution"]

#: Default number of attributed training samples: a seeded random subset of the
#: training split (``max_train=None`` uses all of them). Featurising one sample costs
#: about two raw forward+backward passes of it (``benchmarks/bench_attribution.py
#: --neuron``), so on the demo (8,000 training images of 64 x 64, a 2-core CPU) 1,000
#: samples keep a run within seconds, and the top 100 of them is already 0.95-0.96
#: watermarked for the watermark neurons of ``features.relu3`` and ``features.relu4``
#: (base rate 0.24).
DEFAULT_MAX_TRAIN = 1000


def _int_tuple(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    return tuple(int(v) for v in torch.as_tensor(value).reshape(-1).tolist())


@dataclasses.dataclass(frozen=True)
class NeuronAttributionConfig(Config):
    """Per-neuron attribution's settings (see :func:`neuron_attribution`).

    Attributes:
        proj_dim: p, the JL projection size of the gradient features; None for exact
            gradients (small models only).
        max_train: attribute over a seeded random subset of this many training samples
            (None: all of them); ignored when ``train_indices`` is given.
        train_indices: the training-split indices to attribute over.
        n_targets: the targets are the neuron's ``n_targets`` top-activating samples of
            ``target_split``. The default 128 averages over the neuron's whole top range
            rather than its few most extreme samples, which on the demo can share a
            class besides the feature: for the watermark neurons of ``features.relu4``
            and ``features.relu3`` the top-100 precision over 1,000 training samples was
            0.79 and 0.85 with 32 targets, 0.89 and 0.93 with 64, 0.96 and 0.95 with 128
            (lam = 1; a larger lam helped at relu4 but hurt at relu3). Targets cost
            what training samples cost, so 128 adds about an eighth to the run.
        target_split: where the targets come from: ``"test"`` (default: what the
            explorer shows, and no target is itself attributed) or ``"train"``.
        pool: how the neuron's map is pooled to one number per sample (``"mean"``,
            ``"max"``, or ``"cls"`` for a token layer's class token), for the targets'
            ranking and the attributed output alike.
        neuron_axis: the layer's neuron axis where the session cannot tell it (None: the
            session's layout).
        lam, lam_relative, proj_kind, grad_wrt, seed, batch_size, proj_chunk_mb: TRAK's
            options (see :class:`~repwidgets.engines.attribution.trak.TRAK`); ``seed``
            also draws the training subset.
        feature_dir: folder for the memory-mapped features (default: a temporary one).
    """

    proj_dim: int | None = 512
    max_train: int | None = DEFAULT_MAX_TRAIN
    train_indices: tuple[int, ...] | None = None
    n_targets: int = 128
    target_split: str = "test"
    pool: str = "mean"
    neuron_axis: int | None = None
    lam: float = 1.0
    lam_relative: bool = True
    proj_kind: str = "rademacher"
    grad_wrt: Any = None
    seed: int = 0
    batch_size: int = 64
    proj_chunk_mb: float = 64.0
    feature_dir: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_indices", _int_tuple(self.train_indices))
        object.__setattr__(self, "grad_wrt", _grad_wrt(self.grad_wrt))
        if isinstance(self.feature_dir, Path):
            object.__setattr__(self, "feature_dir", str(self.feature_dir))
        self.trak()  # TRAK's own checks (proj_dim, lam, batch_size, ...) run now

    def to_dict(self) -> dict[str, Any]:
        return _jsonable_grad_wrt(super().to_dict(), self.grad_wrt)

    def trak(self) -> TRAKConfig:
        """The TRAK settings among these."""
        names = set(TRAKConfig.field_names())
        return TRAKConfig(**{k: getattr(self, k) for k in self.field_names() if k in names})


def neuron_attribution(
    sess: Session,
    layer: str,
    unit: int,
    config: NeuronAttributionConfig | dict | None = None,
    *,
    progress: bool | None = None,
    cancel: threading.Event | None = None,
    on_progress: ProgressCallback | None = None,
    **overrides: Any,
) -> NeuronAttributionResult:
    """Which training samples taught neuron ``unit`` of ``layer`` to fire (TRAK on its activation).

    1. The targets: the neuron's ``n_targets`` top-activating samples of
       ``target_split`` (pooled activations, ``sess.activations(layer, target_split)``).
    2. TRAK with the neuron's pooled activation as the output of the session's model
       (the forward pass stops at the layer; gradients of every parameter before it),
       Q = 1; a training sample's score is its mean score over the targets.

    Args:
        sess: the session; its model is the one attributed.
        layer: the layer (``sess.layers()``); its layout decides the neuron axis (conv,
            token and channels-last layers).
        unit: the neuron (index on the layer's neuron axis, as in ``sess.activations``).
        config: a :class:`NeuronAttributionConfig` or a dict of its settings;
            ``**overrides`` change single settings (an unknown name is a TypeError with
            "did you mean"): ``proj_dim`` (512), ``max_train`` (1,000), ``n_targets``
            (128), ``target_split`` ("test"), ``pool`` ("mean"), ``lam`` (1, relative),
            ...
        progress: show progress bars (default: the session's setting).
        cancel: checked before every batch of features; once set, :class:`Cancelled` is
            raised (e.g. the explorer's Cancel button, from another thread).
        on_progress: ``on_progress(done, total, stage)``, called between batches with
            the samples featurised so far of ``total = n_train + n_targets`` (``done``
            never decreases) and the stage ("activations": the layer's activations on
            ``target_split``, computed once per session; "train features", "target
            features", "scores").

    Returns:
        :class:`NeuronAttributionResult`: ``top(k)``, ``to_frame()``,
        ``precision_at(k, concept)``, ``enrichment(k)``, ``plot()``, ``candidates()``;
        ``params`` holds the settings.

    Raises:
        Cancelled: when ``cancel`` was set.
        ValueError / IndexError: a bad layer, unit or setting, before anything is computed.

    Example:
        >>> r = neuron_attribution(sess, "features.relu4", 12, max_train=1000)  # doctest: +SKIP
        >>> r.to_frame().head(), r.precision_at(100, "watermark")               # doctest: +SKIP
    """
    cfg = NeuronAttributionConfig.resolve(config, overrides)
    progress = sess.progress if progress is None else progress
    layout = _check_inputs(sess, layer, unit, cfg)
    idx = _train_subset(sess.n("train"), cfg.max_train, cfg.train_indices, cfg.seed)
    n_targets = min(int(cfg.n_targets), sess.n(cfg.target_split))
    report = _Report(on_progress, len(idx) + n_targets)
    check_cancel(cancel, "setup")
    report(0, len(idx), "activations")
    acts = sess.activations(layer, cfg.target_split, pool=cfg.pool, neuron_axis=cfg.neuron_axis)
    target_idx = top_activating(acts, unit, n_targets).cpu()
    fn = NeuronActivation(layer, unit, pool=cfg.pool, neuron_axis=layout.neuron_axis)
    train = Relabeled(sess.dataset("train"), sess.targets("train")[idx], indices=idx.tolist())
    targets = Relabeled(
        sess.dataset(cfg.target_split),
        sess.targets(cfg.target_split)[target_idx],
        indices=target_idx.tolist(),
    )
    trak = TRAK(
        sess.model,
        output_fn=fn,
        config=cfg.trak(),
        device=sess.device,
        feature_dir=cfg.feature_dir,
        preprocess=sess.preprocess,
        output=sess.output,
        progress=progress,
        cancel=cancel,
        on_progress=report,
        memory_budget_mb=min(sess.memory_budget / 2**20, 2048),
    )
    try:
        trak.featurize(train)
        res = trak.score(targets, reduce="mean")
    finally:
        trak.close()
    report.finish()
    idx_t = torch.as_tensor(idx, dtype=torch.long)
    concepts, names = _concept_table(sess, idx_t)
    result = NeuronAttributionResult(
        layer=layer,
        unit=int(unit) % _checks.layer_width(sess, layer, cfg.neuron_axis),
        scores=res.scores.float().reshape(-1),
        train_indices=idx_t,
        target_indices=target_idx.long(),
        target_split=cfg.target_split,
        target_activations=acts[target_idx.to(acts.device), unit].detach().float().cpu(),
        classes=sess.targets("train")[idx_t].long(),
        concepts=concepts,
        concept_names=names,
        class_names=list(sess.class_names),
        pool=cfg.pool,
        proj_dim=cfg.proj_dim,
        lam=cfg.lam,
        grad_dims=res.grad_dims,
        params=cfg.to_dict(),
    )
    result._session = sess
    return result


def _check_inputs(sess: Session, layer: str, unit: int, cfg: NeuronAttributionConfig) -> Layout:
    """Check the layer, the unit and the settings from one sample's shapes; the layout."""
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a layer name (sess.layers()), got {layer!r}.")
    sess.module(layer)
    layout = sess.layout(layer, cfg.neuron_axis)
    width = _checks.layer_width(sess, layer, cfg.neuron_axis)
    if isinstance(unit, bool) or not isinstance(unit, (int, np.integer)):
        raise TypeError(f"unit must be an integer neuron index, got {unit!r}.")
    if not -width <= int(unit) < width:
        raise IndexError(
            f"unit {int(unit)} is out of range: layer {layer!r} has {width} neurons "
            f"(0..{width - 1})."
        )
    _checks.one_of("pool", cfg.pool, ("mean", "max", "cls"))
    if cfg.pool == "cls" and layout.kind != "tokens":
        raise ValueError(
            f"pool='cls' takes a token layer's class token; {layer!r} is {layout.kind}. "
            "Use pool='mean' or 'max'."
        )
    _checks.positive_int("n_targets", cfg.n_targets)
    _checks.optional_positive_int("max_train", cfg.max_train)
    _checks.positive_int("batch_size", cfg.batch_size)
    if cfg.target_split not in sess.splits:
        raise ValueError(
            f"target_split {cfg.target_split!r} is not a split of the data: use one of "
            f"{sess.splits} ('test' or 'train')."
        )
    _checks.split_size(sess, cfg.target_split)
    n_train = _checks.split_size(sess, "train")
    _train_subset(n_train, cfg.max_train, cfg.train_indices, cfg.seed)  # raises on bad indices
    return layout


class _Report:
    """``on_progress`` over the whole run: samples done of training plus target samples."""

    def __init__(self, callback: ProgressCallback | None, total: int) -> None:
        self.callback = callback
        self.total = int(total)
        self.offset = 0
        self.last = 0

    def __call__(self, done: int, total: int, stage: str) -> None:
        if stage.startswith("target") and self.offset == 0:
            self.offset = self.total - total
        self.last = max(self.last, self.offset + int(done))
        if self.callback is not None:
            self.callback(self.last, self.total, stage.split(" (")[0])

    def finish(self) -> None:
        if self.callback is not None:
            self.callback(self.total, self.total, "scores")
