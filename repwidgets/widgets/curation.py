"""CurationSelector: mark candidate samples keep / spurious / exclude.

The grid shows :class:`~repwidgets.candidates.Candidates` (highest score first) with
their score, label, prediction and group; thumbnails are fetched lazily for the
samples on screen. The person moves the band with a slider pair (Python asks the
candidates' ``reselect`` for the samples of the new band; moving one handle keeps the
other end exactly where it was, and the widget says how many marked samples the band
no longer shows: their marks stay in the file), and marks the focused sample with the
keyboard (``k`` keep, ``s`` spurious, ``x`` exclude, ``0`` / Backspace clears, ``u``
undo, arrows move) or with the mouse (the K / S / X buttons of each cell). Every mark
goes to Python, which writes the curation file atomically before the mark shows as
saved; the marks are the synced trait ``marks`` and the live Python view ``selected``.
Candidates without ``reselect`` have a fixed band: the band control is disabled.

Marks survive re-displaying the widget (they live in the model), a kernel restart
(opening the same file reloads them) and a crash mid-write (the previous file stays
intact, see :mod:`repwidgets.curation_store`).

Example:
    >>> m = rw.midrange.select(sess, class_index=0)       # doctest: +SKIP
    >>> cur = m.curate("curation.json")                   # doctest: +SKIP
    >>> cur                                              # shows the grid   # doctest: +SKIP
    >>> cur.selected                                     # doctest: +SKIP
    {'keep': [12, 40], 'spurious': [7], 'exclude': []}
    >>> CurationSelector(candidates, images=sess)        # any Candidates   # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import anywidget
import numpy as np
import traitlets

from repwidgets.candidates import Candidates
from repwidgets.curation_store import MARKS, Curation, CurationFileError
from repwidgets.widgets._transport import (
    ImageSource,
    RequestRouter,
    as_image_source,
    image_fetch_handler,
    json_safe,
    static_css,
    static_esm,
)
from repwidgets.widgets.traits import ArrayDict, ArrayTrait

if TYPE_CHECKING:
    from repwidgets.session import Session

_BINS = 48

_INT = ArrayTrait("int32", ndim=1)
_FLOAT = ArrayTrait("float32", ndim=1)


def thumbnail_source(images: Any, split: Callable[[], str], size: int) -> ImageSource | None:
    """An image source for sample indices: ``images`` itself (a callable or a dict), or
    the thumbnails of a session (anything with ``thumbnails``) in the current ``split()``."""
    if images is None:
        return None
    if hasattr(images, "thumbnails"):
        sess: Session = images

        def from_session(keys: list) -> list[bytes]:
            return list(sess.thumbnails([int(k) for k in keys], split=split(), size=size))

        return from_session
    return as_image_source(images)


class CurationSelector(anywidget.AnyWidget):
    """A grid of candidate samples to mark keep / spurious / exclude, saved on every change.

    Args:
        candidates: the samples to show (:class:`~repwidgets.candidates.Candidates`).
        curation: where the marks live (default: ``candidates.curation()``, in memory).
        images: the samples' thumbnails: a callable ``sample indices -> list[bytes]``, a
            dict index -> bytes, or a session (its ``thumbnails`` of the candidates'
            split); None shows no images.
        thumb_size: thumbnail size on screen in pixels; height: grid height in pixels.
        image_size: thumbnail size requested from a session, in pixels.

    Attributes:
        selected: ``{"keep": [...], "spurious": [...], "exclude": [...]}``, live.
        curation: the :class:`~repwidgets.curation_store.Curation` (file I/O).
        candidates: the current band's :class:`~repwidgets.candidates.Candidates`.
    """

    _esm = static_esm("curation")
    _css = static_css("curation")

    items = ArrayDict(
        {
            "samples": _INT,
            "scores": _FLOAT,
            "logits": _FLOAT,
            "labels": _INT,
            "predictions": _INT,
            "groups": _INT,
        }
    ).tag(sync=True)
    class_names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    group_names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    marks = traitlets.Dict().tag(sync=True)
    band = traitlets.List(traitlets.Float(), default_value=[0.25, 0.75]).tag(sync=True)
    absolute = traitlets.Bool(False).tag(sync=True)
    limits = traitlets.List(traitlets.Float(), default_value=[0.0, 0.0]).tag(sync=True)
    histogram = ArrayDict({"counts": _FLOAT}).tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    score_name = traitlets.Unicode("logit").tag(sync=True)
    file = traitlets.Unicode("").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    version = traitlets.Int(0).tag(sync=True)
    thumb_size = traitlets.Int(72).tag(sync=True)
    height = traitlets.Int(480).tag(sync=True)
    can_move_band = traitlets.Bool(True).tag(sync=True)

    def __init__(
        self,
        candidates: Candidates,
        curation: Curation | None = None,
        *,
        images: ImageSource | Any = None,
        thumb_size: int = 72,
        height: int = 480,
        image_size: int = 64,
        **kwargs: Any,
    ) -> None:
        if not isinstance(candidates, Candidates):
            raise TypeError(
                f"CurationSelector shows Candidates (repwidgets.candidates.Candidates); got "
                f"{type(candidates).__name__}. A result with candidates gives them by "
                "result.candidates()."
            )
        super().__init__(thumb_size=thumb_size, height=height, **kwargs)
        self._lock = threading.RLock()
        self.curation = curation if curation is not None else candidates.curation()
        self.candidates = candidates
        self._images = thumbnail_source(images, lambda: self.candidates.split, int(image_size))
        self._show(candidates)
        self._sync_marks()
        self.file = str(self.curation.path) if self.curation.path is not None else ""
        self.can_move_band = candidates.movable
        self._listener = lambda _cur: self._sync_marks()
        self.curation.observe(self._listener)
        self._router = RequestRouter(self)
        self._router.register("fetch", image_fetch_handler(self._thumbnails))
        self._router.register("mark", self._handle_mark)
        self._router.register("undo", self._handle_undo)
        self._router.register("band", self._handle_band)

    # ------------------------------------------------------------------ Python API
    @property
    def selected(self) -> dict[str, list[int]]:
        """``{"keep": [...], "spurious": [...], "exclude": [...]}`` (live, sorted indices)."""
        return self.curation.selected

    def counts(self) -> dict[str, int]:
        return self.curation.counts()

    def mark(self, sample: int, mark: str | None) -> None:
        """Mark a sample from Python (the grid updates)."""
        self.curation.mark(sample, mark)

    def undo(self) -> tuple[int, str | None] | None:
        """Revert the last mark."""
        return self.curation.undo()

    def set_band(self, low: float, high: float) -> None:
        """Move the band (quantiles, or values for an absolute band); the candidates'
        ``reselect`` picks the new samples (a ValueError when the band is fixed)."""
        if not self.candidates.movable:
            raise ValueError(
                "These candidates have a fixed band (no reselect function), so the band "
                "cannot be moved. For a mid-range band loaded from a file, open the widget "
                "with the session: m.curate(path, session=sess)."
            )
        new = self.candidates.with_band((float(low), float(high)))
        with self._lock:
            self.candidates = new
            self._show(new)

    def move_band_end(self, end: str, value: float) -> None:
        """Move one end of the band (``"low"`` or ``"high"``) to ``value``; the other end
        keeps its exact value (a moved end that would cross it stops there)."""
        if end not in ("low", "high"):
            raise ValueError(f"end must be 'low' or 'high', got {end!r}")
        self.set_band(*self._moved_band([value, value], end))

    def marked_outside_band(self) -> list[int]:
        """Marked samples that the current band does not show (their marks stay in the
        file and in ``selected``)."""
        shown = {int(i) for i in self.candidates.samples.tolist()}
        return sorted(int(s) for s in self.curation.marks if int(s) not in shown)

    def to_frame(self):
        """The band's samples (``Candidates.to_frame``) with a ``mark`` column."""
        frame = self.candidates.to_frame()
        marks = self.curation.marks
        frame.insert(1, "mark", [marks.get(int(i), "") for i in frame["sample"]])
        return frame

    def reload(self) -> None:
        """Take the marks from the file again (for example after editing it by hand)."""
        self.curation.reload()

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.counts().items())
        return f"CurationSelector({len(self.candidates)} samples in band, {counts})"

    # ------------------------------------------------------------------ state
    def _show(self, c: Candidates) -> None:
        self.items = {
            "samples": c.samples.numpy(),
            "scores": c.scores.numpy(),
            "logits": np.asarray(c.extra.get("logit", c.scores), dtype=np.float32),
            "labels": c.labels.numpy(),
            "predictions": c.predictions.numpy(),
            "groups": c.groups.numpy(),
        }
        self.histogram = population_histogram(c.population.double().numpy())
        self.class_names = list(c.class_names)
        self.group_names = list(c.group_names)
        self.band = [float(b) for b in c.band]
        self.absolute = bool(c.absolute)
        self.limits = [float(v) for v in json_safe(list(c.limits))]
        self.score_name = str(c.score_name)
        self.title = str(c.title)
        self.version += 1

    def _sync_marks(self) -> None:
        marks = {str(i): m for i, m in self.curation.marks.items()}
        if marks != self.marks:
            self.marks = marks

    # ------------------------------------------------------------------ browser requests
    def _thumbnails(self, keys: list) -> list[bytes]:
        if self._images is None:
            raise ValueError(
                "No images to show: pass images= (a session or a callable) to the widget, "
                "or session= to curate()."
            )
        return list(self._images([int(k) for k in keys]))

    def _handle_mark(self, content: dict, _buffers: list) -> tuple[dict, list]:
        sample = content.get("sample")
        mark = content.get("mark")
        if mark not in (*MARKS, None):
            raise ValueError(f"unknown mark {mark!r}")
        if isinstance(sample, bool) or not isinstance(sample, int):
            raise TypeError(f"sample must be an int, got {sample!r}")
        try:
            self.curation.mark(sample, mark)
            self.error = ""
        except (OSError, CurationFileError) as exc:
            self.error = str(exc)
            raise
        self._sync_marks()
        return {"sample": sample, "mark": mark, "counts": self.counts()}, []

    def _handle_undo(self, _content: dict, _buffers: list) -> tuple[dict, list]:
        try:
            undone = self.curation.undo()
            self.error = ""
        except (OSError, CurationFileError) as exc:
            self.error = str(exc)
            raise
        self._sync_marks()
        if undone is None:
            return {"sample": None, "mark": None}, []
        return {"sample": undone[0], "mark": undone[1]}, []

    def _moved_band(self, band: Sequence, moved: Any) -> tuple[float, float]:
        """The band the browser asks for: the ends it ``moved`` ("low", "high" or both)
        from ``band``, the others exactly as they are here (the browser's copy of an end
        it did not move may have drifted in its slider)."""
        if moved is None:
            return float(band[0]), float(band[1])
        ends = {moved} if isinstance(moved, str) else set(moved)
        if not ends <= {"low", "high"}:
            raise ValueError(f"moved must name 'low' and/or 'high', got {moved!r}")
        low, high = (float(b) for b in self.band)
        if "low" in ends:
            low = float(band[0]) if "high" in ends else min(float(band[0]), high)
        if "high" in ends:
            high = float(band[1]) if "low" in ends else max(float(band[1]), low)
        return low, high

    def _handle_band(self, content: dict, _buffers: list) -> tuple[dict, list]:
        band = content.get("band")
        if not isinstance(band, Sequence) or len(band) != 2:
            raise ValueError(f"band must be [low, high], got {band!r}")
        self.set_band(*self._moved_band(band, content.get("moved")))
        outside = len(self.marked_outside_band())
        return {"band": list(self.band), "n": len(self.candidates), "outside": outside}, []

    def close(self) -> None:
        curation = getattr(self, "curation", None)  # None: the constructor refused its input
        if curation is not None:
            curation.unobserve(self._listener)
        super().close()


def population_histogram(values: np.ndarray, bins: int = _BINS) -> dict:
    """``{"counts": float32 [bins], "range": [lo, hi]}`` of the finite ``values``."""
    values = values[np.isfinite(values)]
    if values.size:
        lo, hi = float(values.min()), float(values.max())
        counts, _ = np.histogram(values, bins=bins, range=(lo, hi if hi > lo else lo + 1))
    else:
        lo, hi, counts = 0.0, 1.0, np.zeros(bins)
    return {"counts": counts.astype(np.float32), "range": [lo, hi]}
