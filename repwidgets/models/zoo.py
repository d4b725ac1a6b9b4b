"""Cached trained checkpoints: the demo model, ensembles, and training on demand.

A checkpoint is trained once and stored in ``cache_dir()/"models"/<name>-<key>.pt``, where
``key`` hashes the data configuration, the training configuration and the model
configuration. The file holds the state_dict, the training history and the configs
(tensors and plain Python values only), is written atomically (temporary file, then
``os.replace``) and is read with ``torch.load(weights_only=True)``, so no code is
unpickled.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import atomic_write
from ..cache import cache_dir
from ..datasets.bundle import DataBundle, as_bundle
from .cnn import SmallCNN
from .train import TrainHistory, train_model

__all__ = [
    "DEMO_MODEL",
    "DEMO_TRAIN",
    "checkpoint_path",
    "demo_model",
    "demo_model_history",
    "ensemble",
    "load_or_train",
]

#: Bumped when the training code changes in a way that changes the weights.
ZOO_VERSION = 1

#: Model configuration of the demo model (arguments of SmallCNN besides the class count).
DEMO_MODEL: dict[str, Any] = {"widths": [32, 64, 128, 128], "batchnorm": True}

#: Training configuration of the demo model (arguments of train_model).
DEMO_TRAIN: dict[str, Any] = {"epochs": 3, "lr": 2e-3, "batch_size": 64, "weight_decay": 1e-4}


def _default_data() -> DataBundle:
    from ..datasets.shapes import shapes

    return shapes()


def _input_channels(data: DataBundle) -> int:
    x = data.images([0], split="train") if len(data.train) else None  # type: ignore[arg-type]
    return int(x.shape[1]) if x is not None else 3


def _cacheable(data: DataBundle) -> bool:
    """Only data fully described by its config (the generated datasets) can key a cache."""
    return data.config.get("name") in ("shapes", "digits") and "version" in data.config


def _key(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def checkpoint_path(
    data: DataBundle,
    seed: int = 0,
    model_config: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
) -> Path:
    """Where the checkpoint for this (data, seed, model, training) combination lives."""
    model_cfg = {**DEMO_MODEL, **(model_config or {})}
    train_cfg = {**DEMO_TRAIN, **(train_config or {}), "seed": int(seed)}
    payload = {
        "zoo_version": ZOO_VERSION,
        "data": data.config,
        "model": model_cfg,
        "train": train_cfg,
    }
    return cache_dir("models") / f"{data.name}-{_key(payload)}.pt"


def _save_atomic(obj: dict[str, Any], path: Path) -> None:
    """``torch.save`` through :func:`repwidgets.atomic.atomic_write` (no half-written file)."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


def _build(data: DataBundle, model_cfg: dict[str, Any]) -> SmallCNN:
    cfg = dict(model_cfg)
    cfg.setdefault("in_channels", _input_channels(data))
    return SmallCNN(data.n_classes, **cfg)


def load_or_train(
    data: DataBundle | Any = None,
    seed: int = 0,
    *,
    model_config: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
    progress: bool = True,
    cache: bool | None = None,
    device: str | torch.device | None = "auto",
) -> tuple[nn.Module, TrainHistory]:
    """A SmallCNN trained on ``data``'s train split, from the cache when possible.

    Args:
        data: a DataBundle (or anything :func:`~repwidgets.datasets.as_bundle` accepts);
            None means ``repwidgets.datasets.shapes()``.
        seed: seeds the weight initialisation and the shuffling.
        model_config: SmallCNN arguments overriding :data:`DEMO_MODEL`.
        train_config: train_model arguments overriding :data:`DEMO_TRAIN`.
        cache: read/write the checkpoint cache. None: only for generated data (shapes,
            digits), whose config describes it fully; user data is trained every time.
        device: where to train ("auto": CUDA when available). The model is returned on
            the CPU in eval mode.

    Returns:
        (model, history).

    Example:
        >>> model, hist = load_or_train(repwidgets.datasets.shapes(), seed=1)  # doctest: +SKIP
        >>> hist.accuracy[-1]  # doctest: +SKIP
        0.97
    """
    bundle = _default_data() if data is None else as_bundle(data)
    model_cfg = {**DEMO_MODEL, **(model_config or {})}
    train_cfg = {**DEMO_TRAIN, **(train_config or {})}
    unknown = set(train_cfg) - {
        "epochs", "lr", "batch_size", "weight_decay", "warmup", "log_every"
    }  # fmt: skip
    if unknown:
        raise ValueError(
            f"Unknown training options {sorted(unknown)}; use epochs, lr, batch_size, "
            "weight_decay, warmup, log_every."
        )
    use_cache = _cacheable(bundle) if cache is None else bool(cache)
    path = checkpoint_path(bundle, seed, model_cfg, train_cfg) if use_cache else None
    if path is None:
        return _train(bundle, seed, model_cfg, train_cfg, progress, device)
    cached = _load_checkpoint(bundle, path, model_cfg)
    if cached is not None:
        return cached
    with _training_lock(path):  # another process may be training the same model
        cached = _load_checkpoint(bundle, path, model_cfg)
        if cached is not None:
            return cached
        model, history = _train(bundle, seed, model_cfg, train_cfg, progress, device)
        _save_atomic(
            {
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "history": history.to_dict(),
                "model_config": {**model_cfg, "in_channels": model.in_channels},
                "train_config": {**train_cfg, "seed": int(seed)},
                "data_config": bundle.config,
            },
            path,
        )
    return model, history


