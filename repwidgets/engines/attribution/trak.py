"""TRAK for a set of checkpoints: featurise a training set once, then score targets.

For M checkpoints c = 1..M (see :mod:`repwidgets.engines.attribution` for the method):
``S = mean_c(Phi_c K_c^-1 Phi_c,target^T) * mean_c(Q_c)``. :class:`TRAK` orchestrates
the pieces: output functions (:mod:`.outputs`), per-sample gradient features
(:mod:`.featurize`), the feature store (:mod:`.store`) and the kernel solve
(:mod:`.solve`); :func:`trak_scores` is the one-call form.
"""

from __future__ import annotations

import math
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset

from repwidgets._progress import progress_bar
from repwidgets.engines.attribution.config import TRAKConfig
from repwidgets.engines.attribution.data import as_dataset, collate, loader
from repwidgets.engines.attribution.featurize import Featurizer
from repwidgets.engines.attribution.outputs import as_output_fn
from repwidgets.engines.attribution.plotting import histogram
from repwidgets.engines.attribution.solve import (
    Checkpoint,
    dual_gram,
    kernel_dtype,
    scores_one,
    soft_threshold,
)
from repwidgets.engines.attribution.store import FeatureStore
from repwidgets.results import Result

__all__ = ["TRAK", "Cancelled", "ProgressCallback", "TRAKResult", "trak_scores"]

#: ``on_progress(done, total, stage)``: samples done of ``total`` in the named stage.
ProgressCallback = Callable[[int, int, str], None]


class Cancelled(Exception):  # noqa: N818 - the name says what happened
    """Raised when the ``cancel`` event of a computation was set (checked between batches)."""


def check_cancel(cancel: threading.Event | None, stage: str) -> None:
    """Raise :class:`Cancelled` when ``cancel`` is set."""
    if cancel is not None and cancel.is_set():
        raise Cancelled(f"Cancelled during {stage}.")


