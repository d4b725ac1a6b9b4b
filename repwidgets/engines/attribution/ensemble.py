"""The ensemble of models that probes and TRAK average over, and a session per model.

By default the ensemble is the session's model plus default models trained on the
session's data with other seeds (``rw.models.ensemble``, cached); a user may pass
checkpoints of their own model instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from repwidgets.session import check_layer_names

if TYPE_CHECKING:  # pragma: no cover
    from repwidgets.session import Session

__all__ = ["check_layers", "ensemble", "model_sessions", "same_weights"]


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    """Whether two models hold identical state (same keys, shapes and values)."""
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys():
        return False
    return all(sa[k].shape == sb[k].shape and torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def ensemble(
    sess: Session,
    n_models: int,
    models: nn.Module | Sequence[nn.Module] | None,
    seeds: Sequence[int] | None,
    progress: bool,
) -> list[nn.Module]:
    """``models`` when given; else the session's model first, then distinct default
    models trained with other seeds (``seeds``, default 1, 2, ...) up to ``n_models``."""
    if models is not None:
        models = [models] if isinstance(models, nn.Module) else list(models)
        if not models or not all(isinstance(m, nn.Module) for m in models):
            raise TypeError("models must be an nn.Module or a non-empty list of nn.Modules.")
        return models
    if int(n_models) < 1:
        raise ValueError(f"n_models must be at least 1, got {n_models}.")
    out = [sess.model]
    if n_models == 1:
        return out
    from repwidgets import models as zoo

    candidates = list(seeds) if seeds is not None else list(range(1, 2 * n_models + 1))
    for seed in candidates:
        if len(out) == n_models:
            break
        extra = zoo.ensemble(sess.data, seeds=[int(seed)], progress=progress)[0]
        if not any(same_weights(extra, m) for m in out):
            out.append(extra)
    if len(out) < n_models:
        raise ValueError(
            f"Could only gather {len(out)} distinct models for n_models={n_models}; pass more "
            "seeds, or pass models=[...] yourself."
        )
    return out


def model_sessions(sess: Session, models: list[nn.Module]) -> list[Session]:
    """One session per model, over the session's data and settings (preprocessing, how
    logits are read, neuron axes; ``sess`` itself for its own model)."""
    from repwidgets.session import Session

    out = []
    for m in models:
        if m is sess.model:
            out.append(sess)
            continue
        other = Session(
            m,
            sess.data,
            device=sess.device,
            batch_size=sess.batch_size,
            memory_budget_mb=sess.memory_budget / 2**20,
            preprocess=sess.preprocess,
            progress=sess.progress,
            output=sess.output,
            neuron_axis=sess.neuron_axis,
        )
        out.append(other)
    return out


def check_layers(sessions: list[Session], layers: list[str]) -> None:
    """Every model of the ensemble has every layer; else an error naming the model."""
    for k, s in enumerate(sessions):
        try:
            check_layer_names(s.model, layers)
        except ValueError as err:
            which = "the session's model" if k == 0 else f"ensemble model {k}"
            raise ValueError(
                f"In {which}: {err} If the ensemble's default models do not match your "
                "architecture, pass models=[...] (checkpoints of your own model)."
            ) from None
