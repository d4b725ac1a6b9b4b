"""What a distributed job has finished, so a killed job resumes where it stopped.

Each rank owns one file, ``<out>/manifest/rank-<r>.json``, rewritten atomically
(:mod:`repwidgets.atomic`) after every unit of work it completes: no two processes
ever write the same file, and a kill at any moment leaves each file as it was
before or after the last record. Reads merge every rank's file, also those left by
an earlier run with another world size, so a unit done by any rank is done.

Units are named by a ``(step, key)`` pair, for example ``("extract", "test/conv3:4")``
for row chunk 4; whole steps are marked by the main rank after a barrier
(:meth:`Manifest.mark_step_done`).

For tests, ``REPWIDGETS_TEST_KILL_AFTER=<step>:<count>[:<rank>]`` makes the process
SIGKILL itself right after its ``count``-th record of ``step`` (on every rank, or on
rank ``rank`` only): the job stops mid-step as a crash would.

Example:
    >>> m = Manifest("/tmp/job-out")                       # doctest: +SKIP
    >>> m.record("extract", "test/conv3:0", rows=[0, 64])  # doctest: +SKIP
    >>> m.done("extract", "test/conv3:0")                  # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

from repwidgets.atomic import atomic_write_text

__all__ = ["KILL_ENV", "Manifest"]

KILL_ENV = "REPWIDGETS_TEST_KILL_AFTER"
_STEPS = "__steps__"


class Manifest:
    """The completed units of a job's output folder, as seen by rank ``rank``.

    Args:
        out: the job's output folder (the manifest lives in ``out/manifest``).
        rank: the rank writing through this object (it writes only its own file).
    """

    def __init__(self, out: str | os.PathLike, rank: int = 0) -> None:
        self.folder = Path(out) / "manifest"
        self.rank = int(rank)
        self.path = self.folder / f"rank-{self.rank}.json"
        self._own: dict[str, dict[str, Any]] = self._read(self.path)
        self._seen: dict[Path, tuple[tuple[int, int], dict]] = {}
        self._counts: dict[str, int] = {}

    @staticmethod
    def _read(path: Path) -> dict[str, dict[str, Any]]:
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise RuntimeError(
                f"The manifest file {path} is unreadable ({exc}); delete the output folder's "
                "manifest/ (and its results) to start the job afresh."
            ) from exc

    def _all(self) -> list[dict[str, dict[str, Any]]]:
        """Every rank's records (files re-read only when they changed)."""
        merged = [self._own]
        for path in sorted(self.folder.glob("rank-*.json")):
            if path == self.path:
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            stamp = (stat.st_mtime_ns, stat.st_size)
            cached = self._seen.get(path)
            if cached is None or cached[0] != stamp:
                cached = (stamp, self._read(path))
                self._seen[path] = cached
            merged.append(cached[1])
        return merged

    def info(self, step: str, key: str) -> dict[str, Any] | None:
        """What was recorded with ``(step, key)`` by any rank, or None if not done."""
        for records in self._all():
            if key in records.get(step, {}):
                return dict(records[step][key])
        return None

    def done(self, step: str, key: str) -> bool:
        """Whether any rank recorded ``(step, key)``."""
        return self.info(step, key) is not None

    def keys(self, step: str) -> set[str]:
        """Every key recorded for ``step`` by any rank."""
        return {k for records in self._all() for k in records.get(step, {})}

    def record(self, step: str, key: str, **info: Any) -> None:
        """Note ``(step, key)`` as done (with JSON-able ``info``) in this rank's file.

        Call it only after the unit's output is durable (files flushed or written
        atomically): a record is the promise that the work need not be redone.
        """
        self._own.setdefault(step, {})[key] = info
        self._write()
        self._counts[step] = self._counts.get(step, 0) + 1
        _maybe_kill(step, self._counts[step], self.rank)

    def step_done(self, step: str) -> bool:
        """Whether the whole step ``step`` was marked done (by the main rank)."""
        return any(step in records.get(_STEPS, {}) for records in self._all())

    def mark_step_done(self, step: str, **info: Any) -> None:
        """Mark the whole step done; the main rank calls it after a barrier."""
        self._own.setdefault(_STEPS, {})[step] = info
        self._write()

    def _write(self) -> None:
        atomic_write_text(self.path, json.dumps(self._own, indent=1, sort_keys=True))


def _maybe_kill(step: str, count: int, rank: int) -> None:
    spec = os.environ.get(KILL_ENV, "")
    if not spec:
        return
    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"{KILL_ENV} must be <step>:<count>[:<rank>], got {spec!r}.")
    if parts[0] == step and int(parts[1]) == count and (len(parts) == 2 or int(parts[2]) == rank):
        os.kill(os.getpid(), signal.SIGKILL)
