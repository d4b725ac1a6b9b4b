"""Views: the one place that turns a result into its widget.

Engines compute and return results; widgets are general components that know no
engine. A view reads a result (and its session, for images) and fills a widget:
``r.widget()`` is ``widget_for(r)``. Each method has one module here, registered in
:data:`VIEWS` by the result type it shows:

- :mod:`~repwidgets.views.invert`: ``invert_view``, a NeuronGallery of formulas;
- :mod:`~repwidgets.views.dora`: ``dora_view``, a :class:`DoraWidget` (heatmap of EA
  distances linked to a gallery of s-AMS);
- :mod:`~repwidgets.views.concepts`: ``concepts_view``, a ConceptBrowser;
- :mod:`~repwidgets.views.midrange`: ``midrange_view``, a CurationSelector over the
  band's candidates (``m.curate(path)``);
- :mod:`~repwidgets.views.attribution`: ``attribution_view``, an
  :class:`AttributionGallery` that hands samples to curation (``neuron_attribution_view``:
  the same for the training samples that taught one neuron), and tables for TRAK
  scores, LDS and the removal experiment.

A view takes the session that draws images from the result (``r._session``) or from
``session=`` (a result loaded from a file has none).

Example:
    >>> w = rw.views.widget_for(r)   # same as r.widget()   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["VIEWS", "AttributionGallery", "DoraWidget", "table_view", "widget_for"]

#: composite widgets defined by views, loaded on first use (they import the widgets).
_LAZY = {
    "AttributionGallery": "repwidgets.views.attribution",
    "DoraWidget": "repwidgets.views.dora",
}

#: result class name -> "module:function" of the view that shows it.
VIEWS: dict[str, str] = {
    "InvertResult": "repwidgets.views.invert:invert_view",
    "DoraResult": "repwidgets.views.dora:dora_view",
    "ConceptResult": "repwidgets.views.concepts:concepts_view",
    "MidrangeResult": "repwidgets.views.midrange:midrange_view",
    "ConceptAttributionResult": "repwidgets.views.attribution:attribution_view",
    "TRAKResult": "repwidgets.views.attribution:trak_view",
    "LDSResult": "repwidgets.views.attribution:lds_view",
    "RemovalResult": "repwidgets.views.attribution:removal_view",
    "NeuronAttributionResult": "repwidgets.views.attribution:neuron_attribution_view",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'repwidgets.views' has no attribute {name!r}")


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
