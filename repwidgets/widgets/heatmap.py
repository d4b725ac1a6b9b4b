"""DistanceHeatmap: a k x k matrix (EA distances, concept similarities) on a canvas.

Rows and columns are reordered by hierarchical clustering (average linkage on the
distances), so groups of similar neurons show up as blocks on the diagonal. Hovering a
cell shows both neurons (their ids, labels and, with a thumbnail source, their images
fetched lazily from Python) and the value; the wheel zooms, dragging pans, a click
selects the row's neuron alone (ctrl- or cmd-click toggles it, shift-click selects the
rows from the last clicked one) and a shift-drag (brush) selects a range of rows. The
selection is the synced trait ``selected`` (original neuron ids), so
``rw.widgets.link(heatmap, gallery)`` keeps a gallery in step.

What crosses the wire (binary, never JSON lists of numbers):

- ``values``: the matrix as ``{"values": <array>, "k", "packing", "quantized", "lo",
  "hi"}``. A symmetric matrix sends only its upper triangle (``packing="upper"``,
  k (k + 1) / 2 entries, row by row). Small matrices (k <= 512) go as float32; larger
  ones are quantised to uint16 codes ``q`` with ``value = lo + q * (hi - lo) / 65535``
  (error at most (hi - lo) / 131070, far below what a colour or a three-digit tooltip
  shows). A 2,048 x 2,048 distance matrix is 4.2 MB instead of 33.5 MB of float64.
- ``permutation``: int32 [k], the display order (row r shows neuron ``permutation[r]``).
- ``neuron_ids``: int32 [k], the original id of every row of the matrix.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(40, 8))
    >>> D = np.linalg.norm(X[:, None] - X[None], axis=-1)
    >>> hm = DistanceHeatmap(D, labels=[f"n{i}" for i in range(40)])
    >>> sorted(hm.order_ids) == list(range(40))
    True
    >>> hm.selected = [3, 5]
"""

from __future__ import annotations

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
    decode_array,
    encode_array,
    image_fetch_handler,
    static_css,
    static_esm,
    to_numpy,
)
from repwidgets.widgets.traits import ArrayDict, ArrayTrait, Choice

ENCODINGS = ("auto", "float32", "uint16", "uint8")
ORDERS = ("cluster", "none")
COLORMAPS = ("viridis", "magma", "greys", "rdbu")
#: largest k sent as float32 by ``encoding="auto"``; larger matrices go as uint16.
AUTO_FLOAT32_MAX_K = 512
#: largest k for which the clustering also optimises the leaf order (O(k^3) work).
OPTIMAL_ORDERING_MAX_K = 256

_QMAX = {"uint8": 255, "uint16": 65535}


# ----------------------------------------------------------------------------- checks
def check_matrix(matrix: Any, name: str = "matrix") -> np.ndarray:
    """Check a k x k matrix and return it as float64 numpy.

    Raises:
        ValueError: not 2-D or not square, fewer than 2 rows, NaN or infinite entries
            (naming the rows that hold them).
        TypeError: not numbers.

    Example:
        >>> check_matrix(np.eye(2)).dtype
        dtype('float64')
    """
    a = np.asarray(to_numpy(matrix))
    if a.dtype.kind not in "fiub":
        raise TypeError(
            f"{name} must hold numbers (a numpy array or torch tensor); got dtype {a.dtype}."
        )
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(
            f"{name} must be a square k x k matrix (one row and one column per neuron); got "
            f"shape {tuple(a.shape)}. For activations [n_samples, k], compute distances first, "
            "e.g. rw.dora.ea_distance(A)."
        )
    k = a.shape[0]
    if k < 2:
        raise ValueError(
            f"{name} is {k} x {k}: a heatmap needs at least 2 neurons to compare. Pass a "
            "matrix over two or more neurons."
        )
    a = a.astype(np.float64)
    finite = np.isfinite(a)
    if not finite.all():
        rows = np.flatnonzero(~finite.all(axis=1))
        kind = "NaN" if np.isnan(a).any() else "infinite"
        raise ValueError(
            f"{name} has {kind} values in rows {rows[:10].tolist()}"
            f"{' and more' if rows.size > 10 else ''} ({int((~finite).sum())} entries). "
            "Drop those neurons (e.g. dead ones) or replace the values before plotting."
        )
    return a


