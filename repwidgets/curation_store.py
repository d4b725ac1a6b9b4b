"""Curated marks on samples (keep / spurious / exclude), saved to a JSON file on every change.

A :class:`Curation` is the durable half of mid-range curation: the person (or a rule)
marks samples of a split, and every change is written at once, atomically (a temporary
file in the same folder, flushed and fsync'ed, then ``os.replace``), so that a crash
mid-write leaves the previous file intact and a kernel restart loses nothing.

The file is plain JSON that a person can read::

    {
      "format": "repwidgets.curation",
      "schema_version": 1,
      "split": "train",
      "n_samples": 2000,
      "dataset": {"name": "shapes", "fingerprint": "3f2a..."},
      "context": {"class_index": 2, "band": [0.25, 0.75], ...},
      "updated": "2025-01-01T12:00:00+00:00",
      "marks": [{"sample": 12, "mark": "keep"}, {"sample": 40, "mark": "spurious"}]
    }

Safety rules:

- a file that is not valid JSON, or JSON that is not a curation file, or a curation
  file from a newer schema, raises :class:`CurationFileError` and is never touched;
- if the file changes on disk behind our back (another program, a hand edit), the next
  write refuses with :class:`CurationFileError` instead of overwriting it; ``reload()``
  takes the file's marks, ``save(force=True)`` overwrites on purpose;
- marks for samples that no longer exist (index >= the split's size) are kept in the
  file and reported (``vanished`` and a warning), never dropped;
- all methods are thread-safe: concurrent marks are serialised and none is lost.

Example:
    >>> cur = Curation.open("curation.json", split="train", n_samples=2000)  # doctest: +SKIP
    >>> cur.mark(12, "keep"); cur.mark(40, "spurious"); cur.undo()          # doctest: +SKIP
    >>> cur.selected                                                         # doctest: +SKIP
    {'keep': [12], 'spurious': [], 'exclude': []}
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from repwidgets.atomic import atomic_write_text

FORMAT = "repwidgets.curation"
SCHEMA_VERSION = 1
MARKS = ("keep", "spurious", "exclude")
_UNDO_LIMIT = 10_000

__all__ = [
    "FORMAT",
    "MARKS",
    "SCHEMA_VERSION",
    "Curation",
    "CurationFileError",
    "CurationWriteError",
    "VanishedMarksWarning",
]


class CurationFileError(ValueError):
    """A curation file that cannot be used (corrupted, foreign, newer, changed on disk)."""


class CurationWriteError(OSError):
    """Writing the curation file failed; the previous file is intact and the change undone."""


class VanishedMarksWarning(UserWarning):
    """Some marks refer to samples that the split no longer has."""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _check_mark(mark: Any) -> str:
    if mark not in MARKS:
        raise ValueError(f"Unknown mark {mark!r}; use one of {MARKS} (or None to remove a mark).")
    return mark


def _check_index(index: Any, n_samples: int | None) -> int:
    if isinstance(index, bool) or not hasattr(index, "__index__"):
        raise TypeError(f"Sample indices must be integers; got {type(index).__name__} {index!r}.")
    i = int(index)
    if i < 0:
        raise ValueError(f"Sample index {i} is negative; use the sample's position in the split.")
    if n_samples is not None and i >= n_samples:
        raise ValueError(
            f"Sample index {i} is out of range: the split has {n_samples} samples (0..{n_samples - 1})."
        )
    return i


def parse_curation(text: str, source: str = "<text>") -> dict:
    """Validate the text of a curation file; return its JSON object.

    Raises :class:`CurationFileError` naming what is wrong (not JSON, not a curation
    file, newer schema, malformed marks).
    """
    hint = (
        "The file was left untouched. Pass another path, or move the file away if you "
        "want to start a new curation there."
    )
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CurationFileError(
            f"{source} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            f"it is corrupted or not a curation file. {hint}"
        ) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        kind = type(doc).__name__ if not isinstance(doc, dict) else "a JSON object"
        raise CurationFileError(
            f'{source} is {kind} without "format": "{FORMAT}": it is not a repwidgets '
            f"curation file. {hint}"
        )
    version = doc.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CurationFileError(
            f"{source} has an invalid schema_version {version!r} (expected a positive integer); "
            f"it is corrupted. {hint}"
        )
    if version > SCHEMA_VERSION:
        raise CurationFileError(
            f"{source} was written with curation schema {version}, newer than this version of "
            f"repwidgets reads ({SCHEMA_VERSION}). Upgrade repwidgets to open it. {hint}"
        )
    marks = doc.get("marks")
    if not isinstance(marks, list):
        raise CurationFileError(f"{source}: 'marks' must be a list; it is corrupted. {hint}")
    seen: set[int] = set()
    for entry in marks:
        ok = (
            isinstance(entry, dict)
            and isinstance(entry.get("sample"), int)
            and not isinstance(entry.get("sample"), bool)
            and entry["sample"] >= 0
            and entry.get("mark") in MARKS
        )
        if not ok:
            raise CurationFileError(
                f'{source}: malformed mark {entry!r} (expected {{"sample": int >= 0, '
                f'"mark": one of {list(MARKS)}}}); it is corrupted. {hint}'
            )
        if entry["sample"] in seen:
            raise CurationFileError(
                f"{source}: sample {entry['sample']} is marked twice; it is corrupted. {hint}"
            )
        seen.add(entry["sample"])
    split = doc.get("split")
    if split is not None and not isinstance(split, str):
        raise CurationFileError(f"{source}: 'split' must be a string; it is corrupted. {hint}")
    return doc


class Curation:
    """Marks (keep / spurious / exclude) on samples of one split, persisted on every change.

    Create or reopen one with :meth:`open` (a file) or :meth:`in_memory` (no file). Within
    one Python process, opening the same path twice returns the same live object, so a
    re-displayed widget shows the marks made in the first.

    Args:
        path: the JSON file, or None to keep the marks in memory only.
        split: the split the sample indices refer to.
        n_samples: the split's size, when known: marks at or beyond it are reported as
            vanished, and new marks are checked against it.
        dataset: ``{"name": ..., "fingerprint": ...}`` describing the data the indices
            refer to; a file written for other data gives a warning on open.
        context: free JSON-able information about how the marks were made (class, band).

    Attributes:
        selected: ``{"keep": [...], "spurious": [...], "exclude": [...]}`` (sorted indices).
        vanished: marked indices that are out of range for ``n_samples``.
    """

    _registry: dict[str, Curation] = {}
    _registry_lock = threading.Lock()

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        split: str = "train",
        n_samples: int | None = None,
        dataset: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self.path = Path(path).expanduser().resolve() if path is not None else None
        self.split = str(split)
        self.n_samples = None if n_samples is None else int(n_samples)
        self.dataset = dict(dataset) if dataset else {}
        self.context = dict(context) if context else {}
        self._marks: dict[int, str] = {}
        self._undo: list[tuple[int, str | None]] = []
        self._listeners: list[Callable[[Curation], None]] = []
        self._disk_signature: tuple[int, int, int] | None = None
        self.created = _now()
        self.updated = self.created

    # ------------------------------------------------------------------ construction
    @classmethod
    def in_memory(
        cls, marks: Mapping[Any, Any] | None = None, *, split: str = "train", **kwargs: Any
    ) -> Curation:
        """A curation without a file; ``marks`` as ``{mark: [indices]}`` or ``{index: mark}``."""
        cur = cls(None, split=split, **kwargs)
        if marks:
            for i, m in _iter_marks(marks):
                cur._marks[_check_index(i, None)] = _check_mark(m)
        return cur

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        split: str | None = None,
        n_samples: int | None = None,
        dataset: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        create: bool = True,
    ) -> Curation:
        """Open the curation at ``path`` (reloading its marks), or start one there.

        An existing file is validated first: corrupted, foreign or newer files raise
        :class:`CurationFileError` and stay untouched. A new file is written at once
        (empty), so a missing folder or a read-only place fails now, not at the first mark.

        Args:
            split: the split the indices refer to; must match an existing file's split.
            n_samples: size of that split; marks beyond it are reported (warning).
            dataset: identity of the data; a mismatch with the file's gives a warning.
            context: information stored with the marks (class, band, score).
            create: False to raise FileNotFoundError instead of starting a new file.
        """
        resolved = Path(path).expanduser().resolve()
        key = str(resolved)
        with cls._registry_lock:
            cur = cls._registry.get(key)
            if (
                cur is not None
                and cur._disk_signature == _signature(resolved)
                and (cur._disk_signature is not None)
            ):
                cur._adopt(split=split, n_samples=n_samples, dataset=dataset, context=context)
                return cur
            cur = cls(
                resolved,
                split=split or "train",
                n_samples=n_samples,
                dataset=dataset,
                context=context,
            )
            if resolved.exists():
                cur._load_from_disk(expected_split=split)
                cur._adopt(split=split, n_samples=n_samples, dataset=dataset, context=context)
            else:
                if not create:
                    raise FileNotFoundError(
                        f"No curation file at {resolved}. Check the path, or pass create=True."
                    )
                if not resolved.parent.exists():
                    raise FileNotFoundError(
                        f"Cannot create {resolved}: the folder {resolved.parent} does not exist. "
                        "Create it first or pick another path."
                    )
                cur._write()
            cls._registry[key] = cur
            return cur

    @classmethod
    def load(cls, path: str | os.PathLike, n_samples: int | None = None) -> Curation:
        """Reopen an existing curation file (FileNotFoundError when there is none)."""
        return cls.open(path, n_samples=n_samples, create=False)

    def _adopt(self, *, split, n_samples, dataset, context) -> None:
        with self._lock:
            if split is not None and split != self.split:
                raise CurationFileError(
                    f"{self.path} holds marks for split {self.split!r}, not {split!r}. "
                    f"Use split={self.split!r} or another file."
                )
            if dataset:
                mine = self.dataset.get("fingerprint")
                theirs = dict(dataset).get("fingerprint")
                if mine and theirs and mine != theirs:
                    warnings.warn(
                        f"{self.path} was written for data {self.dataset.get('name')!r} "
                        f"(fingerprint {mine}); the current data is {dict(dataset).get('name')!r} "
                        f"(fingerprint {theirs}). Its sample indices may point to other samples.",
                        UserWarning,
                        stacklevel=3,
                    )
                elif not mine:
                    self.dataset = dict(dataset)
            if context:
                self.context.update(dict(context))
            if n_samples is not None:
                self.check(n_samples)

    def _load_from_disk(self, expected_split: str | None = None) -> None:
        assert self.path is not None
        try:
            raw = self.path.read_bytes()
            signature = _signature(self.path)
        except IsADirectoryError:
            raise CurationFileError(f"{self.path} is a folder, not a curation file.") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CurationFileError(
                f"{self.path} is not UTF-8 text: it is corrupted or not a curation file. "
                "The file was left untouched; pass another path."
            ) from None
        doc = parse_curation(text, str(self.path))
        split = doc.get("split") or "train"
        if expected_split is not None and split != expected_split:
            raise CurationFileError(
                f"{self.path} holds marks for split {split!r}, not {expected_split!r}. "
                f"Use split={split!r} or another file."
            )
        self.split = split
        self._marks = {int(e["sample"]): e["mark"] for e in doc["marks"]}
        self.dataset = dict(doc.get("dataset") or {})
        self.context = dict(doc.get("context") or {})
        self.created = doc.get("created", self.created)
        self.updated = doc.get("updated", self.updated)
        if self.n_samples is None and isinstance(doc.get("n_samples"), int):
            self.n_samples = doc["n_samples"]
        self._disk_signature = signature

    # ------------------------------------------------------------------ state
    @property
    def marks(self) -> dict[int, str]:
        """A copy of ``{sample index: mark}``."""
        with self._lock:
            return dict(sorted(self._marks.items()))

    @property
    def selected(self) -> dict[str, list[int]]:
        """``{"keep": [...], "spurious": [...], "exclude": [...]}`` with sorted indices."""
        with self._lock:
            out: dict[str, list[int]] = {m: [] for m in MARKS}
            for i, m in sorted(self._marks.items()):
                out[m].append(i)
            return out

    def counts(self) -> dict[str, int]:
        """Number of samples per mark."""
        return {m: len(v) for m, v in self.selected.items()}

    @property
    def vanished(self) -> list[int]:
        """Marked indices beyond the split's size (``n_samples``); empty when size unknown."""
        with self._lock:
            if self.n_samples is None:
                return []
            return sorted(i for i in self._marks if i >= self.n_samples)

    def check(self, n_samples: int) -> list[int]:
        """Set the split size; warn about and return marks for samples that no longer exist.

        Such marks stay in the curation and its file (a later, larger split may hold
        them again); retraining ignores them.
        """
        with self._lock:
            self.n_samples = int(n_samples)
            gone = self.vanished
        if gone:
            shown = ", ".join(map(str, gone[:10])) + (" ..." if len(gone) > 10 else "")
            warnings.warn(
                f"{len(gone)} marked sample(s) no longer exist in split {self.split!r} of "
                f"{n_samples} samples: {shown}. They are kept in "
                f"{self.path or 'the curation'} but ignored; see Curation.vanished.",
                VanishedMarksWarning,
                stacklevel=3,
            )
        return gone

    def __len__(self) -> int:
        with self._lock:
            return len(self._marks)

    def __contains__(self, index: object) -> bool:
        with self._lock:
            return index in self._marks

    def get(self, index: int) -> str | None:
        """The mark of ``index`` (None when unmarked)."""
        with self._lock:
            return self._marks.get(int(index))

    # ------------------------------------------------------------------ changes
    def mark(self, index: int, mark: str | None) -> None:
        """Mark one sample ("keep", "spurious", "exclude"; None removes its mark); saves."""
        self.mark_many([index], mark)

    def unmark(self, index: int) -> None:
        """Remove the mark of one sample; saves."""
        self.mark_many([index], None)

    def mark_many(self, indices: Iterable[int], mark: str | None) -> None:
        """Give the same mark to several samples in one change (one undo step per sample)."""
        if mark is not None:
            _check_mark(mark)
        with self._lock:
            idx = [_check_index(i, self.n_samples) for i in indices]
            changes = [(i, self._marks.get(i)) for i in idx if self._marks.get(i) != mark]
            if not changes:
                return
            self._apply(changes, [(i, mark) for i, _ in changes])

    def undo(self) -> tuple[int, str | None] | None:
        """Revert the last change; returns ``(index, restored mark)`` or None if nothing to undo."""
        with self._lock:
            if not self._undo:
                return None
            index, previous = self._undo[-1]
            current = self._marks.get(index)
            self._set(index, previous)
            try:
                self._write()
            except BaseException:
                self._set(index, current)
                raise
            self._undo.pop()
            self._notify()
            return index, previous

    def clear(self) -> None:
        """Remove every mark (undoable sample by sample); saves."""
        with self._lock:
            changes = list(self._marks.items())
            if changes:
                self._apply(changes, [(i, None) for i, _ in changes])

    def _set(self, index: int, mark: str | None) -> None:
        if mark is None:
            self._marks.pop(index, None)
        else:
            self._marks[index] = mark

    def _apply(self, before: list[tuple[int, str | None]], after: list[tuple[int, str | None]]):
        for i, m in after:
            self._set(i, m)
        try:
            self._write()
        except BaseException:
            for i, m in before:
                self._set(i, m)
            raise
        self._undo.extend(before)
        del self._undo[:-_UNDO_LIMIT]
        self._notify()

    # ------------------------------------------------------------------ I/O
    def to_json(self) -> str:
        """The file's text (what :meth:`save` writes)."""
        with self._lock:
            doc = {
                "format": FORMAT,
                "schema_version": SCHEMA_VERSION,
                "split": self.split,
                "n_samples": self.n_samples,
                "dataset": self.dataset,
                "context": self.context,
                "created": self.created,
                "updated": self.updated,
                "counts": self.counts(),
                "marks": [{"sample": i, "mark": m} for i, m in sorted(self._marks.items())],
            }
        return json.dumps(doc, indent=1) + "\n"

    def _write(self, force: bool = False) -> None:
        """Write the file (caller holds the lock). Refuses to clobber a file changed on disk."""
        if self.path is None:
            return
        current = _signature(self.path)
        if not force and current is not None and current != self._disk_signature:
            try:
                parse_curation(self.path.read_text(encoding="utf-8"), str(self.path))
                what = "was changed on disk by someone else since it was loaded"
            except (CurationFileError, UnicodeDecodeError):
                what = "was replaced on disk by something that is not a valid curation file"
            raise CurationFileError(
                f"{self.path} {what}; it was not overwritten. Call .reload() to take the "
                "file's marks, or .save(force=True) to overwrite it with these marks."
            )
        self.updated = _now()
        try:
            atomic_write_text(self.path, self.to_json())
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise CurationWriteError(
                f"Could not save the curation to {self.path} ({type(exc).__name__}: {exc}). "
                "The previous file is intact and the change was undone; check the folder "
                "is writable and has space, then repeat the mark."
            ) from exc
        self._disk_signature = _signature(self.path)

    def save(self, path: str | os.PathLike | None = None, force: bool = False) -> Path:
        """Write the marks now (to ``path`` when given, making it this curation's file).

        ``force=True`` overwrites a file that changed on disk since it was loaded.
        """
        with self._lock:
            if path is not None:
                new = Path(path).expanduser().resolve()
                if new.exists() and new != self.path and not force:
                    parse_curation(new.read_text(encoding="utf-8"), str(new))
                    raise CurationFileError(
                        f"{new} already holds a curation; pass force=True to overwrite it."
                    )
                self.path, self._disk_signature = new, _signature(new)
            if self.path is None:
                raise ValueError("This curation has no file; pass save(path=...).")
            self._write(force=force)
            with Curation._registry_lock:
                Curation._registry[str(self.path)] = self
            return self.path

    def reload(self) -> Curation:
        """Replace the marks in memory by the file's (clears the undo history)."""
        with self._lock:
            if self.path is None:
                raise ValueError("This curation has no file to reload from.")
            self._load_from_disk(expected_split=self.split)
            self._undo.clear()
            if self.n_samples is not None:
                self.check(self.n_samples)
        self._notify()
        return self

    def to_frame(self) -> pd.DataFrame:
        """One row per marked sample: ``sample``, ``mark``, ``vanished``."""
        with self._lock:
            items = sorted(self._marks.items())
            n = self.n_samples
        return pd.DataFrame(
            {
                "sample": pd.Series([i for i, _ in items], dtype="int64"),
                "mark": pd.Series([m for _, m in items], dtype="object"),
                "vanished": pd.Series([n is not None and i >= n for i, _ in items], dtype=bool),
            }
        )

    def to_csv(self, path: str | os.PathLike, frame: pd.DataFrame | None = None) -> Path:
        """Export the marks as CSV (atomically); ``frame`` adds columns joined on ``sample``.

        Example:
            >>> cur.to_csv("marks.csv", frame=m.to_frame())  # doctest: +SKIP
        """
        table = self.to_frame()
        if frame is not None:
            if "sample" not in frame.columns:
                raise ValueError("frame needs a 'sample' column to join the marks on.")
            extra = frame.drop(columns=[c for c in ("mark", "vanished") if c in frame.columns])
            table = table.merge(extra, on="sample", how="left")
        buffer = io.StringIO()
        table.to_csv(buffer, index=False)
        out = Path(path).expanduser()
        atomic_write_text(out, buffer.getvalue())
        return out

    # ------------------------------------------------------------------ listeners
    def observe(self, callback: Callable[[Curation], None]) -> None:
        """Call ``callback(curation)`` after every change (used by the widget)."""
        with self._lock:
            self._listeners.append(callback)

    def unobserve(self, callback: Callable[[Curation], None]) -> None:
        with self._lock:
            if callback in self._listeners:
                self._listeners.remove(callback)

    def _notify(self) -> None:
        for callback in list(self._listeners):
            try:
                callback(self)
            except Exception as exc:  # a broken display must not lose a mark
                warnings.warn(f"A curation listener failed: {exc}", RuntimeWarning, stacklevel=2)

    @classmethod
    def _forget(cls, path: str | os.PathLike | None = None) -> None:
        """Drop live curations from the per-process registry (all when ``path`` is None)."""
        with cls._registry_lock:
            if path is None:
                cls._registry.clear()
            else:
                cls._registry.pop(str(Path(path).expanduser().resolve()), None)

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.counts().items())
        where = str(self.path) if self.path else "in memory"
        return f"Curation({where}, split={self.split!r}, {counts})"


def _iter_marks(marks: Mapping[Any, Any]) -> Iterable[tuple[int, str]]:
    """Accept ``{mark: [indices]}`` or ``{index: mark}``."""
    for key, value in marks.items():
        if key in MARKS:
            for i in value:
                yield i, key
        else:
            yield key, value
