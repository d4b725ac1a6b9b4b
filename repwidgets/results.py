"""The base class of every engine result: save, load, display and export.

A result is a dataclass. On ``save`` its tensor and array fields go into one
safetensors file and every other field (which must be JSON-serialisable) into that
file's metadata, so loading runs no code (no pickle). Fields whose name starts with
``_`` are runtime-only (for example the session a result came from) and are not saved.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from repwidgets.atomic import atomic_write_bytes

__all__ = ["Result", "atomic_write_bytes", "notebook_plot"]

FORMAT_VERSION = 1
_META_KEY = "repwidgets"

R = TypeVar("R", bound="Result")


def _is_array(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray))


def _as_tensor(value: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    return value.detach().cpu().contiguous()


def notebook_plot(make_plot):
    """Decorator for a function that returns a bokeh model: in a notebook the model draws
    itself when it is a cell's value, and ``bokeh.io.show`` works offline
    (see :func:`repwidgets.plots.displayable`). Every result's ``plot()`` gets it."""
    if getattr(make_plot, "_notebook_plot", False):
        return make_plot

    @functools.wraps(make_plot)
    def plot(*args, **kwargs):
        from repwidgets.plots import displayable

        return displayable(make_plot(*args, **kwargs))

    plot._notebook_plot = True
    return plot


@dataclasses.dataclass
class Result:
    """Common behaviour of engine results; subclasses are dataclasses.

    Subclasses implement ``to_frame()`` and ``plot()``; the figure that ``plot()``
    returns draws itself when it is a notebook cell's value. ``widget()`` is the
    result's view from :mod:`repwidgets.views` (engines know no widgets).

    Every result carries the same context: ``params`` (the settings it was computed
    with, saved with it: ``Config.to_dict()``) and ``_session`` (the session it came
    from; not saved, None after ``load``; views use it for images).

    Example:
        >>> r.save("invert_conv3.safetensors")            # doctest: +SKIP
        >>> r2 = type(r).load("invert_conv3.safetensors")  # doctest: +SKIP
    """

    params: dict = dataclasses.field(default_factory=dict, kw_only=True)
    _session: Any = dataclasses.field(default=None, repr=False, compare=False, kw_only=True)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "plot" in cls.__dict__:
            cls.plot = notebook_plot(cls.__dict__["plot"])

    # --- what subclasses provide -------------------------------------------------
    def to_frame(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def widget(self, **kwargs):
        """The interactive widget of this result (see :mod:`repwidgets.views`)."""
        from repwidgets.views import widget_for

        return widget_for(self, **kwargs)

    @property
    def context(self) -> dict[str, Any]:
        """Where the result comes from: layer, split, names and settings (when it has them)."""
        keys = ("layer", "split", "class_name", "concept", "concept_names", "class_names")
        found = {k: getattr(self, k) for k in keys if getattr(self, k, None) is not None}
        return {**found, "params": dict(self.params)}

    def plot(self):  # pragma: no cover - abstract
        raise NotImplementedError

    # --- persistence ---------------------------------------------------------------
    def _saved_fields(self) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(self) if not f.name.startswith("_")]

    def save(self, path: str | os.PathLike) -> Path:
        """Save to one ``.safetensors`` file (tensors + JSON metadata); returns the path."""
        from safetensors.torch import save

        tensors: dict[str, torch.Tensor] = {}
        kinds: dict[str, str] = {}
        values: dict[str, Any] = {}
        for f in self._saved_fields():
            value = getattr(self, f.name)
            if _is_array(value):
                tensors[f.name] = _as_tensor(value)
                kinds[f.name] = "numpy" if isinstance(value, np.ndarray) else "torch"
            elif isinstance(value, dict) and value and all(_is_array(v) for v in value.values()):
                for key, item in value.items():
                    tensors[f"{f.name}/{key}"] = _as_tensor(item)
                first = next(iter(value.values()))
                kinds[f.name] = "dict_numpy" if isinstance(first, np.ndarray) else "dict_torch"
            else:
                values[f.name] = value
        header = {
            "format_version": FORMAT_VERSION,
            "type": type(self).__name__,
            "kinds": kinds,
            "values": values,
        }
        try:
            meta = json.dumps(header, allow_nan=True)
        except TypeError as exc:
            raise TypeError(
                f"{type(self).__name__}.save: a field is neither a tensor nor JSON-serialisable "
                f"({exc}). Convert it to a list/dict/str/number, or prefix its name with '_' "
                "to keep it out of the file."
            ) from exc
        blob = save(tensors, metadata={_META_KEY: meta})
        return atomic_write_bytes(path, blob)

    @classmethod
    def load(cls: type[R], path: str | os.PathLike) -> R:
        """Load a result saved with :meth:`save` (tensors load without running any code)."""
        from safetensors import safe_open

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"No saved result at {path}. Check the path, or save it first.")
        try:
            with safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        except Exception as exc:  # safetensors raises its own error types
            raise ValueError(
                f"{path} is not a repwidgets result file ({exc}). "
                "Load files written by Result.save()."
            ) from exc
        if _META_KEY not in meta:
            raise ValueError(
                f"{path} has no repwidgets metadata: it was not written by Result.save()."
            )
        header = json.loads(meta[_META_KEY])
        if header.get("type") != cls.__name__ and cls is not Result:
            raise ValueError(
                f"{path} holds a {header.get('type')}, not a {cls.__name__}. "
                f"Load it with {header.get('type')}.load()."
            )
        kwargs: dict[str, Any] = dict(header["values"])
        for name, kind in header["kinds"].items():
            if kind.startswith("dict_"):
                prefix = name + "/"
                items = {k[len(prefix) :]: t for k, t in tensors.items() if k.startswith(prefix)}
                kwargs[name] = (
                    {k: t.numpy() for k, t in items.items()} if kind == "dict_numpy" else items
                )
            else:
                kwargs[name] = tensors[name].numpy() if kind == "numpy" else tensors[name]
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in kwargs.items() if k in known})

    # --- display and export ------------------------------------------------------------
    def _repr_mimebundle_(self, include=None, exclude=None):
        """Display as the result's widget in a notebook (text where widgets are unavailable)."""
        text = {"text/plain": self._summary()}
        try:
            bundle = self.widget()._repr_mimebundle_(include=include, exclude=exclude)
        except Exception:  # no widget frontend or no built JS: fall back to text
            return text
        if isinstance(bundle, tuple):
            bundle = bundle[0]
        return {**text, **bundle}

    def _summary(self) -> str:
        parts = []
        for f in self._saved_fields():
            value = getattr(self, f.name)
            if _is_array(value):
                parts.append(f"{f.name}=<{tuple(value.shape)}>")
            elif isinstance(value, (str, int, float, bool)) or value is None:
                parts.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def export_html(self, path: str | os.PathLike, title: str | None = None) -> Path:
        """Write an offline HTML report of this result (its plot and table)."""
        from repwidgets.report import Report

        report = Report(title or type(self).__name__)
        report.add_result(self)
        return report.save(path)