def is_symmetric(matrix: np.ndarray, rtol: float = 1e-6) -> bool:
    """True when ``matrix`` equals its transpose up to ``rtol`` of its largest value."""
    scale = float(np.abs(matrix).max()) if matrix.size else 0.0
    return bool(np.allclose(matrix, matrix.T, rtol=0.0, atol=rtol * max(scale, 1e-300)))


# ----------------------------------------------------------------------------- wire
def matrix_state(
    matrix: Any, encoding: str = "auto", symmetric: bool | None = None
) -> dict[str, Any]:
    """The heatmap's ``values`` state of a k x k matrix, its array still a numpy array.

    Args:
        matrix: [k, k] numbers (numpy or torch).
        encoding: "float32", "uint16" or "uint8" (quantised between the matrix's min and
            max), or "auto" (float32 up to k = 512, uint16 above).
        symmetric: send only the upper triangle; None decides from the values.

    Returns:
        ``{"values": 1-D array, "k", "packing", "quantized", "lo", "hi"}``; the
        ``values`` trait sends the array as a binary buffer (see :func:`encode_matrix`).
    """
    a = check_matrix(matrix)
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}; got {encoding!r}.")
    k = a.shape[0]
    if encoding == "auto":
        encoding = "float32" if k <= AUTO_FLOAT32_MAX_K else "uint16"
    sym = is_symmetric(a) if symmetric is None else bool(symmetric)
    flat = a[np.triu_indices(k)] if sym else a.ravel()
    lo, hi = float(a.min()), float(a.max())
    if encoding == "float32":
        values = flat.astype(np.float32)
    else:
        qmax = _QMAX[encoding]
        span = hi - lo
        q = np.zeros_like(flat) if span == 0 else np.rint((flat - lo) * (qmax / span))
        values = np.clip(q, 0, qmax).astype(encoding)
    return {
        "values": values,
        "k": int(k),
        "packing": "upper" if sym else "full",
        "quantized": encoding != "float32",
        "lo": lo,
        "hi": hi,
    }


def encode_matrix(
    matrix: Any, encoding: str = "auto", symmetric: bool | None = None
) -> dict[str, Any]:
    """Encode a k x k matrix for the front end (see the module docstring).

    The wire form of :func:`matrix_state`: the same dict with ``values`` as
    ``encode_array(...)``.

    Example:
        >>> m = encode_matrix(np.array([[0.0, 2.0], [2.0, 0.0]]), encoding="uint8")
        >>> m["packing"], m["values"]["dtype"], m["values"]["shape"]
        ('upper', 'uint8', [3])
    """
    state = matrix_state(matrix, encoding=encoding, symmetric=symmetric)
    return {**state, "values": encode_array(state["values"])}


def decode_matrix(state: Mapping[str, Any]) -> np.ndarray:
    """The inverse of :func:`encode_matrix` (or of :func:`matrix_state`): float64 [k, k].

    Example:
        >>> m = np.array([[0.0, 1.0], [3.0, 0.0]])
        >>> decode_matrix(encode_matrix(m)).tolist()
        [[0.0, 1.0], [3.0, 0.0]]
    """
    meta = state["values"]
    if isinstance(meta, Mapping):
        meta = decode_array(meta["buffer"], meta["dtype"], meta["shape"])
    flat = np.asarray(meta).astype(np.float64)
    k = int(state["k"])
    if state.get("quantized"):
        qmax = _QMAX[np.asarray(meta).dtype.name]
        flat = state["lo"] + flat * ((state["hi"] - state["lo"]) / qmax)
    if state["packing"] == "upper":
        out = np.zeros((k, k))
        iu = np.triu_indices(k)
        out[iu] = flat
        out.T[iu] = flat
        return out
    return flat.reshape(k, k)


