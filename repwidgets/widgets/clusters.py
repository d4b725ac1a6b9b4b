"""ConceptBrowser: a 2-D embedding of samples coloured by concept, class or any label.

Hovering a point shows its thumbnail (fetched lazily from Python); a lasso or a box
selects points (shift or ctrl adds, alt removes) and the selection comes back to Python
as sample indices in ``selected``; a click selects that point alone (ctrl- or cmd-click
toggles it, shift-click adds it) and, like a legend entry of the concept colouring,
opens its cluster in the side panel: description, fields and top images. Colours stay
distinct for any number of categories; a :class:`ContinuousColoring` colours by a number
per point (a score) on a sequential ramp, its legend showing the range.

Binary state (never JSON lists of numbers):

- ``points``: ``{"xy": float32 [n, 2], "membership": int16 or int32 [n]}`` (cluster
  id per point, -1 for none; int16 whenever the ids fit, half the bytes);
- ``codes``: the colour code of every point under the current colouring ``color_by``
  (uint8 or uint16 [n]); Python recomputes it when ``color_by`` changes, so only the
  colouring on screen crosses the wire. A continuous colouring sends its values
  quantised to 255 steps as uint8 codes (0: missing), so a million points cost 1 MB.

Example:
    >>> b = ConceptBrowser(xy, {"cluster": (codes, names)}, image_source=src)  # doctest: +SKIP
    >>> b.selected          # indices of the lasso-selected samples  # doctest: +SKIP

``r.widget()`` of a concept discovery result builds one (see
:mod:`repwidgets.views.concepts`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import anywidget
import numpy as np
import traitlets

from repwidgets.widgets._selection import checked_selection
from repwidgets.widgets._transport import (
    ImageSource,
    RequestRouter,
    as_image_source,
    image_fetch_handler,
    json_safe,
    static_css,
    static_esm,
    to_numpy,
)
from repwidgets.widgets.traits import ArrayDict, ArrayTrait, Choice

MODES = ("lasso", "box", "pan")
#: sequential colour ramps of a continuous colouring (drawn by the front end)
RAMPS = ("viridis", "magma")
#: steps of a continuous colouring's ramp (codes 1..STEPS; 0 is a missing value)
STEPS = 255

#: positions [n, 2]: the one check of ``xy``, shared by the constructor and the trait.
XY = ArrayTrait("float32", shape=(None, 2), finite=True)


class Coloring:
    """One way of colouring the points: an int code per point and the category names.

    Args:
        name: shown in the colour menu.
        codes: int array [n] with values in ``0 .. len(categories) - 1``.
        categories: the name of each code.
        none: code 0 means "none" (drawn grey), e.g. points in no cluster.
    """

    def __init__(self, name: str, codes: Any, categories: Sequence[str], none: bool = False):
        arr = np.asarray(to_numpy(codes))
        if arr.ndim != 1:
            raise ValueError(f"Colouring {name!r}: codes must be 1-D [n], got shape {arr.shape}.")
        if arr.size and (
            arr.dtype.kind not in "iub" or arr.min() < 0 or arr.max() >= len(categories)
        ):
            raise ValueError(
                f"Colouring {name!r}: codes must be ints in 0..{len(categories) - 1} "
                f"(one per category); got values from {arr.min()} to {arr.max()}."
            )
        self.name = str(name)
        self.codes = arr.astype(np.uint8 if len(categories) <= 256 else np.uint16)
        self.categories = [str(c) for c in categories]
        self.none = bool(none)

    def meta(self) -> dict:
        return {"name": self.name, "categories": self.categories, "none": self.none}

    def column(self, idx: np.ndarray) -> np.ndarray:
        """This colouring's value of the points ``idx`` (int [k]): their category names."""
        cats = np.asarray(self.categories, dtype=object)
        return cats[self.codes[idx]] if idx.size else np.array([], dtype=object)


