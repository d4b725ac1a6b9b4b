"""The view registry: every entry names a result type that exists and a view that imports;
a result without a view shows as its table."""

from __future__ import annotations

import importlib

import pandas as pd
import pytest

import repwidgets as rw
from repwidgets.views import VIEWS, table_view, widget_for

RESULT_MODULES = {
    "InvertResult": "repwidgets.engines.invert",
    "DoraResult": "repwidgets.engines.dora",
    "ConceptResult": "repwidgets.engines.concepts",
    "MidrangeResult": "repwidgets.engines.midrange",
    "ConceptAttributionResult": "repwidgets.engines.attribution",
    "TRAKResult": "repwidgets.engines.attribution",
    "LDSResult": "repwidgets.engines.attribution",
    "NeuronAttributionResult": "repwidgets.engines.attribution",
    "RemovalResult": "repwidgets.engines.attribution",
}


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_every_view_imports_and_its_result_type_exists(name):
    module, function = VIEWS[name].split(":")
    assert callable(getattr(importlib.import_module(module), function))
    result_cls = getattr(importlib.import_module(RESULT_MODULES[name]), name)
    assert "widget" not in vars(result_cls)  # r.widget() is the base class's, via VIEWS


def test_a_result_without_a_view_is_its_escaped_table():
    class Plain:
        def to_frame(self):
            return pd.DataFrame({"name": ["<b>x</b>"], "value": [0.12345]})

    html = widget_for(Plain()).value
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "0.123" in html
    assert table_view(Plain(), float_format="%.1f").value.count("0.1") == 1


def test_composite_widgets_are_exported_from_views_and_widgets_know_no_engine():
    import pathlib

    assert rw.views.DoraWidget.__module__ == "repwidgets.views.dora"
    assert rw.views.AttributionGallery.__module__ == "repwidgets.views.attribution"
    for name in ("NeuronGallery", "DistanceHeatmap", "ConceptBrowser", "CurationSelector", "link"):
        assert hasattr(rw.widgets, name)
    root = pathlib.Path(rw.widgets.__file__).parent
    for path in root.glob("*.py"):
        assert "repwidgets.engines" not in path.read_text(), path.name
    with pytest.raises(AttributeError):
        rw.views.Nothing  # noqa: B018
