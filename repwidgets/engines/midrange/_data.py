"""What the mid-range engine reads from a session: names, identity, checked splits."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from repwidgets.session import Session


def dataset_identity(sess: Session) -> dict:
    """``{"name", "fingerprint"}`` of the session's data (recorded in curation files)."""
    config = getattr(sess.data, "config", None) or {"name": sess.data.name}
    digest = hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()
    return {"name": str(sess.data.name), "fingerprint": digest[:16]}


def group_names(sess: Session, n_groups: int | None = None) -> list[str]:
    """The data's group names, padded with ``group <g>`` up to ``n_groups``."""
    names = list(getattr(sess.data, "group_names", None) or [])
    if n_groups is not None and len(names) < n_groups:
        names += [f"group {g}" for g in range(len(names), n_groups)]
    return names


def class_index(sess: Session, index: int | str) -> int:
    """A class given by position or by name, as its position."""
    names = sess.class_names
    if isinstance(index, str):
        if index not in names:
            raise ValueError(f"Unknown class {index!r}; classes are {names}.")
        return names.index(index)
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"class_index must be an int or a class name; got {index!r}.")
    return int(index)


def check_split(sess: Session, split: str) -> None:
    if split not in sess.data.splits:
        raise ValueError(f"Unknown split {split!r}; available splits: {list(sess.data.splits)}.")


def features(sess: Session, split: str) -> torch.Tensor:
    """The frozen penultimate features of ``split``, [n, D]."""
    check_split(sess, split)
    return sess.penultimate(split)


def eval_groups(sess: Session, split: str) -> torch.Tensor:
    """The groups accuracy is reported over: the split's groups, else its classes. [n]"""
    groups = sess.groups(split)
    return sess.targets(split) if groups is None else groups