class ContinuousColoring(Coloring):
    """Colour the points by a number each (e.g. an INVERT AUC or a LOF score) on a
    sequential colour ramp, from ``vmin`` (first ramp colour) to ``vmax`` (last).

    The values travel as uint8 codes, 1..255 along the ramp and 0 for a missing (NaN or
    infinite) value, drawn grey; the legend shows the ramp with vmin and vmax. The
    categorical :class:`Coloring` API is unchanged; both kinds mix in one browser.

    Args:
        name: shown in the colour menu.
        values: float array [n]; NaN marks a missing value.
        vmin, vmax: the ends of the ramp (default: the finite values' min and max);
            values beyond them take the end colours.
        ramp: ``"viridis"`` or ``"magma"``.

    Example:
        >>> c = ContinuousColoring("lof", np.array([0.1, 0.5, np.nan, 2.0]))
        >>> c.codes.tolist(), c.range
        ([1, 54, 0, 255], (0.1, 2.0))
    """

    def __init__(
        self,
        name: str,
        values: Any,
        vmin: float | None = None,
        vmax: float | None = None,
        ramp: str = "viridis",
    ):
        arr = np.asarray(to_numpy(values))
        if arr.ndim != 1:
            raise ValueError(f"Colouring {name!r}: values must be 1-D [n], got shape {arr.shape}.")
        if arr.dtype.kind not in "iufb":
            raise ValueError(f"Colouring {name!r}: values must be numbers, got dtype {arr.dtype}.")
        if ramp not in RAMPS:
            raise ValueError(f"Colouring {name!r}: ramp={ramp!r}; choose one of {list(RAMPS)}.")
        v = arr.astype(np.float64)
        finite = np.isfinite(v)
        if vmin is None:
            vmin = float(v[finite].min()) if finite.any() else 0.0
        if vmax is None:
            vmax = float(v[finite].max()) if finite.any() else 0.0
        vmin, vmax = float(vmin), float(vmax)
        if not (math.isfinite(vmin) and math.isfinite(vmax)) or vmin > vmax:
            raise ValueError(
                f"Colouring {name!r}: vmin={vmin} and vmax={vmax} must be finite with "
                "vmin <= vmax; pass them in that order."
            )
        span = vmax - vmin
        t = np.clip((np.where(finite, v, vmin) - vmin) / span, 0, 1) if span > 0 else 0.0
        codes = np.where(finite, 1 + np.rint(np.multiply(t, STEPS - 1)), 0).astype(np.uint8)
        self.name = str(name)
        self.codes = codes
        self.categories = []
        self.none = True
        self.values = v
        self.range = (vmin, vmax)
        self.ramp = ramp

    def meta(self) -> dict:
        return {**super().meta(), "range": list(self.range), "ramp": self.ramp}

    def column(self, idx: np.ndarray) -> np.ndarray:
        """The values of the points ``idx`` (int [k])."""
        return self.values[idx]


class ConceptBrowser(anywidget.AnyWidget):
    """An interactive scatter of samples with lasso selection and cluster details.

    Args:
        xy: 2-D positions [n, 2] (e.g. a UMAP embedding).
        colorings: :class:`Coloring` (or :class:`ContinuousColoring`) objects, or a
            mapping name -> (codes, categories) or name -> (codes, categories, none).
        membership: cluster id per point [n] (-1 for none); clicking a point opens its
            cluster in the side panel.
        clusters: one dict per cluster: ``id``, ``label``, ``description``, ``images``
            (sample indices shown in the panel) and ``fields`` (name -> value).
        image_source: callable ``keys -> list[bytes]`` (encoded images of sample
            indices), or a dict index -> bytes; None shows no images.
        color_by: the initial colouring (default: the first).
        selected: initially selected sample indices.
        title, height (pixels of the plot), point_size (pixels), mode ("lasso", "box", "pan").

    Example:
        >>> xy = np.random.rand(1000, 2)
        >>> b = ConceptBrowser(xy, {"half": (xy[:, 0] > 0.5, ["left", "right"])})
        >>> b.selected
        []
    """

    _esm = static_esm("clusters")
    _css = static_css("clusters")

    points = ArrayDict({"xy": XY, "membership": ArrayTrait(("int32", "int16"), ndim=1)}).tag(
        sync=True
    )
    codes = ArrayTrait(("uint8", "uint16"), ndim=1, allow_none=True).tag(sync=True)
    colorings = traitlets.List(traitlets.Dict()).tag(sync=True)
    color_by = traitlets.Unicode("").tag(sync=True)
    clusters = traitlets.List(traitlets.Dict()).tag(sync=True)
    selected = traitlets.List(traitlets.Int()).tag(sync=True)
    focus = traitlets.Int(-1).tag(sync=True)
    mode = Choice(MODES).tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    height = traitlets.Int(480).tag(sync=True)
    point_size = traitlets.Int(3).tag(sync=True)

    def __init__(
        self,
        xy: Any,
        colorings: Sequence[Coloring] | Mapping[str, tuple] | None = None,
        *,
        membership: Any = None,
        clusters: Sequence[Mapping[str, Any]] = (),
        image_source: ImageSource | Mapping | None = None,
        color_by: str | None = None,
        selected: Sequence[int] = (),
        title: str = "",
        height: int = 480,
        point_size: int | None = None,
        mode: str = "lasso",
        **kwargs: Any,
    ) -> None:
        pos = XY.check(xy, "xy (the points' positions)")
        n = pos.shape[0]
        self._n = n
        self._colorings = _as_colorings(colorings, n)
        if membership is None:
            member = np.full(n, -1, dtype=np.int32)
        else:
            member = np.asarray(to_numpy(membership)).astype(np.int64).ravel()
            if member.shape[0] != n:
                raise ValueError(f"membership has {member.shape[0]} entries but xy has {n} points.")
            if member.size and (member.min() < -(2**31) or member.max() >= 2**31):
                raise ValueError(
                    f"membership holds ids from {member.min()} to {member.max()}; cluster ids "
                    "must fit in int32 (renumber the clusters 0, 1, 2, ...)."
                )
            member = member.astype(np.int32)
        # the wire copy: int16 when every id fits (the front end reads either)
        small = not member.size or (member.min() >= -(2**15) and member.max() < 2**15)
        wire_member = member.astype(np.int16) if small else member
        cluster_list = [_cluster_json(c) for c in clusters]
        names = [c.name for c in self._colorings]
        if color_by is None:
            color_by = names[0]
        if color_by not in names:
            raise ValueError(f"color_by={color_by!r} is not a colouring; choose one of {names}.")
        if point_size is None:
            point_size = 4 if n <= 5_000 else 3 if n <= 30_000 else 2
        super().__init__(
            points={"xy": pos, "membership": wire_member},
            colorings=[c.meta() for c in self._colorings],
            color_by=color_by,
            clusters=cluster_list,
            title=title,
            height=height,
            point_size=point_size,
            mode=mode,
            **kwargs,
        )
        self.codes = self._codes_for(color_by)
        self.selected = [int(i) for i in selected]
        self._membership = member
        self._clusters = {c["id"]: c for c in cluster_list}
        self._image_source = as_image_source(image_source) if image_source is not None else None
        self._router = RequestRouter(self)
        self._router.register("fetch", image_fetch_handler(self._images))

    # --- traits ---------------------------------------------------------------------------
    def _codes_for(self, name: str) -> np.ndarray:
        for c in self._colorings:
            if c.name == name:
                return c.codes
        raise ValueError(f"No colouring {name!r}; colourings: {[c.name for c in self._colorings]}.")

    @traitlets.observe("color_by")
    def _on_color_by(self, change: dict) -> None:
        if getattr(self, "_colorings", None) is not None and change["new"]:
            self.codes = self._codes_for(change["new"])

    @traitlets.validate("color_by")
    def _validate_color_by(self, proposal: Any) -> str:
        value = proposal["value"]
        cols = getattr(self, "_colorings", None)
        if cols is not None and value not in [c.name for c in cols]:
            raise traitlets.TraitError(
                f"color_by={value!r} is not a colouring; choose one of {[c.name for c in cols]}."
            )
        return value

    @traitlets.validate("selected")
    def _validate_selected(self, proposal: Any) -> list[int]:
        n = getattr(self, "_n", None)
        return checked_selection(
            proposal["value"],
            None if n is None else range(n),
            "points of this browser",
            f"Valid indices are 0..{(n or 1) - 1}, one per point.",
        )

    # --- Python API -------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Number of points."""
        return self._n

    @property
    def coloring_names(self) -> list[str]:
        return [c.name for c in self._colorings]

    def selected_frame(self):
        """The selected samples as a DataFrame: index, cluster and every colouring's category
        (or value, for a continuous colouring)."""
        import pandas as pd

        idx = np.asarray(self.selected, dtype=np.int64)
        data: dict[str, Any] = {"index": idx, "cluster": self._membership[idx]}
        for c in self._colorings:
            data[c.name] = c.column(idx)
        return pd.DataFrame(data)

    def _images(self, keys: list) -> list[bytes]:
        if self._image_source is None:
            raise ValueError("This browser has no image source; pass image_source= to show images.")
        return list(self._image_source([int(k) for k in keys]))

    def __repr__(self) -> str:
        return f"ConceptBrowser({self._n} points, {len(self.selected)} selected)"