def _train(bundle, seed, model_cfg, train_cfg, progress, device) -> tuple[nn.Module, TrainHistory]:
    torch.manual_seed(int(seed))
    model = _build(bundle, model_cfg)
    history = train_model(
        model, bundle, seed=int(seed), progress=progress, device=device, **train_cfg
    )
    return model.to("cpu").eval(), history


def _load_checkpoint(
    bundle: DataBundle, path: Path, model_cfg: dict[str, Any]
) -> tuple[nn.Module, TrainHistory] | None:
    """The cached model and history, or None when there is none (or it is unreadable)."""
    if not path.exists():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        model = _build(bundle, ckpt.get("model_config", model_cfg))
        model.load_state_dict(ckpt["state_dict"])
        model.eval()
        return model, TrainHistory.from_dict(ckpt.get("history", {}))
    except Exception as err:  # a corrupt or stale file: train again
        warnings.warn(f"Ignoring unreadable checkpoint {path} ({err}); retraining.", stacklevel=3)
        return None


@contextmanager
def _training_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock beside ``path`` (POSIX; elsewhere no lock is taken)."""
    try:
        import fcntl
    except ImportError:  # Windows: two processes may both train; the rename stays atomic
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def demo_model(
    data: DataBundle | Any = None, seed: int = 0, progress: bool = True, **kwargs: Any
) -> nn.Module:
    """The default model: a SmallCNN trained on ``data`` (default ``shapes()``), cached.

    Trained once per (data config, seed, model config, training config), then loaded from
    ``cache_dir()/"models"``. On the default shapes data it learns the shapes and also the
    planted watermark shortcut, so its worst-group test accuracy is clearly below its
    accuracy: something for the methods to find. Extra keyword arguments go to
    :func:`load_or_train`.

    Example:
        >>> model = demo_model()  # doctest: +SKIP
        >>> model.features.conv3  # doctest: +SKIP
        Conv2d(64, 128, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
    """
    return load_or_train(data, seed, progress=progress, **kwargs)[0]


def demo_model_history(
    data: DataBundle | Any = None, seed: int = 0, progress: bool = True, **kwargs: Any
) -> TrainHistory:
    """The training history (per-epoch loss and accuracy) of :func:`demo_model`."""
    return load_or_train(data, seed, progress=progress, **kwargs)[1]


def ensemble(
    data: DataBundle | Any = None,
    seeds: Iterable[int] = (0, 1, 2, 3),
    progress: bool = True,
    **kwargs: Any,
) -> list[nn.Module]:
    """Independently trained demo models, one per seed (each cached on its own).

    Used by training-data attribution (TRAK averages over several checkpoints).

    Example:
        >>> models = ensemble(seeds=(0, 1))  # doctest: +SKIP
        >>> len(models)  # doctest: +SKIP
        2
    """
    bundle = _default_data() if data is None else as_bundle(data)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("ensemble needs at least one seed, e.g. seeds=(0, 1, 2, 3).")
    return [demo_model(bundle, s, progress=progress, **kwargs) for s in seeds]
