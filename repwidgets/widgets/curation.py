"""CurationSelector: mark the samples of a mid-range band keep / spurious / exclude.

The grid shows the band's samples (highest score first) with their score, label,
prediction and group; thumbnails are fetched lazily for the samples on screen. The
person moves the band with a slider pair (Python selects the new samples; moving one
handle keeps the other end exactly where it was, and the widget says how many marked
samples the band no longer shows: their marks stay in the file), and marks the
focused sample with the keyboard (``k`` keep, ``s`` spurious, ``x`` exclude, ``0`` /
Backspace clears, ``u`` undo, arrows move) or with the mouse (the K / S / X buttons of
each cell). Every mark goes to Python, which writes the curation file atomically before
the mark shows as saved; the marks are the synced trait ``marks`` and the live Python
view ``selected``.

Marks survive re-displaying the widget (they live in the model), a kernel restart
(``m.curate("curation.json")`` reloads the file) and a crash mid-write (the previous
file stays intact, see :mod:`repwidgets.curation_store`).

Example:
    >>> m = rw.midrange.select(sess, class_index=0)       # doctest: +SKIP
    >>> cur = m.curate("curation.json")                   # doctest: +SKIP
    >>> cur                                              # shows the grid   # doctest: +SKIP
    >>> cur.selected                                     # doctest: +SKIP
    {'keep': [12, 40], 'spurious': [7], 'exclude': []}
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import anywidget
import numpy as np
import traitlets

from repwidgets.curation_store import MARKS, Curation, CurationFileError
from repwidgets.widgets._transport import (
    RequestRouter,
    encode_array,
    image_fetch_handler,
    json_safe,
    static_esm,
)

_BINS = 48


class CurationSelector(anywidget.AnyWidget):
    """A grid of a band's samples to mark keep / spurious / exclude, saved on every change.

    Build it with :meth:`MidrangeResult.curate` (or :meth:`from_result`).

    Attributes:
        selected: ``{"keep": [...], "spurious": [...], "exclude": [...]}``, live.
        curation: the :class:`~repwidgets.curation_store.Curation` (file I/O).
        result: the current band (:class:`~repwidgets.engines.midrange.MidrangeResult`).
    """

    _esm = static_esm("curation")

    items = traitlets.Dict().tag(sync=True)
    class_names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    group_names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    marks = traitlets.Dict().tag(sync=True)
    band = traitlets.List(traitlets.Float(), default_value=[0.25, 0.75]).tag(sync=True)
    absolute = traitlets.Bool(False).tag(sync=True)
    limits = traitlets.List(traitlets.Float(), default_value=[0.0, 0.0]).tag(sync=True)
    histogram = traitlets.Dict().tag(sync=True)
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
        result: Any,
        curation: Curation,
        session: Any = None,
        *,
        thumb_size: int = 72,
        height: int = 480,
        image_size: int = 64,
        **kwargs: Any,
    ) -> None:
        super().__init__(thumb_size=thumb_size, height=height, **kwargs)
        self._lock = threading.RLock()
        self.curation = curation
        self.result = result
        self._session = session
        self._image_size = int(image_size)
        self._show_result(result)
        self._sync_marks()
        self.file = str(curation.path) if curation.path is not None else ""
        self.can_move_band = session is not None
        self._listener = lambda _cur: self._sync_marks()
        curation.observe(self._listener)
        self._router = RequestRouter(self)
        self._router.register("fetch", image_fetch_handler(self._thumbnails))
        self._router.register("mark", self._handle_mark)
        self._router.register("undo", self._handle_undo)
        self._router.register("band", self._handle_band)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_result(
        cls,
        result: Any,
        path: str | os.PathLike | None = "curation.json",
        session: Any = None,
        **kwargs: Any,
    ) -> CurationSelector:
        """The widget over band ``result``, its marks kept in ``path`` (None: in memory)."""
        sess = session if session is not None else getattr(result, "_session", None)
        if sess is not None and result._session is None:
            result._session = sess
        curation = result.curation(path)
        return cls(result, curation, sess, **kwargs)

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
        """Move the band (quantiles, or values for an absolute band); needs the session."""
        if self._session is None:
            raise ValueError(
                "Moving the band needs the session: build the widget with m.curate(path, "
                "session=sess)."
            )
        new = self.result.reselect(band=(float(low), float(high)))
        with self._lock:
            self.result = new
            self._show_result(new)

    def move_band_end(self, end: str, value: float) -> None:
        """Move one end of the band (``"low"`` or ``"high"``) to ``value``; the other end
        keeps its exact value (a moved end that would cross it stops there)."""
        if end not in ("low", "high"):
            raise ValueError(f"end must be 'low' or 'high', got {end!r}")
        self.set_band(*self._moved_band([value, value], end))

    def marked_outside_band(self) -> list[int]:
        """Marked samples that the current band does not show (their marks stay in the
        file and in ``selected``)."""
        shown = {int(i) for i in self.result.indices.tolist()}
        return sorted(int(s) for s in self.curation.marks if int(s) not in shown)

    def to_frame(self):
        """The band's samples (see ``MidrangeResult.to_frame``) with a ``mark`` column."""
        frame = self.result.to_frame()
        marks = self.curation.marks
        frame.insert(1, "mark", [marks.get(int(i), "") for i in frame["sample"]])
        return frame

    def reload(self) -> None:
        """Take the marks from the file again (for example after editing it by hand)."""
        self.curation.reload()

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.counts().items())
        return f"CurationSelector({len(self.result)} samples in band, {counts})"

    # ------------------------------------------------------------------ state
    def _show_result(self, m: Any) -> None:
        labels = m.labels.numpy().astype(np.int64)
        preds = m.predictions.numpy().astype(np.int64)
        groups = m.groups.numpy().astype(np.int64)
        self.items = {
            "samples": encode_array(m.indices.numpy().astype(np.int64)),
            "scores": encode_array(m.values.numpy().astype(np.float32)),
            "logits": encode_array(m.logits.numpy().astype(np.float32)),
            "labels": encode_array(labels),
            "predictions": encode_array(preds),
            "groups": encode_array(groups),
        }
        values = m.population_values.double().numpy()
        values = values[np.isfinite(values)]
        if values.size:
            lo, hi = float(values.min()), float(values.max())
            counts, _ = np.histogram(values, bins=_BINS, range=(lo, hi if hi > lo else lo + 1))
        else:
            lo, hi, counts = 0.0, 1.0, np.zeros(_BINS)
        self.histogram = {"counts": encode_array(counts.astype(np.float32)), "range": [lo, hi]}
        self.class_names = [str(c) for c in m.class_names]
        self.group_names = [str(g) for g in m.group_names]
        self.band = [float(b) for b in m.band]
        self.absolute = bool(m.absolute)
        self.limits = [float(v) for v in json_safe(list(m.limits))]
        self.score_name = str(m.score)
        who = "within class" if m.within == "class" else "over all samples"
        self.title = f"{m.class_name} · {m.score} {who} · {m.split}"
        self.version += 1

    def _sync_marks(self) -> None:
        marks = {str(i): m for i, m in self.curation.marks.items()}
        if marks != self.marks:
            self.marks = marks

    # ------------------------------------------------------------------ browser requests
    def _thumbnails(self, keys: list) -> list[bytes]:
        if self._session is None:
            raise ValueError("No session to draw thumbnails from; pass session= to curate().")
        return list(
            self._session.thumbnails(
                [int(k) for k in keys], split=self.result.split, size=self._image_size
            )
        )

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
        return {"band": list(self.band), "n": len(self.result), "outside": outside}, []

    def close(self) -> None:
        self.curation.unobserve(self._listener)
        super().close()