class TRAK:
    """TRAK attribution for a set of checkpoints: featurise a training set once, score targets.

    Args:
        models: one ``nn.Module`` or a list (checkpoints of one run, or independently
            trained models); each becomes one term of the unweighted ensemble mean.
        output_fn: ``"margin"`` (class margin), an :class:`OutputFunction` (e.g.
            :class:`ProbeLogit`), a callable ``fn(model_output, y) -> scalar``, or a
            list with one of those per model.
        config: a :class:`TRAKConfig` (or a dict of its settings); ``overrides`` change
            single settings. The settings:

            * ``proj_dim``: p, the projected feature size (about 512-4096); ``None``
              for no projection (exact gradients; only for small models).
            * ``proj_kind``: ``"rademacher"`` or ``"gaussian"`` JL matrix, scaled by 1/sqrt(p).
            * ``lam``: ridge term added to ``Phi^T Phi``. The default 1.0 (relative: the
              ridge equals the mean eigenvalue of ``Phi^T Phi``) scored the highest
              linear datamodeling score on the benchmark setting (0.16 against 0.05 for
              no ridge, see ``benchmarks/bench_attribution.py``); the reference library
              uses 0. With many more training samples than features a smaller value may
              do better: pick it with :func:`lds` (``score(..., lam=...)`` re-solves cheaply).
            * ``lam_relative``: if True (default) the ridge is ``lam * trace(Phi^T Phi) / p``
              (scale free: each checkpoint's term does not depend on the scale of its
              gradients); if False it is ``lam`` itself.
            * ``grad_wrt``: restrict gradients to parameters whose names equal or start
              with one of these prefixes (e.g. ``["features.conv4", "fc"]``), or a
              predicate on names. Parameters that do not influence the output are
              always skipped.
            * ``seed``: projection seed; checkpoint c uses ``seed + c``.
            * ``batch_size``: samples per vectorised gradient pass (reduced to fit
              ``memory_budget_mb``, the bound on the per-sample gradients held at once).
            * ``kernel_dtype``: ``"float64"`` (default) or ``"float32"`` for the kernel solve.
            * ``chunk_rows``: rows per memory-mapped feature file.
            * ``proj_cache_mb``: memory for keeping the generated projection blocks
              between batches: in float while the whole matrix fits, else (Rademacher) as
              int8 signs at a quarter of the size, else regenerated for every batch
              (slow). On the benchmark's 241k-parameter CNN with p = 1024 the float cache
              (1 GB) is about 1.5x faster than the int8 one.
            * ``proj_chunk_mb``: working memory of one step of the projection (a slice of
              the matrix's parameter rows times the matching gradients of a slice of the
              samples), so that a large model's projection never forms a bigger product;
              the features do not depend on it.
        device: computation device (default: the first model's device).
        feature_dir: folder for the memory-mapped features; a temporary folder (removed
            when the object is garbage-collected or :meth:`close` is called) if None.
        preprocess: function applied to an input batch before the model.
        progress: show progress bars.
        output: where the logits are in a model's output that is not a tensor: a dict
            key or attribute name (``"logits"``), a tuple index, or a function (as a
            session's ``output=``; :func:`repwidgets.session.select_output`). Output
            functions then see the logits.
        cancel: a ``threading.Event`` checked before every batch of training and target
            features; once it is set the computation raises :class:`Cancelled` (so a UI
            can stop a run in a background thread).
        on_progress: ``on_progress(done, total, stage)``, called before the first and
            after every batch of features with the samples done of ``total`` in the
            stage (``"train features (model c/M)"``, ``"target features (model c/M)"``).

    Example:
        >>> trak = TRAK([model_a, model_b], output_fn="margin", proj_dim=512)  # doctest: +SKIP
        >>> trak.featurize(train_dataset)                                       # doctest: +SKIP
        >>> r = trak.score(test_subset)        # r.scores: [n_train, n_targets]  # doctest: +SKIP
    """

    def __init__(
        self,
        models: nn.Module | Sequence[nn.Module],
        output_fn: Any = "margin",
        config: TRAKConfig | dict | None = None,
        *,
        device: str | torch.device | None = None,
        feature_dir: str | Path | None = None,
        preprocess: Callable | None = None,
        progress: bool = True,
        output: str | int | Callable | None = None,
        cancel: threading.Event | None = None,
        on_progress: ProgressCallback | None = None,
        **overrides: Any,
    ) -> None:
        self.config = cfg = TRAKConfig.resolve(config, overrides)
        self.cancel = cancel
        self.on_progress = on_progress
        self.models = [models] if isinstance(models, nn.Module) else list(models)
        if not self.models or not all(isinstance(m, nn.Module) for m in self.models):
            raise TypeError("models must be an nn.Module or a non-empty list of nn.Modules.")
        fns = output_fn if isinstance(output_fn, (list, tuple)) else [output_fn] * len(self.models)
        if len(fns) != len(self.models):
            raise ValueError(
                f"Got {len(fns)} output functions for {len(self.models)} models: pass one, or "
                "one per model."
            )
        self.output_fns = [as_output_fn(f) for f in fns]
        self.proj_dim = None if cfg.proj_dim is None else int(cfg.proj_dim)
        self.lam, self.lam_relative = float(cfg.lam), bool(cfg.lam_relative)
        if device is None:
            first = next(self.models[0].parameters(), None)
            device = first.device if first is not None else "cpu"
        self.device = torch.device(device)
        self.kernel_dtype = kernel_dtype(cfg.kernel_dtype, self.device)
        self.memory_budget = float(cfg.memory_budget_mb) * 2**20
        self.preprocess = preprocess
        self.output = output
        self.progress = progress
        if feature_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="repwidgets-trak-")
            self.feature_dir = Path(self._tmp.name)
        else:
            self._tmp = None
            self.feature_dir = Path(feature_dir)
        self._checkpoints: list[Checkpoint] = []
        self.n_train = 0

    def close(self) -> None:
        """Delete the features on disk (when they live in a temporary folder)."""
        self._checkpoints.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    @property
    def checkpoints(self) -> list[Checkpoint]:
        """Every featurised model's :class:`Checkpoint` (features, kernel, Q term)."""
        return self._checkpoints

    def _batch(self, dim: int) -> int:
        per_sample = max(1, dim) * 4 * 3
        return max(1, min(int(self.config.batch_size), int(self.memory_budget // per_sample)))

    def _featurizer(self, c: int, example: tuple[torch.Tensor, torch.Tensor]) -> Featurizer:
        cfg = self.config
        return Featurizer(
            self.models[c],
            self.output_fns[c],
            cfg.grad_wrt,
            self.proj_dim,
            cfg.proj_kind,
            int(cfg.seed) + c,
            self.device,
            self.preprocess,
            example,
            cfg.proj_cache_mb,
            output=self.output,
            chunk_mb=cfg.proj_chunk_mb,
        )

    def featurize(self, train: Any) -> TRAK:
        """Compute, store and invert the training features of every checkpoint.

        Args:
            train: a Dataset of ``(input, label)`` items or a pair ``(X, y)``; the label is
                what the output function expects (class for the margin, 0/1 for a probe).
        """
        train = as_dataset(train, "training")
        first = collate([train[0]])
        example = (first[0][0], first[1][0])
        self._checkpoints.clear()
        for c in range(len(self.models)):
            ck = self._featurize_one(c, train, example)
            ck.solver(self.lam, self.lam_relative)  # factorise now: errors surface here
            self._checkpoints.append(ck)
        self.n_train = len(train)
        return self

    def _featurize_one(self, c: int, train: Dataset, example) -> Checkpoint:
        """One checkpoint's features (to disk), Q term and Gram matrix."""
        n, fn = len(train), self.output_fns[c]
        with fn.attached(self.models[c], self.device):
            feat = self._featurizer(c, example)
            p = feat.out_dim
            dual = p > n
            store = FeatureStore(
                self.feature_dir, f"train_c{c}", n, p, chunk_rows=self.config.chunk_rows
            )
            q = torch.empty(n, dtype=torch.float32)
            gram = None if dual else torch.zeros(p, p, dtype=self.kernel_dtype, device=self.device)
            bs = self._batch(feat.dim)
            batches = progress_bar(
                loader(train, bs),
                total=math.ceil(n / bs),
                desc=f"TRAK features (model {c + 1}/{len(self.models)})",
                enable=self.progress,
            )
            stage = f"train features (model {c + 1}/{len(self.models)})"
            start = 0
            for x, y in batches:
                self._step(start, n, stage)
                phi, out = feat(x, y)
                store.write(start, phi)
                q[start : start + len(out)] = fn.out_to_loss(out, y.to(out.device)).cpu()
                if gram is not None:
                    gram += (phi.T @ phi).to(self.kernel_dtype)
                start += len(out)
            self._step(start, n, stage)
        if dual:
            gram = dual_gram(store, self.kernel_dtype, self.device)
        return Checkpoint(feat, store, q, gram, dual)

    def target_features(self, c: int, targets: Dataset) -> torch.Tensor:
        """Features [m, p] of the targets under checkpoint ``c`` (in memory, device)."""
        ck = self._checkpoints[c]
        fn = self.output_fns[c]
        rows = []
        bs = self._batch(ck.featurizer.dim)
        stage = f"target features (model {c + 1}/{len(self.models)})"
        done, m = 0, len(targets)
        with fn.attached(self.models[c], self.device):
            for x, y in loader(targets, bs):
                self._step(done, m, stage)
                rows.append(ck.featurizer(x, y)[0])
                done += len(rows[-1])
        self._step(done, m, stage)
        return torch.cat(rows)

    def _step(self, done: int, total: int, stage: str) -> None:
        """Between batches: stop if cancelled, else report progress."""
        check_cancel(self.cancel, stage)
        if self.on_progress is not None:
            self.on_progress(int(done), int(total), stage)

    def score(
        self,
        targets: Any,
        reduce: str | None = None,
        soft_threshold: float | None = None,
        lam: float | None = None,
        lam_relative: bool | None = None,
    ) -> TRAKResult:
        """Scores of every training sample for every target.

        Args:
            targets: a Dataset of ``(input, label)`` items or a pair ``(X, y)``.
            reduce: None for the full matrix [n_train, m]; ``"sum"`` or ``"mean"`` to
                aggregate over targets (computed from the summed target features, so
                the [n, m] matrix is never formed unless soft-thresholding needs it).
            soft_threshold: if set, a quantile q in [0, 1): each target's scores are
                shrunk towards 0 by the q-quantile of their magnitudes (sparsifies
                them), before any reduction.
            lam, lam_relative: another ridge for this call (the kernels are kept, so
                trying several values, e.g. to pick the best by :func:`lds`, costs
                no new features).
        """
        lam = self.lam if lam is None else float(lam)
        lam_relative = self.lam_relative if lam_relative is None else bool(lam_relative)
        if lam < 0:
            raise ValueError(f"lam must be >= 0, got {lam}.")
        if not self._checkpoints:
            raise RuntimeError("Call featurize(train) before score(targets).")
        if reduce not in (None, "sum", "mean"):
            raise ValueError(f"reduce must be None, 'sum' or 'mean', got {reduce!r}.")
        targets = as_dataset(targets, "target")
        m = len(targets)
        aggregate = reduce is not None and soft_threshold is None
        total = self._kernel_products(targets, aggregate, lam, lam_relative)
        q = torch.stack([ck.q for ck in self._checkpoints]).mean(dim=0)
        scores = total / len(self._checkpoints) * q[:, None]
        scores = _reduce(scores, reduce, soft_threshold, aggregate, m)
        first = self._checkpoints[0].featurizer
        cfg = self.config.replace(lam=lam, lam_relative=lam_relative)
        return TRAKResult(
            scores=scores,
            out_to_loss=q,
            n_models=len(self._checkpoints),
            proj_dim=self.proj_dim,
            proj_kind=cfg.proj_kind if self.proj_dim is not None else "none",
            lam=lam,
            lam_relative=lam_relative,
            reduce=reduce,
            soft_threshold=soft_threshold,
            n_targets=m,
            output=self.output_fns[0].name,
            grad_dims=[int(ck.featurizer.dim) for ck in self._checkpoints],
            grad_params=list(first.names),
            seed=int(cfg.seed),
            params={**cfg.to_dict(), "reduce": reduce, "soft_threshold": soft_threshold},
        )

    def _kernel_products(
        self, targets: Dataset, aggregate: bool, lam: float, lam_relative: bool
    ) -> torch.Tensor:
        """Sum over checkpoints of ``Phi K^-1 phi_t^T`` [n, m] ([n, 1] when aggregated)."""
        width = 1 if aggregate else len(targets)
        total = torch.zeros(self.n_train, width, dtype=torch.float32)
        loop = progress_bar(
            range(len(self._checkpoints)),
            total=len(self._checkpoints),
            desc="TRAK scores",
            enable=self.progress and len(self._checkpoints) > 1,
        )
        for c in loop:
            ck = self._checkpoints[c]
            phi_t = self.target_features(c, targets)
            if aggregate:
                phi_t = phi_t.sum(dim=0, keepdim=True)
            solve, _ridge = ck.solver(lam, lam_relative)
            total += scores_one(ck, phi_t, solve, self.n_train, self.kernel_dtype, self.device)
        return total


def _reduce(
    scores: torch.Tensor, reduce: str | None, threshold: float | None, aggregate: bool, m: int
) -> torch.Tensor:
    """Soft-threshold then sum or average [n, m] scores over targets (as asked)."""
    if threshold is not None:
        scores = soft_threshold(scores, float(threshold))
    if reduce is not None:
        scores = scores.sum(dim=1) if (aggregate or reduce == "sum") else scores.mean(dim=1)
        if aggregate and reduce == "mean":
            scores = scores / m
    return scores


def trak_scores(
    models: nn.Module | Sequence[nn.Module],
    train: Any,
    targets: Any,
    output_fn: Any = "margin",
    config: TRAKConfig | dict | None = None,
    *,
    reduce: str | None = None,
    soft_threshold: float | None = None,
    device: str | torch.device | None = None,
    feature_dir: str | Path | None = None,
    preprocess: Callable | None = None,
    progress: bool = True,
    output: str | int | Callable | None = None,
    cancel: threading.Event | None = None,
    on_progress: ProgressCallback | None = None,
    **overrides: Any,
) -> TRAKResult:
    """TRAK scores of every training sample for every target, in one call.

    Args:
        models: one model or a list of checkpoints (unweighted ensemble mean).
        train: Dataset of ``(input, label)`` items, or a pair ``(X, y)``.
        targets: the samples to explain, same forms.
        output_fn: ``"margin"`` (class margin, the default), an :class:`OutputFunction`,
            a callable ``fn(model_output_of_one_sample, y) -> scalar``, or one per model.
        config: a :class:`TRAKConfig` or a dict of its settings; ``**overrides`` change
            single settings (``proj_dim=512``: JL projection size, None for exact
            gradients; ``lam``: ridge term, relative to the mean eigenvalue unless
            ``lam_relative=False``; ``grad_wrt``, ``seed``, ``batch_size``, ...).
        reduce, soft_threshold: see :meth:`TRAK.score`.
        device, feature_dir, preprocess, progress, output, cancel, on_progress: see
            :class:`TRAK`.

    Returns:
        :class:`TRAKResult` with ``scores`` [n_train, n_targets] (or [n_train] reduced);
        ``params`` holds the settings.

    Example:
        >>> r = trak_scores(model, (X_train, y_train), (X_test[:5], y_test[:5]),
        ...                 proj_dim=None, progress=False)           # doctest: +SKIP
        >>> r.scores.shape                                            # doctest: +SKIP
        torch.Size([1000, 5])
    """
    trak = TRAK(
        models,
        output_fn=output_fn,
        config=config,
        device=device,
        feature_dir=feature_dir,
        preprocess=preprocess,
        progress=progress,
        output=output,
        cancel=cancel,
        on_progress=on_progress,
        **overrides,
    )
    try:
        return trak.featurize(train).score(targets, reduce=reduce, soft_threshold=soft_threshold)
    finally:
        trak.close()


@dataclass
class TRAKResult(Result):
    """TRAK scores.

    Attributes:
        scores: [n_train, n_targets] (or [n_train] when reduced over targets); positive
            means that the training sample pushed the target's output up.
        out_to_loss: [n_train] mean Q term (1 - p(correct)) over checkpoints.
        grad_dims: number of differentiated parameters per checkpoint.
        grad_params: names of the differentiated parameters (first checkpoint).
    """

    scores: torch.Tensor
    out_to_loss: torch.Tensor
    n_models: int = 1
    proj_dim: int | None = None
    proj_kind: str = "rademacher"
    lam: float = 0.0
    lam_relative: bool = True
    reduce: str | None = None
    soft_threshold: float | None = None
    n_targets: int = 0
    output: str = "margin"
    grad_dims: list = field(default_factory=list)
    grad_params: list = field(default_factory=list)
    seed: int = 0

    def _per_sample(self) -> torch.Tensor:
        s = torch.as_tensor(self.scores)
        return s if s.ndim == 1 else s.mean(dim=1)

    def top(self, k: int = 100, target: int | None = None) -> np.ndarray:
        """Indices of the k training samples with the highest score (for one target, or
        the mean over targets)."""
        s = torch.as_tensor(self.scores)
        s = s[:, target] if target is not None and s.ndim == 2 else self._per_sample()
        return torch.argsort(s, descending=True)[: int(k)].numpy()

    def to_frame(self) -> pd.DataFrame:
        """One row per training sample: score (mean over targets), rank (1 = highest), Q."""
        s = self._per_sample().numpy()
        order = np.argsort(-s, kind="stable")
        rank = np.empty(len(s), dtype=int)
        rank[order] = np.arange(1, len(s) + 1)
        return pd.DataFrame(
            {
                "sample": np.arange(len(s)),
                "score": s,
                "rank": rank,
                "out_to_loss": torch.as_tensor(self.out_to_loss).numpy(),
            }
        )

    def plot(self):
        """Bokeh histogram of the (target-averaged) scores."""
        return histogram({"all": self._per_sample().numpy()}, "TRAK scores")
