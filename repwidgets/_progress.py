"""One switchable progress bar for every long loop in the package."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_bar(
    iterable: Iterable[T], total: int | None = None, desc: str = "", enable: bool = True
) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar (a notebook bar in Jupyter) unless ``enable`` is False."""
    if not enable:
        return iter(iterable)
    return iter(tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True))
