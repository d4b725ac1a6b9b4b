"""Run the heavy steps of an analysis over several processes, resumably.

``torchrun --nproc-per-node N -m repwidgets run job.toml`` (or ``repwidgets run
job.toml`` on one process) reads a job file (:mod:`.job`), builds the session on
every rank, and runs its steps (:mod:`.steps`) sharded over the ranks with
``torch.distributed`` (:mod:`.context`). Activations go to a memory-mapped store
(:mod:`.store`) that ``rw.Session(..., store=path)`` reads; each step's result is
saved with the engine result's ``save()``; a manifest (:mod:`.manifest`) lets a
killed job resume.

Example:
    >>> from repwidgets.distributed import run_job      # doctest: +SKIP
    >>> run_job("job.toml")                             # doctest: +SKIP
"""

from __future__ import annotations

import importlib

__all__ = ["ActivationStore", "Context", "Job", "Manifest", "run_job"]

_LAZY = {
    "ActivationStore": "repwidgets.distributed.store",
    "Context": "repwidgets.distributed.context",
    "Job": "repwidgets.distributed.job",
    "Manifest": "repwidgets.distributed.manifest",
    "run_job": "repwidgets.distributed.runner",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'repwidgets.distributed' has no attribute {name!r}")
