"""Trait types for widget state: checked once, arrays sent as binary buffers.

A widget declares what an array must be (dtype, number of dimensions, shape, finite
values) in the trait itself, so the check lives in one place: the constructor, a
later assignment from Python and the tests all go through the trait's ``validate``.
Python reads the trait back as a numpy array (read-only: assign a new array to
change it, so the change reaches the browser). The serialiser sends exactly the wire
encoding of :func:`repwidgets.widgets._transport.encode_array`
(``{"buffer": bytes, "dtype": str, "shape": [...]}``), which the front end decodes
with ``js/src/lib/codec.ts: decodeArray``.

- :class:`ArrayTrait`: one array.
- :class:`ArrayDict`: a dict whose named entries are arrays (each checked by its own
  :class:`ArrayTrait`) beside plain JSON entries (a range, a count, a flag).
- :class:`Choice`: one of a few strings (an order, a colour map, a mode).

Their errors are TraitErrors that are also ValueErrors (TypeErrors for a value of the
wrong kind), so a bad constructor argument and a bad assignment fail the same way.

Example:
    >>> import numpy as np, traitlets
    >>> class Points(traitlets.HasTraits):
    ...     xy = ArrayTrait(dtype="float32", shape=(None, 2), finite=True)
    >>> p = Points(xy=[[0, 1], [2, 3]])
    >>> p.xy.dtype, p.xy.shape
    (dtype('float32'), (2, 2))
    >>> Points(xy=[1, 2])
    Traceback (most recent call last):
    ...
    repwidgets.widgets.traits.ArrayTraitError: Points.xy must have 2 dimensions (shape [n, 2]); got shape (2,).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import traitlets

from repwidgets.widgets._transport import decode_array, encode_array, to_numpy

__all__ = [
    "ArrayDict",
    "ArrayTrait",
    "ArrayTraitError",
    "Choice",
    "array_from_json",
    "array_to_json",
]


class ArrayTraitError(traitlets.TraitError, ValueError):
    """A value that does not fit its trait (a TraitError and a ValueError)."""


class ArrayTypeError(traitlets.TraitError, TypeError):
    """A value that is not an array of numbers (a TraitError and a TypeError)."""


def array_to_json(value: np.ndarray | None, _widget: Any = None) -> dict | None:
    """The wire form of an array trait's value (None stays None)."""
    return None if value is None else encode_array(value)


def array_from_json(value: Any, _widget: Any = None) -> np.ndarray | None:
    """An array from its wire form (what the front end sends back)."""
    if value is None:
        return None
    if isinstance(value, Mapping) and "buffer" in value:
        return decode_array(value["buffer"], value["dtype"], value["shape"])
    return np.asarray(value)


def _shape_text(shape: Sequence[int | None]) -> str:
    names = iter("nmkpq")
    return "[" + ", ".join(next(names) if s is None else str(s) for s in shape) + "]"


