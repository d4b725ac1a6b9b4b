"""The steps a distributed job can run, by name, each in its own module.

Every step module defines::

    run(ctx: Context, job: Job, step: dict, out: Path, manifest: Manifest) -> None

``step`` is the job file's ``[[steps]]`` table (its ``name`` and settings, the
settings passed to the engine as config overrides); ``out`` is the job's output
folder. A step shards its work with ``ctx.shard``, records each finished unit with
``manifest.record`` (after the unit's output is durable) and skips units already
recorded, so a killed job started again gives the same result. Results go to
``out/results/<step>/<layer>.<ext>`` through the engine result's own ``save()``.

A module may also define ``check(job: Job, step: dict) -> None``: it raises a clear
error for bad settings and is called for every step before any step runs.

Modules are imported when a job uses them (:func:`load_step`).

Example:
    >>> sorted(STEPS)
    ['concepts', 'dora', 'extract', 'invert', 'trak']
"""

from __future__ import annotations

import difflib
import importlib
from types import ModuleType

__all__ = ["STEPS", "load_step", "unknown_step_message"]

STEPS: dict[str, str] = {
    "extract": "repwidgets.distributed.steps.extract",
    "invert": "repwidgets.distributed.steps.invert",
    "dora": "repwidgets.distributed.steps.dora",
    "concepts": "repwidgets.distributed.steps.concepts",
    "trak": "repwidgets.distributed.steps.trak",
}


def unknown_step_message(name: object) -> str:
    """The error text for a step name that is not in :data:`STEPS`."""
    close = difflib.get_close_matches(str(name), list(STEPS), n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"Unknown step {name!r}.{hint} Steps: {', '.join(STEPS)}."


def load_step(name: str) -> ModuleType:
    """The module of step ``name`` (imported on first use)."""
    if name not in STEPS:
        raise ValueError(unknown_step_message(name))
    try:
        return importlib.import_module(STEPS[name])
    except ModuleNotFoundError as exc:
        if exc.name == STEPS[name]:
            raise NotImplementedError(
                f"The step {name!r} is not available in this version."
            ) from exc
        raise
