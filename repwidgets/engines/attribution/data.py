"""Datasets for attribution: (input, label) pairs from tensors, relabelled datasets, loaders.

TRAK's training set and targets are any map-style Dataset of ``(input, label)`` items,
or a pair ``(X, y)`` of tensors; concept attribution relabels the session's images with
a concept's 0/1 labels (:class:`Relabeled`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["PairDataset", "Relabeled", "as_dataset", "collate", "loader"]


class PairDataset(Dataset):
    """(X[i], y[i]) over two tensors of the same length."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor) -> None:
        self.X, self.y = X, y

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.X[i], self.y[i]

    def __getitems__(self, idx: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        idx = torch.as_tensor(list(idx), dtype=torch.long)
        xs, ys = self.X[idx], self.y[idx]
        return [(xs[k], ys[k]) for k in range(len(idx))]


class Relabeled(Dataset):
    """A dataset's images with other labels (e.g. a concept's 0/1 instead of the class).

    ``indices`` (optional) picks the base samples, in order; ``labels`` has one entry
    per picked sample.
    """

    def __init__(
        self, base: Dataset, labels: torch.Tensor, indices: Sequence[int] | None = None
    ) -> None:
        self.base = base
        self.labels = torch.as_tensor(labels).long().reshape(-1)
        self.indices = None if indices is None else [int(i) for i in indices]
        n = len(base) if self.indices is None else len(self.indices)
        if self.labels.numel() != n:
            raise ValueError(f"{self.labels.numel()} labels for {n} samples.")

    def __len__(self) -> int:
        return int(self.labels.numel())

    def _base_index(self, i: int) -> int:
        return i if self.indices is None else self.indices[i]

    def __getitem__(self, i: int) -> tuple[Any, torch.Tensor]:
        return self.base[self._base_index(i)][0], self.labels[i]

    def __getitems__(self, idx: Sequence[int]) -> list[tuple[Any, torch.Tensor]]:
        idx = list(idx)
        base_idx = [self._base_index(i) for i in idx]
        if hasattr(self.base, "__getitems__"):
            items = self.base.__getitems__(base_idx)
        else:
            items = [self.base[i] for i in base_idx]
        return [(item[0], self.labels[i]) for item, i in zip(items, idx)]


def as_dataset(data: Any, what: str) -> Dataset:
    """``data`` as a Dataset: a Dataset itself, or a pair ``(X, y)`` of equal length.

    ``what`` names the set in errors ("training", "target", ...).
    """
    if isinstance(data, Dataset):
        if len(data) == 0:
            raise ValueError(f"The {what} set is empty.")
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        X, y = (torch.as_tensor(v) for v in data)
        if X.shape[0] != y.shape[0]:
            raise ValueError(
                f"The {what} pair (X, y) has different lengths: X has {X.shape[0]} samples, "
                f"y has {y.shape[0]}."
            )
        if X.shape[0] == 0:
            raise ValueError(f"The {what} set is empty.")
        return PairDataset(X, y)
    raise TypeError(
        f"The {what} set must be a torch Dataset of (input, label) items or a pair (X, y) of "
        f"tensors, got {type(data).__name__}."
    )


def collate(items: Sequence[tuple[Any, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch ``(x [B, ...], y [B])`` of ``(input, label)`` items."""
    xs = torch.stack([torch.as_tensor(it[0]) for it in items])
    ys = torch.as_tensor(
        np.asarray([int(it[1]) if not torch.is_tensor(it[1]) else it[1].item() for it in items])
    )
    return xs, ys


def loader(dataset: Dataset, batch_size: int) -> DataLoader:
    """Batches of ``dataset`` in order (no shuffling: rows map to sample indices)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
