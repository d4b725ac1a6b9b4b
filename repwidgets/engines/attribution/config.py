"""The settings of TRAK and of concept attribution, as frozen configs.

:class:`TRAKConfig` holds what :class:`~repwidgets.engines.attribution.trak.TRAK`
computes with (projection, ridge, batching); :class:`ConceptAttributionConfig` adds
what concept attribution chooses (ensemble, probes, targets, training subset). A
result's ``params`` is its config's ``to_dict()``.

Example:
    >>> cfg = ConceptAttributionConfig(n_models=1, proj_dim=512)
    >>> cfg.replace(lam=0.1).lam
    0.1
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from repwidgets.config import Config
from repwidgets.engines.attribution.featurize import GradWrt

__all__ = ["ConceptAttributionConfig", "TRAKConfig"]


def _set(cfg: Config, name: str, value: Any) -> None:
    object.__setattr__(cfg, name, value)


def _int_tuple(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    return tuple(int(v) for v in torch.as_tensor(value).reshape(-1).tolist())


def _grad_wrt(value: GradWrt) -> GradWrt:
    if value is None or callable(value) or isinstance(value, str):
        return value
    return tuple(str(v) for v in value)


def _jsonable_grad_wrt(values: dict[str, Any], grad_wrt: GradWrt) -> dict[str, Any]:
    """A callable ``grad_wrt`` is recorded by name (it cannot be restored from a file)."""
    if callable(grad_wrt):
        values["grad_wrt"] = f"<callable {getattr(grad_wrt, '__name__', 'grad_wrt')}>"
    return values


def _check_trak(cfg: Any) -> None:
    if cfg.proj_dim is not None and int(cfg.proj_dim) < 1:
        raise ValueError(f"proj_dim must be a positive integer or None, got {cfg.proj_dim}.")
    if cfg.lam < 0:
        raise ValueError(f"lam must be >= 0, got {cfg.lam}.")
    if int(cfg.batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {cfg.batch_size}.")
    if not float(cfg.proj_chunk_mb) > 0:
        raise ValueError(f"proj_chunk_mb must be positive (MiB), got {cfg.proj_chunk_mb}.")
    if cfg.proj_kind not in ("rademacher", "gaussian"):
        raise ValueError(f"proj_kind must be 'rademacher' or 'gaussian', got {cfg.proj_kind!r}.")


@dataclasses.dataclass(frozen=True)
class TRAKConfig(Config):
    """TRAK's settings (see :class:`~repwidgets.engines.attribution.trak.TRAK`).

    Attributes:
        proj_dim: p, the projected feature size; None for exact gradients.
        proj_kind: ``"rademacher"`` or ``"gaussian"`` JL matrix.
        lam: ridge term; relative (times the mean eigenvalue of ``Phi^T Phi``) when
            ``lam_relative``.
        grad_wrt: parameter name prefixes (or a predicate) to differentiate; None: all.
        seed: projection seed; checkpoint c uses ``seed + c``.
        batch_size: samples per vectorised gradient pass.
        memory_budget_mb: bound on the per-sample gradients held at once.
        kernel_dtype: ``"float64"`` or ``"float32"`` for the kernel solve.
        chunk_rows: rows per memory-mapped feature file.
        proj_cache_mb: memory for the generated projection blocks.
        proj_chunk_mb: working memory of one step of the projection: the slice of the
            matrix (parameter rows) and of the gradients (samples) multiplied at once
            (see :class:`~repwidgets.engines.projection.JLProjection`); the result does
            not depend on it.
    """

    proj_dim: int | None = 1024
    proj_kind: str = "rademacher"
    lam: float = 1.0
    lam_relative: bool = True
    grad_wrt: Any = None
    seed: int = 0
    batch_size: int = 64
    memory_budget_mb: float = 1024.0
    kernel_dtype: str = "float64"
    chunk_rows: int = 16384
    proj_cache_mb: float = 256.0
    proj_chunk_mb: float = 64.0

    def __post_init__(self) -> None:
        _check_trak(self)
        _set(self, "grad_wrt", _grad_wrt(self.grad_wrt))
        if isinstance(self.kernel_dtype, torch.dtype):
            _set(self, "kernel_dtype", str(self.kernel_dtype).removeprefix("torch."))

    def to_dict(self) -> dict[str, Any]:
        return _jsonable_grad_wrt(super().to_dict(), self.grad_wrt)


@dataclasses.dataclass(frozen=True)
class ConceptAttributionConfig(Config):
    """Concept attribution's settings (see
    :func:`~repwidgets.engines.attribution.concept.concept_attribution`).

    Attributes:
        n_models: ensemble size (the session's model plus default models, other seeds).
        proj_dim, proj_kind, lam, lam_relative, grad_wrt, soft_threshold, batch_size,
            seed: TRAK's options (``seed`` also picks the targets and the training subset).
        seeds: the seeds of the extra default models (default 1, 2, ...).
        layers: layers to probe (default: every conv/linear block after its activation).
        target_split: the split the targets come from.
        targets: target indices in ``target_split`` (default: the concept's carriers).
        n_targets: at most this many default targets (seeded random choice).
        max_train, train_indices: attribute over a random subset (or these indices) of
            the training split instead of all of it.
        reduce: ``"mean"`` or ``"sum"`` over targets.
        out_to_loss: ``"none"`` (Q = 1) or ``"probe"`` (the probe's Q term).
        pool: pooling of the probes' activations over positions or tokens (``"mean"``,
            ``"max"``, or ``"cls"``: a token layer's class token).
        neuron_axis: the layers' neuron axis where the session cannot tell it (None: the
            session's layout of each layer).
        proj_chunk_mb: see :class:`TRAKConfig`.
        fit_split: split the probes are fitted on (default "val" when there is one).
        feature_dir: folder for the memory-mapped features (default: a temporary one).
    """

    n_models: int = 4
    proj_dim: int | None = 1024
    seeds: tuple[int, ...] | None = None
    layers: tuple[str, ...] | None = None
    target_split: str = "test"
    targets: tuple[int, ...] | None = None
    n_targets: int | None = 256
    max_train: int | None = None
    train_indices: tuple[int, ...] | None = None
    reduce: str = "mean"
    lam: float = 1.0
    lam_relative: bool = True
    proj_kind: str = "rademacher"
    soft_threshold: float | None = None
    grad_wrt: Any = None
    out_to_loss: str = "none"
    pool: str = "mean"
    neuron_axis: int | None = None
    fit_split: str | None = None
    batch_size: int = 64
    proj_chunk_mb: float = 64.0
    seed: int = 0
    feature_dir: str | None = None

    def __post_init__(self) -> None:
        if self.reduce not in ("mean", "sum"):
            raise ValueError(f"reduce must be 'mean' or 'sum', got {self.reduce!r}.")
        if self.out_to_loss not in ("none", "probe"):
            raise ValueError(f"out_to_loss must be 'none' or 'probe', got {self.out_to_loss!r}.")
        for name in ("seeds", "targets", "train_indices"):
            _set(self, name, _int_tuple(getattr(self, name)))
        if self.layers is not None:
            _set(self, "layers", tuple(str(x) for x in self.layers))
        _set(self, "grad_wrt", _grad_wrt(self.grad_wrt))
        if isinstance(self.feature_dir, Path):
            _set(self, "feature_dir", str(self.feature_dir))

    def to_dict(self) -> dict[str, Any]:
        return _jsonable_grad_wrt(super().to_dict(), self.grad_wrt)

    def trak(self) -> TRAKConfig:
        """The TRAK settings among these."""
        names = set(TRAKConfig.field_names())
        return TRAKConfig(**{k: getattr(self, k) for k in self.field_names() if k in names})
