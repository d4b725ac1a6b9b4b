"""The IPython extension: results display as widgets, and the %repwidgets magic."""

from __future__ import annotations

import dataclasses

import pytest

from repwidgets.magics import format_layers, repwidgets_magic
from repwidgets.widgets import NeuronGallery


class TinySession:
    """The two Session methods the magic uses."""

    def __init__(self, shapes=None):
        self._shapes = shapes or {"features.conv1": (6, 8, 8), "fc": (3,)}

    def layers(self):
        return list(self._shapes)

    def layer_shapes(self):
        return dict(self._shapes)


class BrokenShapes(TinySession):
    def layer_shapes(self):
        raise RuntimeError("forward pass failed")


@pytest.fixture
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    sh = InteractiveShell.instance()
    sh.extension_manager.load_extension("repwidgets")  # what %load_ext repwidgets does
    yield sh
    from repwidgets.magics import unload_ipython_extension

    unload_ipython_extension(sh)
    sh.extension_manager.loaded.discard("repwidgets")


def test_load_ext_registers_the_magic(shell):
    assert "repwidgets" in shell.magics_manager.magics["line"]


def test_results_display_as_their_widget(shell):
    from ipywidgets.widgets.widget import _instances

    from repwidgets.results import Result

    @dataclasses.dataclass
    class GalleryResult(Result):
        n: int = 2

        def widget(self):
            return NeuronGallery([{"id": i} for i in range(self.n)], image_source={})

    data, _ = shell.display_formatter.format(GalleryResult(n=3))
    view = data["application/vnd.jupyter.widget-view+json"]
    widget = _instances[view["model_id"]]
    assert isinstance(widget, NeuronGallery) and len(widget.cards) == 3
    assert "GalleryResult" in data["text/plain"]


def test_results_without_widget_fall_back_to_text(shell):
    from repwidgets.results import Result

    @dataclasses.dataclass
    class Plain(Result):
        x: int = 1

    data, _ = shell.display_formatter.format(Plain())
    assert "application/vnd.jupyter.widget-view+json" not in data
    assert "Plain" in data["text/plain"]


def test_a_failing_widget_falls_back_to_text(shell):
    from repwidgets.results import Result

    @dataclasses.dataclass
    class Broken(Result):
        def widget(self):
            raise RuntimeError("no data")

    data, _ = shell.display_formatter.format(Broken())
    assert "application/vnd.jupyter.widget-view+json" not in data
    assert "Broken" in data["text/plain"]


def test_magic_demo_and_layers(shell, monkeypatch, capsys):
    import repwidgets

    fake = TinySession()
    seeds = []

    def demo_session(seed=0):
        seeds.append(seed)
        return fake

    monkeypatch.setattr(repwidgets, "demo_session", demo_session, raising=False)
    shell.run_line_magic("repwidgets", "demo")
    assert shell.user_ns["sess"] is fake
    capsys.readouterr()
    shell.run_line_magic("repwidgets", "layers")
    lines = capsys.readouterr().out.splitlines()
    assert "features.conv1  6x8x8" in lines
    assert "fc              3" in lines
    shell.run_line_magic("repwidgets", "demo 1 --name other")
    assert shell.user_ns["other"] is fake
    shell.run_line_magic("repwidgets", "demo --seed=2")
    assert seeds == [0, 1, 2]


def test_layers_lists_names_even_when_shapes_fail():
    table = format_layers(BrokenShapes())
    assert table.splitlines()[2:] == ["features.conv1  ?", "fc              ?"]


@pytest.mark.parametrize(
    "line, error, match",
    [
        ("layers nosuch", NameError, "repwidgets demo"),
        ("frobnicate", ValueError, "Usage"),
        ("demo --name", ValueError, "needs a variable name"),
        ("demo --name 1x", ValueError, "not a valid Python variable name"),
        ("demo banana", ValueError, "Unknown argument 'banana'"),
        ("layers notsess", TypeError, "not a repwidgets Session"),
    ],
)
def test_magic_errors_name_the_fix(line, error, match):
    with pytest.raises(error, match=match):
        repwidgets_magic(line, {"notsess": 3})


def test_help_is_the_default(capsys):
    repwidgets_magic("", {})
    assert "%repwidgets demo" in capsys.readouterr().out
