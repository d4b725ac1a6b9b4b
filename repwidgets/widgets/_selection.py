"""Validation of a widget's ``selected`` trait, shared by every widget that has one."""

from __future__ import annotations

from collections.abc import Container, Iterable
from typing import Any

import numpy as np
import traitlets


def checked_selection(
    values: Iterable[Any], known: Container[int] | None, where: str, hint: str = ""
) -> list[int]:
    """The selection as unique ints in their first order, or a TraitError naming the bad ones.

    Args:
        values: the proposed selection.
        known: the ids that may be selected (None: not yet known, accept any int).
        where: what the ids must be, for the message, e.g. "rows of this heatmap".
        hint: a sentence saying which ids are valid.

    Example:
        >>> checked_selection([3, 1, 3], range(5), "points")
        [3, 1]
    """
    out = []
    for i in values:
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise traitlets.TraitError(f"selected must hold ints; got {type(i).__name__} {i!r}.")
        out.append(int(i))
    if known is not None:
        unknown = [i for i in out if i not in known]
        if unknown:
            raise traitlets.TraitError(
                f"selected contains ids that are not {where}: {unknown[:10]}. {hint}".rstrip()
            )
    return list(dict.fromkeys(out))
