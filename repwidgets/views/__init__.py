"""Views: the one place that turns a result into its widget.

Engines compute and return results; widgets are general components that know no
engine. A view reads a result (and its session, for images) and fills a widget:
``r.widget()`` is ``widget_for(r)``. Each method has one module here, registered in
:data:`VIEWS` by the result type it shows.

Example:
    >>> w = rw.views.widget_for(r)   # same as r.widget()   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["VIEWS", "table_view", "widget_for"]

#: result class name -> "module:function" of the view that shows it.
VIEWS: dict[str, str] = {
    "InvertResult": "repwidgets.views.invert:invert_view",
    "DoraResult": "repwidgets.views.dora:dora_view",
    "ConceptResult": "repwidgets.views.concepts:concepts_view",
    "MidrangeResult": "repwidgets.views.midrange:midrange_view",
    "ConceptAttributionResult": "repwidgets.views.attribution:attribution_view",
}


def widget_for(result: Any, **kwargs: Any) -> Any:
    """The widget that shows ``result`` (keyword arguments go to its view).

    A result type without a registered view is shown as its ``to_frame()`` table.
    """
    for cls in type(result).__mro__:
        target = VIEWS.get(cls.__name__)
        if target is not None:
            module, function = target.split(":")
            return getattr(importlib.import_module(module), function)(result, **kwargs)
    return table_view(result, **kwargs)


def table_view(result: Any, float_format: str = "%.3f") -> Any:
    """An HTML table of ``result.to_frame()`` (text from data is escaped)."""
    import ipywidgets

    table = result.to_frame().to_html(index=False, float_format=float_format.__mod__, escape=True)
    return ipywidgets.HTML(table)