# ----------------------------------------------------------------------------- ordering
def cluster_order(matrix: Any, similarity: bool = False, optimal: bool | None = None) -> np.ndarray:
    """Leaf order of average-linkage hierarchical clustering on a distance matrix.

    Args:
        matrix: [k, k] distances (symmetrised as (D + D.T) / 2, diagonal ignored).
        similarity: the matrix holds similarities (larger = closer); they are turned into
            distances ``max - S`` first.
        optimal: also optimise the leaf order so neighbouring rows are as close as
            possible (scipy's optimal_leaf_ordering); None does it for k <= 256.

    Returns:
        int64 [k], a permutation: display row r shows neuron ``order[r]``.

    Example:
        >>> D = np.array([[0, 9, 1, 9], [9, 0, 9, 1], [1, 9, 0, 9], [9, 1, 9, 0.0]])
        >>> order = cluster_order(D).tolist()
        >>> abs(order.index(0) - order.index(2)) == 1
        True
    """
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    d = check_matrix(matrix)
    d = (d + d.T) / 2
    if similarity:
        d = d.max() - d
    if d.min() < 0:  # a constant shift keeps average linkage's merges unchanged
        d = d - d.min()
    np.fill_diagonal(d, 0.0)
    k = d.shape[0]
    if optimal is None:
        optimal = k <= OPTIMAL_ORDERING_MAX_K
    condensed = squareform(d, checks=False)
    Z = linkage(condensed, method="average", optimal_ordering=bool(optimal))
    return leaves_list(Z).astype(np.int64)


# ----------------------------------------------------------------------------- widget
def _as_thumbnail_source(thumbnails: Any, ids: list[int]) -> ImageSource | None:
    if thumbnails is None:
        return None
    if isinstance(thumbnails, (list, tuple)):
        if len(thumbnails) != len(ids):
            raise ValueError(
                f"thumbnails has {len(thumbnails)} images but the matrix has {len(ids)} "
                "neurons; give one encoded image per neuron, or a callable ids -> images."
            )
        thumbnails = dict(zip(ids, thumbnails))
    return as_image_source(thumbnails)