def _as_colorings(colorings: Any, n: int) -> list[Coloring]:
    if colorings is None:
        colorings = [Coloring("all", np.zeros(n, dtype=np.uint8), ["points"])]
    elif isinstance(colorings, Mapping):
        built = []
        for name, spec in colorings.items():
            if not isinstance(spec, (tuple, list)) or len(spec) not in (2, 3):
                raise TypeError(
                    f"Colouring {name!r} must be (codes, categories) or (codes, categories, none)."
                )
            codes = np.asarray(to_numpy(spec[0]))
            if codes.dtype == bool:
                codes = codes.astype(np.uint8)
            built.append(Coloring(name, codes, *spec[1:]))
        colorings = built
    out = list(colorings)
    if not out:
        raise ValueError("Give at least one colouring.")
    for c in out:
        if not isinstance(c, Coloring):
            raise TypeError(f"colorings must be Coloring objects; got {type(c).__name__}.")
        if c.codes.shape[0] != n:
            raise ValueError(
                f"Colouring {c.name!r} has {c.codes.shape[0]} codes but there are {n} points."
            )
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ValueError(f"Colouring names must be unique; got {names}.")
    return out


def _cluster_json(c: Mapping[str, Any]) -> dict:
    if "id" not in c:
        raise ValueError("Every cluster needs an int 'id' (the membership value of its points).")
    fields = c.get("fields") or {}
    items = fields.items() if isinstance(fields, Mapping) else fields
    return {
        "id": int(c["id"]),
        "label": str(c.get("label") or f"cluster {int(c['id'])}"),
        "description": str(c.get("description") or ""),
        "images": [int(i) for i in (c.get("images") or [])],
        "fields": [[str(k), _field_value(v)] for k, v in items],
    }


def _field_value(v: Any) -> Any:
    if isinstance(v, float):
        if not math.isfinite(v):
            return None
        return float(f"{v:.4g}")
    if isinstance(v, (int, str)) or v is None:
        return v
    return json_safe(str(v))


__all__ = ["Coloring", "ConceptBrowser", "ContinuousColoring"]