class ArrayTrait(traitlets.TraitType):
    """A numeric array, converted and checked on assignment, sent as a binary buffer.

    Args:
        dtype: the dtype the array is stored as (e.g. ``"float32"``, ``"int32"``); a
            tuple of dtypes accepts any of them as they are and converts others to the
            first; None keeps the dtype given (any numbers or booleans).
        ndim: the number of dimensions (None: any).
        shape: the shape, None for a free axis (e.g. ``(None, 2)``); sets ``ndim``.
        finite: refuse NaN and infinite values.
        allow_none: None is a valid value (the default is None then).
        **kwargs: passed to :class:`traitlets.TraitType` (``help``, ``read_only``).

    Integers are checked against the stored dtype's range and floats stored as
    integers must be whole numbers, so nothing wraps around or rounds silently.
    """

    info_text = "a numeric array"

    def __init__(
        self,
        dtype: str | Sequence[str] | None = None,
        ndim: int | None = None,
        shape: Sequence[int | None] | None = None,
        finite: bool = False,
        allow_none: bool = False,
        **kwargs: Any,
    ) -> None:
        if isinstance(dtype, str) or dtype is None:
            self.dtypes = () if dtype is None else (np.dtype(dtype),)
        else:
            self.dtypes = tuple(np.dtype(d) for d in dtype)
        if shape is not None:
            shape = tuple(None if s is None else int(s) for s in shape)
            if ndim is not None and ndim != len(shape):
                raise ValueError(f"ndim={ndim} disagrees with shape={shape}.")
            ndim = len(shape)
        self.ndim = ndim
        self.shape = shape
        self.finite = bool(finite)
        default = None if allow_none else self._empty()
        kwargs.setdefault("default_value", default)
        super().__init__(allow_none=allow_none, **kwargs)
        self.metadata.setdefault("to_json", array_to_json)
        self.metadata.setdefault("from_json", array_from_json)

    def _empty(self) -> np.ndarray:
        dims = self.shape or ((0,) * (self.ndim if self.ndim is not None else 1))
        empty = np.zeros(tuple(0 if s is None else s for s in dims), dtype=self._target(None))
        empty.setflags(write=False)
        return empty

    def _target(self, current: np.dtype | None) -> np.dtype:
        if not self.dtypes:
            return current if current is not None else np.dtype("float32")
        if current is not None and current in self.dtypes:
            return current
        return self.dtypes[0]

    def expected(self) -> str:
        """What the trait accepts, in words (for error messages and ``info()``)."""
        parts = []
        if self.dtypes:
            parts.append(" or ".join(d.name for d in self.dtypes))
        else:
            parts.append("numeric")
        if self.shape is not None:
            parts.append(f"array of shape {_shape_text(self.shape)}")
        elif self.ndim is not None:
            parts.append(f"{self.ndim}-D array")
        else:
            parts.append("array")
        if self.finite:
            parts.append("with finite values")
        return " ".join(parts)

    def info(self) -> str:
        return "a " + self.expected() + (" or None" if self.allow_none else "")

    def _where(self, obj: Any) -> str:
        owner = type(obj).__name__ if obj is not None else ""
        return f"{owner}.{self.name}" if owner and self.name else (self.name or "array")

    def validate(self, obj: Any, value: Any) -> np.ndarray | None:
        if value is None:
            if self.allow_none:
                return None
            raise ArrayTraitError(f"{self._where(obj)} must be a {self.expected()}, not None.")
        return self.check(value, self._where(obj))

    def check(self, value: Any, name: str) -> np.ndarray:
        """``value`` as the stored array (read-only), or an error that names ``name``.

        Constructors call this with the argument's name, so a bad argument and a bad
        assignment get the same check and a message naming what the person passed.
        """
        try:
            a = to_numpy(value)
        except TypeError as exc:
            raise ArrayTypeError(f"{name} must be a {self.expected()}; {exc}") from exc
        if a.dtype.kind not in "biuf":
            raise ArrayTypeError(
                f"{name} must hold numbers (a {self.expected()}); got dtype {a.dtype}."
            )
        self._check_shape(a, name)
        if self.finite and a.dtype.kind == "f" and not np.isfinite(a).all():
            bad = ~np.isfinite(a)
            where = np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1) if a.ndim else bad)
            raise ArrayTraitError(
                f"{name} has NaN or infinite values at {'rows' if a.ndim > 1 else 'positions'} "
                f"{where[:10].tolist()}{' and more' if where.size > 10 else ''}; "
                "drop or replace them first."
            )
        out = self._convert(a, name)
        if out is a or np.may_share_memory(out, a):
            out = out.copy()
        out = np.ascontiguousarray(out)
        out.setflags(write=False)
        return out

    def _check_shape(self, a: np.ndarray, name: str) -> None:
        if self.ndim is not None and a.ndim != self.ndim:
            want = f" (shape {_shape_text(self.shape)})" if self.shape is not None else ""
            raise ArrayTraitError(
                f"{name} must have {self.ndim} dimension{'s' if self.ndim != 1 else ''}{want}; "
                f"got shape {tuple(a.shape)}."
            )
        if self.shape is not None:
            for axis, (want, got) in enumerate(zip(self.shape, a.shape)):
                if want is not None and want != got:
                    raise ArrayTraitError(
                        f"{name} must have shape {_shape_text(self.shape)} (axis {axis} of "
                        f"size {want}); got shape {tuple(a.shape)}."
                    )

    def _convert(self, a: np.ndarray, name: str) -> np.ndarray:
        target = self._target(a.dtype)
        if target == a.dtype:
            return a
        if target.kind in "iu" and a.dtype.kind == "f":
            finite = np.isfinite(a)
            if not finite.all() or not np.array_equal(a, np.round(a)):
                raise ArrayTraitError(
                    f"{name} must hold whole numbers (it is stored as {target.name}); got "
                    "fractions or NaN. Round or convert them first."
                )
        if target.kind in "iu" and a.size and a.dtype.kind in "iuf":
            info = np.iinfo(target)
            lo, hi = a.min(), a.max()
            if lo < info.min or hi > info.max:
                raise ArrayTraitError(
                    f"{name} holds values from {lo} to {hi}, which do not fit in {target.name} "
                    f"({info.min} to {info.max}), the dtype it is sent as."
                )
        return a.astype(target)

    def make_dynamic_default(self) -> np.ndarray | None:
        return None if self.allow_none else self._empty()