class DistanceHeatmap(anywidget.AnyWidget):
    """An interactive k x k heatmap of distances between neurons, clustered and zoomable.

    Args:
        matrix: [k, k] distances (or similarities with ``similarity=True``), numpy or
            torch. Rows and columns follow ``ids``.
        labels: optional text per neuron (shown on hover, always as text).
        order: "cluster" (average-linkage leaf order) or "none" (the given order).
        thumbnails: image source for the hover: a callable ``ids -> list[bytes]`` (one
            encoded PNG/JPEG/WebP per id), a dict id -> bytes, a list of bytes (one per
            neuron) or None. Images are fetched lazily, for the hovered cell only.
        ids: the original id of every row (default ``0..k-1``); ``selected`` holds these.
        selected: initially selected ids.
        similarity: the matrix holds similarities (clustering uses ``max - S``).
        encoding: wire encoding, see :func:`encode_matrix`.
        colormap: "viridis", "magma", "greys" or "rdbu".
        vmin, vmax: colour scale limits (default: the matrix's min and max).
        value_name: what a value is, for the tooltip and the legend ("distance").
        title: shown in the toolbar.
        height: height of the matrix area in pixels.

    Example:
        >>> hm = DistanceHeatmap(np.array([[0.0, 1.0], [1.0, 0.0]]), ids=[7, 9])
        >>> hm.ids
        [7, 9]
    """

    _esm = static_esm("heatmap")
    _css = static_css("heatmap")

    values = ArrayDict({"values": ArrayTrait(("float32", "uint16", "uint8"), ndim=1)}).tag(
        sync=True
    )
    permutation = ArrayTrait("int32", ndim=1).tag(sync=True)
    neuron_ids = ArrayTrait("int32", ndim=1).tag(sync=True)
    labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    order = Choice(ORDERS).tag(sync=True)
    selected = traitlets.List(traitlets.Int()).tag(sync=True)
    colormap = Choice(COLORMAPS).tag(sync=True)
    vmin = traitlets.Float(None, allow_none=True).tag(sync=True)
    vmax = traitlets.Float(None, allow_none=True).tag(sync=True)
    value_name = traitlets.Unicode("distance").tag(sync=True)
    has_thumbnails = traitlets.Bool(False).tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    height = traitlets.Int(520).tag(sync=True)

    def __init__(
        self,
        matrix: Any,
        labels: Sequence[str] | None = None,
        order: str = "cluster",
        thumbnails: ImageSource | Mapping | Sequence[bytes] | None = None,
        *,
        ids: Sequence[int] | None = None,
        selected: Sequence[int] = (),
        similarity: bool = False,
        encoding: str = "auto",
        colormap: str = "viridis",
        vmin: float | None = None,
        vmax: float | None = None,
        value_name: str = "distance",
        title: str = "",
        height: int = 520,
        **kwargs: Any,
    ) -> None:
        m = check_matrix(matrix)
        k = m.shape[0]
        if ids is None:
            id_list = list(range(k))
        else:
            raw = np.asarray(to_numpy(ids)).ravel()
            if raw.dtype.kind not in "iu":
                raise TypeError(f"ids must be ints (neuron ids); got dtype {raw.dtype}.")
            id_list = [int(i) for i in raw]
            if len(id_list) != k:
                raise ValueError(f"ids has {len(id_list)} entries but the matrix is {k} x {k}.")
            if len(set(id_list)) != k:
                raise ValueError("ids must be unique: every row is a different neuron.")
        if labels is None:
            label_list = [""] * k
        else:
            if isinstance(labels, str):
                raise TypeError("labels must be a list of strings (one per neuron), not a str.")
            label_list = ["" if x is None else str(x) for x in labels]
            if len(label_list) != k:
                raise ValueError(
                    f"labels has {len(label_list)} entries but the matrix has {k} neurons."
                )
        self._matrix = m
        self._similarity = bool(similarity)
        self._cluster_order: np.ndarray | None = None
        self._ids = id_list
        self._id_set = set(id_list)
        self._source = _as_thumbnail_source(thumbnails, id_list)
        super().__init__(
            values=matrix_state(m, encoding=encoding),
            neuron_ids=np.asarray(id_list, dtype=np.int64),
            labels=label_list,
            order=order,
            colormap=colormap,
            vmin=vmin,
            vmax=vmax,
            value_name=value_name,
            has_thumbnails=self._source is not None,
            title=title,
            height=height,
            **kwargs,
        )
        self.permutation = self._permutation_for(self.order)
        self.selected = [int(i) for i in selected]
        self._router = RequestRouter(self)
        self._router.register("fetch", image_fetch_handler(self._images, max_keys=64))

    # --- ordering ----------------------------------------------------------------------
    def _permutation_for(self, order: str) -> np.ndarray:
        k = self._matrix.shape[0]
        if order == "none":
            return np.arange(k, dtype=np.int64)
        if self._cluster_order is None:
            self._cluster_order = cluster_order(self._matrix, similarity=self._similarity)
        return self._cluster_order

    @traitlets.observe("order")
    def _on_order(self, change: dict) -> None:
        if getattr(self, "_ids", None) is not None:
            self.permutation = self._permutation_for(change["new"])

    # --- selection -----------------------------------------------------------------------
    @traitlets.validate("selected")
    def _validate_selected(self, proposal: Any) -> list[int]:
        return checked_selection(
            proposal["value"],
            getattr(self, "_id_set", None),
            "rows of this heatmap",
            "Valid ids are in .ids (the ids= given, or 0..k-1).",
        )

    # --- Python API ------------------------------------------------------------------------
    @property
    def k(self) -> int:
        """Number of neurons (rows)."""
        return self._matrix.shape[0]

    @property
    def ids(self) -> list[int]:
        """The original id of every row of the matrix, in the matrix's order."""
        return list(self._ids)

    @property
    def matrix(self) -> np.ndarray:
        """The matrix as given (float64 [k, k], rows in the order of ``ids``)."""
        return self._matrix.copy()

    @property
    def order_positions(self) -> np.ndarray:
        """The display order as row positions: display row r shows matrix row ``[r]``."""
        return self._permutation_for(self.order).copy()

    @property
    def order_ids(self) -> list[int]:
        """Neuron ids from the top row of the display to the bottom."""
        return [self._ids[int(p)] for p in self._permutation_for(self.order)]

    def value(self, a: int, b: int) -> float:
        """The matrix value between neuron ids ``a`` and ``b``."""
        pos = {i: p for p, i in enumerate(self._ids)}
        for i in (a, b):
            if i not in pos:
                raise KeyError(f"No neuron with id {i} in this heatmap; see .ids.")
        return float(self._matrix[pos[a], pos[b]])

    def _images(self, keys: list) -> list[bytes]:
        if self._source is None:
            raise ValueError("This heatmap has no thumbnails; pass thumbnails= to show images.")
        bad = [k for k in keys if not isinstance(k, int) or k not in self._id_set]
        if bad:
            raise KeyError(f"No neuron with id(s) {bad[:10]} in this heatmap.")
        return list(self._source([int(k) for k in keys]))

    def __repr__(self) -> str:
        return f"DistanceHeatmap({self.k} x {self.k}, {len(self.selected)} selected)"


__all__ = [
    "DistanceHeatmap",
    "check_matrix",
    "cluster_order",
    "decode_matrix",
    "encode_matrix",
    "matrix_state",
]
