"""repwidgets: explore what a trained PyTorch model's representations have learned.

Example:
    >>> import repwidgets as rw
    >>> sess = rw.demo_session()                       # doctest: +SKIP
    >>> r = rw.invert.explain(sess, "features.conv3")  # doctest: +SKIP
    >>> r.to_frame().head()                            # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Submodules load on first use so that `import repwidgets` stays quick.
_LAZY = {
    "datasets": "repwidgets.datasets",
    "models": "repwidgets.models",
    "widgets": "repwidgets.widgets",
    "views": "repwidgets.views",
    "demo": "repwidgets.demo",
    "invert": "repwidgets.engines.invert",
    "dora": "repwidgets.engines.dora",
    "concepts": "repwidgets.engines.concepts",
    "midrange": "repwidgets.engines.midrange",
    "attribution": "repwidgets.engines.attribution",
    "plots": "repwidgets.plots",
    "report": "repwidgets.report",
}
_LAZY_ATTRS = {
    "Session": ("repwidgets.session", "Session"),
    "demo_session": ("repwidgets.session", "demo_session"),
    "Report": ("repwidgets.report", "Report"),
    "explore": ("repwidgets.views.explorer", "explore"),
    "load_ipython_extension": ("repwidgets.magics", "load_ipython_extension"),
    "unload_ipython_extension": ("repwidgets.magics", "unload_ipython_extension"),
}

__all__ = sorted([*_LAZY, *_LAZY_ATTRS])

if TYPE_CHECKING:  # pragma: no cover
    from repwidgets import datasets, models, widgets  # noqa: F401
    from repwidgets.engines import attribution, concepts, dora, invert, midrange  # noqa: F401
    from repwidgets.session import Session, demo_session  # noqa: F401
    from repwidgets.views.explorer import explore  # noqa: F401


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        globals()[name] = module
        return module
    if name in _LAZY_ATTRS:
        module_name, attr = _LAZY_ATTRS[name]
        value = getattr(importlib.import_module(module_name), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'repwidgets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
