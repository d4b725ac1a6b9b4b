"""Checked inputs of concept discovery: activations, labels, relevance, concept labels.

Everything is checked before any work, with a message that names the argument and the
fix (shapes, NaN columns, lengths, missing predictions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["Inputs", "as_float_matrix", "as_index_vector", "check_inputs"]


def as_float_matrix(X, name: str = "X") -> Tensor:
    if isinstance(X, np.ndarray):
        X = torch.from_numpy(X)
    if not isinstance(X, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(X).__name__}.")
    if X.ndim > 2:
        raise ValueError(
            f"{name} has shape {tuple(X.shape)}: expected pooled activations [n, C]. Pool "
            "the positions (or tokens) on the layer's neuron axis first: "
            "sess.activations(layer, pool='mean'), or "
            f"repwidgets.layouts.Layout(axis, {X.ndim}).pool({name}, 'mean') with axis 1 "
            f"for [n, C, H, W] (that is {name}.mean(dim=(2, 3))), {X.ndim - 1} (the last "
            "dim) for tokens or channels-last."
        )
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix [n, C]; got shape {tuple(X.shape)}.")
    if not X.is_floating_point():
        X = X.float()
    bad = ~torch.isfinite(X)
    if bool(bad.any()):
        cols = torch.nonzero(bad.any(dim=0)).flatten().tolist()
        raise ValueError(
            f"{name} contains NaN or infinite values in columns (neurons) {cols[:10]}"
            f"{' ...' if len(cols) > 10 else ''}. Check the layer or drop those neurons."
        )
    return X


def as_index_vector(values, n: int, name: str) -> Tensor | None:
    if values is None:
        return None
    t = torch.as_tensor(values).detach().cpu().reshape(-1)
    if t.is_floating_point():
        raise TypeError(f"{name} must hold integer class indices, got dtype {t.dtype}.")
    if t.shape[0] != n:
        raise ValueError(f"{name} has {t.shape[0]} entries but X has {n} samples.")
    return t.long().clone()


@dataclass
class Inputs:
    """What :func:`discover_activations` works on, checked (tensors as described there)."""

    X: Tensor
    relevance: Tensor | None
    predictions: Tensor | None
    labels: Tensor | None
    concepts: Tensor | None
    concept_names: list[str]
    class_names: list[str]
    n_classes: int


def check_inputs(
    X,
    *,
    relevance=None,
    grads=None,
    predictions=None,
    labels=None,
    concepts=None,
    concept_names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    n_classes: int | None = None,
) -> Inputs:
    """Check and normalise the inputs of :func:`discover_activations`.

    ``grads`` become relevance ``grads * relu(X)``; labels and predictions become int64
    CPU vectors; concepts a bool CPU matrix; the class count comes from ``class_names``
    or the largest label or prediction when not given.
    """
    X = as_float_matrix(X)
    n = X.shape[0]
    predictions = as_index_vector(predictions, n, "predictions")
    labels = as_index_vector(labels, n, "labels")
    relevance = _relevance(X, relevance, grads, predictions)
    names: list[str] = []
    if concepts is not None:
        concepts, names = _concept_table(concepts, concept_names, n)
    if n_classes is None:
        known = [t for t in (labels, predictions) if t is not None]
        if class_names is not None:
            n_classes = len(class_names)
        elif known:
            n_classes = int(max(int(t.max()) for t in known)) + 1
        else:
            n_classes = 0
    classes = list(class_names) if class_names is not None else [str(k) for k in range(n_classes)]
    return Inputs(X, relevance, predictions, labels, concepts, names, classes, int(n_classes))


def _relevance(X: Tensor, relevance, grads, predictions: Tensor | None) -> Tensor | None:
    """Relevance [n, C] on X's device (from ``grads`` when given), or None."""
    if relevance is not None and grads is not None:
        raise ValueError("Pass either relevance or grads, not both.")
    if grads is not None:
        grads = as_float_matrix(grads, "grads").to(X.device)
        if grads.shape != X.shape:
            raise ValueError(f"grads has shape {tuple(grads.shape)} but X has {tuple(X.shape)}.")
        relevance = grads * X.clamp_min(0)
    if relevance is None:
        return None
    relevance = as_float_matrix(relevance, "relevance").to(X.device)
    if relevance.shape != X.shape:
        raise ValueError(
            f"relevance has shape {tuple(relevance.shape)} but X has {tuple(X.shape)}."
        )
    if predictions is None:
        raise ValueError(
            "relevance z-scores contrast samples predicted as each class: pass predictions "
            "(e.g. logits.argmax(1))."
        )
    return relevance


def _concept_table(concepts, concept_names, n: int) -> tuple[Tensor, list[str]]:
    """Concept labels as bool [n, K] on the CPU, with K names."""
    concepts = torch.as_tensor(concepts).detach().cpu().bool()
    if concepts.ndim != 2 or concepts.shape[0] != n:
        raise ValueError(
            f"concepts must be a boolean matrix [n={n}, K]; got shape {tuple(concepts.shape)}."
        )
    names = list(concept_names or [f"c{i}" for i in range(concepts.shape[1])])
    if len(names) != concepts.shape[1]:
        raise ValueError(
            f"concepts has {concepts.shape[1]} columns but {len(names)} concept_names."
        )
    return concepts, names
