"""Frozen method configurations: one dataclass of settings per method.

Each method has a config (``InvertConfig``, ``DoraConfig``, ...) that subclasses
:class:`Config`. A session-level call takes ``config=None, **overrides``; the settings
it ran with are saved with its result as ``r.params`` (``config.to_dict()``) and can be
turned back into a config with ``ConfigClass.from_dict(r.params)``.

Example:
    >>> @dataclasses.dataclass(frozen=True)
    ... class ToyConfig(Config):
    ...     steps: int = 10
    ...     lr: float = 0.1
    >>> ToyConfig.resolve(None, {"steps": 5})
    ToyConfig(steps=5, lr=0.1)
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = ["Config"]

C = TypeVar("C", bound="Config")


@dataclasses.dataclass(frozen=True)
class Config:
    """Base of every method's frozen settings dataclass."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def _check_names(cls, names: Mapping[str, Any]) -> None:
        known = cls.field_names()
        for name in names:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=2, cutoff=0.6)
                hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
                raise TypeError(
                    f"{cls.__name__} has no setting {name!r}.{hint} Settings: {', '.join(known)}."
                )

    @classmethod
    def resolve(cls: type[C], config: C | Mapping[str, Any] | None, overrides: Mapping) -> C:
        """The config a call runs with: ``config`` (or the defaults) with ``overrides``.

        ``config`` may be an instance, a dict of settings (for example a result's
        ``params``) or None. Unknown setting names raise a TypeError that lists them.
        """
        if config is None:
            base = cls()
        elif isinstance(config, cls):
            base = config
        elif isinstance(config, Mapping):
            base = cls.from_dict(config)
        else:
            raise TypeError(
                f"config must be a {cls.__name__}, a dict of its settings or None; "
                f"got {type(config).__name__}."
            )
        return base.replace(**overrides) if overrides else base

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes``; unknown names raise a TypeError listing the settings."""
        self._check_names(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-able dict (tuples become lists)."""
        return {f.name: _json_able(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[C], values: Mapping[str, Any], *, strict: bool = False) -> C:
        """A config from ``to_dict()`` output; names the config lacks are ignored unless
        ``strict`` (a result's ``params`` may hold extra facts, such as timings)."""
        if strict:
            cls._check_names(values)
        known = set(cls.field_names())
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in values and f.name in known:
                value = values[f.name]
                if isinstance(value, list) and isinstance(f.default, tuple):
                    value = tuple(value)
                kwargs[f.name] = value
        return cls(**kwargs)


def _json_able(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_json_able(v) for v in value]
    if isinstance(value, list):
        return [_json_able(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_able(v) for k, v in value.items()}
    return value
