"""One switchable progress bar for every long loop in the package.

In Jupyter the bar is ``tqdm.auto``'s widget bar; anywhere else it is plain ``tqdm``
drawn on one line (``position=0``, ASCII), so a log file or a captured stream never
gets cursor-movement escape sequences from nested bars. Loops that run over an
iterable use :func:`progress_bar`; loops that advance by more than one item at a time
(neurons per batch, optimisation steps per chunk) use :func:`progress_counter` and
call ``update(k)``. Code that calls into a part of the package which decides on its
own whether to draw a bar (the data bundle reading labels) wraps the call in
:func:`bars_enabled` so that ``progress=False`` silences it too.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

from tqdm.auto import tqdm as notebook_tqdm
from tqdm.std import tqdm as plain_tqdm

T = TypeVar("T")

#: False inside ``bars_enabled(False)``: every bar made there is disabled.
_ENABLED: ContextVar[bool] = ContextVar("repwidgets_progress_enabled", default=True)


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where a widget bar renders), False in a terminal,
    a script, a log or a plain IPython shell."""
    shell = sys.modules.get("IPython")
    get = getattr(shell, "get_ipython", None)
    ip = get() if callable(get) else None
    return ip is not None and "IPKernelApp" in getattr(ip, "config", {})


def tqdm(*args: Any, **kwargs: Any):
    """A bar of the right kind: the notebook bar in Jupyter, plain tqdm elsewhere.

    Outside a notebook the bar stays on its own line (``position=0``) and uses ASCII
    blocks: no escape sequences move the cursor, so a redirected stream stays readable.
    """
    if in_notebook():
        return notebook_tqdm(*args, **kwargs)
    kwargs.setdefault("position", 0)
    kwargs.setdefault("ascii", True)
    return plain_tqdm(*args, **kwargs)


@contextlib.contextmanager
def bars_enabled(enable: bool) -> Iterator[None]:
    """Within the block, ``enable=False`` disables every bar made by this module.

    Example:
        >>> with bars_enabled(False):
        ...     list(progress_bar(range(3)))   # draws nothing
        [0, 1, 2]
    """
    token = _ENABLED.set(_ENABLED.get() and bool(enable))
    try:
        yield
    finally:
        _ENABLED.reset(token)


def progress_bar(
    iterable: Iterable[T],
    total: int | None = None,
    desc: str = "",
    enable: bool = True,
    unit: str = "it",
) -> Iterator[T]:
    """Wrap ``iterable`` in a bar (a notebook bar in Jupyter) unless ``enable`` is False
    or the call runs inside ``bars_enabled(False)``.

    Example:
        >>> list(progress_bar(range(3), enable=False))
        [0, 1, 2]
    """
    if not (enable and _ENABLED.get()):
        return iter(iterable)
    return iter(tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True))


def progress_counter(total: int, desc: str = "", enable: bool = True, unit: str = "it"):
    """A bar of ``total`` units advanced by hand with ``update(k)``; use it in a ``with``.

    A disabled counter (``enable=False`` or inside ``bars_enabled(False)``) accepts the
    same calls and draws nothing.

    Example:
        >>> with progress_counter(10, "neurons", enable=False) as bar:
        ...     bar.update(4)
        ...     bar.update(6)
    """
    return tqdm(
        total=int(total),
        desc=desc,
        unit=unit,
        disable=not (enable and _ENABLED.get()),
        leave=False,
        dynamic_ncols=True,
    )