class ArrayDict(traitlets.TraitType):
    """A dict of named arrays (each checked by its :class:`ArrayTrait`) and JSON entries.

    The declared array entries are required (an empty dict means "nothing yet");
    other entries pass through as they are and must be JSON-able. The serialiser
    encodes every array entry as :func:`~repwidgets.widgets._transport.encode_array`
    does, the rest stays JSON.

    Example:
        >>> class Hist(traitlets.HasTraits):
        ...     histogram = ArrayDict({"counts": ArrayTrait("float32", ndim=1)})
        >>> h = Hist(histogram={"counts": [1, 2], "range": [0.0, 1.0]})
        >>> h.histogram["counts"].dtype, h.histogram["range"]
        (dtype('float32'), [0.0, 1.0])
    """

    info_text = "a dict of arrays"

    def __init__(
        self, fields: Mapping[str, ArrayTrait], allow_none: bool = False, **kwargs: Any
    ) -> None:
        self.fields = dict(fields)
        if allow_none:
            kwargs.setdefault("default_value", None)
        super().__init__(allow_none=allow_none, **kwargs)
        self.metadata.setdefault("to_json", self._to_json)
        self.metadata.setdefault("from_json", self._from_json)

    def make_dynamic_default(self) -> dict | None:
        return None if self.allow_none else {}

    def info(self) -> str:
        return f"a dict with arrays {sorted(self.fields)}" + (" or None" if self.allow_none else "")

    def _where(self, obj: Any) -> str:
        owner = type(obj).__name__ if obj is not None else ""
        return f"{owner}.{self.name}" if owner and self.name else (self.name or "dict")

    def validate(self, obj: Any, value: Any) -> dict | None:
        where = self._where(obj)
        if value is None:
            if self.allow_none:
                return None
            raise ArrayTraitError(f"{where} must be {self.info()}, not None.")
        if not isinstance(value, Mapping):
            raise ArrayTypeError(f"{where} must be {self.info()}; got {type(value).__name__}.")
        if not value:
            return {}
        missing = [k for k in self.fields if k not in value]
        if missing:
            raise ArrayTraitError(
                f"{where} is missing the array(s) {missing}; it needs {sorted(self.fields)}."
            )
        out = dict(value)
        for key, trait in self.fields.items():
            out[key] = trait.check(value[key], f"{where}[{key!r}]")
        return out

    def _to_json(self, value: Mapping | None, _widget: Any = None) -> dict | None:
        if value is None:
            return None
        return {k: encode_array(v) if k in self.fields else v for k, v in value.items()}

    def _from_json(self, value: Any, _widget: Any = None) -> dict | None:
        if value is None:
            return None
        return {k: array_from_json(v) if k in self.fields else v for k, v in value.items()}


class Choice(traitlets.Unicode):
    """One of a fixed set of strings; anything else is refused naming the choices.

    Example:
        >>> class Map(traitlets.HasTraits):
        ...     colormap = Choice(("viridis", "magma"))
        >>> Map().colormap
        'viridis'
    """

    def __init__(
        self, values: Sequence[str], default_value: str | None = None, **kwargs: Any
    ) -> None:
        self.values = tuple(values)
        default = self.values[0] if default_value is None else default_value
        super().__init__(default_value=default, **kwargs)

    def info(self) -> str:
        return f"one of {self.values}"

    def validate(self, obj: Any, value: Any) -> str:
        if value not in self.values:
            raise ArrayTraitError(f"{self.name} must be one of {self.values}; got {value!r}.")
        return value
