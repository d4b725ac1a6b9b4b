"""Where repwidgets keeps what it computes once: trained checkpoints, spilled activations."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "REPWIDGETS_CACHE"


def cache_dir(*parts: str) -> Path:
    """Return (and create) the cache folder, or a sub-folder of it.

    The location is ``$REPWIDGETS_CACHE`` when set, else ``~/.cache/repwidgets``
    (``$XDG_CACHE_HOME/repwidgets`` when that is set).

    Example:
        >>> cache_dir("models")  # doctest: +SKIP
        PosixPath('/home/me/.cache/repwidgets/models')
    """
    root = os.environ.get(ENV_VAR)
    if root:
        base = Path(root).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "repwidgets"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
