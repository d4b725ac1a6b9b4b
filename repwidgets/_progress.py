"""One switchable progress bar for every long loop in the package.

Bars come from ``tqdm.auto``: a widget bar in Jupyter (with ipywidgets installed),
a text bar in a terminal. Loops that run over an iterable use :func:`progress_bar`;
loops that advance by more than one item at a time (neurons per batch, optimisation
steps per chunk) use :func:`progress_counter` and call ``update(k)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_bar(
    iterable: Iterable[T],
    total: int | None = None,
    desc: str = "",
    enable: bool = True,
    unit: str = "it",
) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar (a notebook bar in Jupyter) unless ``enable`` is False.

    Example:
        >>> list(progress_bar(range(3), enable=False))
        [0, 1, 2]
    """
    if not enable:
        return iter(iterable)
    return iter(tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True))


def progress_counter(total: int, desc: str = "", enable: bool = True, unit: str = "it"):
    """A bar of ``total`` units advanced by hand with ``update(k)``; use it in a ``with``.

    A disabled counter accepts the same calls and draws nothing.

    Example:
        >>> with progress_counter(10, "neurons", enable=False) as bar:
        ...     bar.update(4)
        ...     bar.update(6)
    """
    return tqdm(
        total=int(total),
        desc=desc,
        unit=unit,
        disable=not enable,
        leave=False,
        dynamic_ncols=True,
    )
