"""Keep the selections of two widgets in step.

``link(a, b)`` observes a trait (``selected`` by default) on both widgets and copies
every change across, through optional id maps (for example neuron ids in a gallery
to row ids of a heatmap). Python is the hub: a click in one widget's view changes
its trait, the observer sets the other widget's trait, and ipywidgets sends that to
the other view, so both stay in step in the browser too. A guard stops the echo of
our own update from bouncing back (no infinite loops, even with many-to-one maps).

Example:
    >>> g1 = NeuronGallery(cards, image_source=src)    # doctest: +SKIP
    >>> g2 = NeuronGallery(cards, image_source=src)    # doctest: +SKIP
    >>> ln = link(g1, g2)
    >>> g1.selected = [3]; g2.selected                  # doctest: +SKIP
    [3]
    >>> ln.unlink()                                      # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

IdMap = Mapping[Hashable, Any] | Callable[[Any], Any]


def _as_function(mapping: IdMap | None) -> Callable[[Any], list]:
    """Turn a dict or a function (id -> id | list of ids | None) into id -> list of ids."""
    if mapping is None:
        return lambda x: [x]
    if isinstance(mapping, Mapping):
        m = mapping

        def lookup(x: Any) -> list:
            return _as_list(m.get(x))

        return lookup
    if callable(mapping):
        fn = mapping
        return lambda x: _as_list(fn(x))
    raise TypeError(f"An id map must be a dict or a function, got {type(mapping).__name__}.")


def _as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    return [value]


def _invert(mapping: Mapping) -> dict:
    inverse: dict = {}
    for src, dst in mapping.items():
        for d in _as_list(dst):
            inverse.setdefault(d, []).append(src)
    return inverse


class Link:
    """A live two-way link between one trait of two widgets; ``unlink()`` ends it."""

    def __init__(
        self,
        a: Any,
        b: Any,
        trait: str = "selected",
        a_to_b: IdMap | None = None,
        b_to_a: IdMap | None = None,
        initial: str = "a",
    ) -> None:
        for name, w in (("a", a), ("b", b)):
            if not hasattr(w, "has_trait") or not w.has_trait(trait):
                raise TypeError(
                    f"{name} ({type(w).__name__}) has no trait {trait!r} to link; link widgets "
                    "that have it (e.g. NeuronGallery.selected)."
                )
        if a is b:
            raise ValueError("Cannot link a widget to itself.")
        if b_to_a is None and a_to_b is not None:
            if not isinstance(a_to_b, Mapping):
                raise ValueError(
                    "a_to_b is a function, so the way back is unknown: also pass b_to_a."
                )
            b_to_a = _invert(a_to_b)
        if a_to_b is None and b_to_a is not None:
            if not isinstance(b_to_a, Mapping):
                raise ValueError(
                    "b_to_a is a function, so the way forward is unknown: also pass a_to_b."
                )
            a_to_b = _invert(b_to_a)
        if initial not in ("a", "b", "none"):
            raise ValueError(f"initial must be 'a', 'b' or 'none', got {initial!r}.")
        self.a, self.b, self.trait = a, b, trait
        self._a_to_b = _as_function(a_to_b)
        self._b_to_a = _as_function(b_to_a)
        self._busy = False
        self.updates = 0
        a.observe(self._from_a, names=[trait])
        b.observe(self._from_b, names=[trait])
        if initial == "a":
            self._push(getattr(a, trait), self._a_to_b, b)
        elif initial == "b":
            self._push(getattr(b, trait), self._b_to_a, a)

    def _from_a(self, change: dict) -> None:
        self._push(change["new"], self._a_to_b, self.b)

    def _from_b(self, change: dict) -> None:
        self._push(change["new"], self._b_to_a, self.a)

    def _push(self, ids: Iterable, fn: Callable[[Any], list], target: Any) -> None:
        if self._busy:
            return
        mapped: list = []
        for i in ids:
            mapped.extend(fn(i))
        valid = getattr(target, "ids", None)
        if valid is not None:
            known = set(valid)
            mapped = [i for i in mapped if i in known]
        mapped = list(dict.fromkeys(mapped))
        if list(getattr(target, self.trait)) == mapped:
            return
        self._busy = True
        try:
            setattr(target, self.trait, mapped)
            self.updates += 1
        finally:
            self._busy = False

    def unlink(self) -> None:
        """Stop keeping the two traits in step."""
        self.a.unobserve(self._from_a, names=[self.trait])
        self.b.unobserve(self._from_b, names=[self.trait])

    def __repr__(self) -> str:
        return (
            f"Link({type(self.a).__name__}.{self.trait} <-> {type(self.b).__name__}.{self.trait})"
        )


def link(
    a: Any,
    b: Any,
    *,
    trait: str = "selected",
    a_to_b: IdMap | None = None,
    b_to_a: IdMap | None = None,
    initial: str = "a",
) -> Link:
    """Keep ``a.<trait>`` and ``b.<trait>`` (lists of ids) in step, both ways.

    Args:
        a, b: widgets (any traitlets objects) with the list trait ``trait``.
        trait: the trait to link, ``"selected"`` by default.
        a_to_b: map from a's ids to b's ids: a dict or a function returning an id, a
            list of ids, or None (dropped). Default: the same ids.
        b_to_a: the way back; derived from ``a_to_b`` when that is a dict.
        initial: which side's current value wins at link time: "a", "b" or "none".

    Ids the target does not have (when it has an ``ids`` attribute) are dropped.

    Returns:
        A :class:`Link`; call ``.unlink()`` to stop.

    Example:
        >>> ln = link(gallery, heatmap, a_to_b={3: 0, 7: 1})   # doctest: +SKIP
    """
    return Link(a, b, trait=trait, a_to_b=a_to_b, b_to_a=b_to_a, initial=initial)
