"""What the analysis steps share: their settings, where they write, and shard files.

Every step of a job reads its settings from the job's ``[[steps]]`` table: ``layers``
(default: the job's), ``split`` and ``pool`` are the step's own; everything else goes
to the engine as config overrides. A step writes its results to
``<out>/results/<step>/<layer>.safetensors`` (the engine result's ``save()``) and its
per-shard partial results to ``<out>/work/<step>/<layer>/`` (atomic writes, recorded
in the manifest once durable), so a killed job redoes only the shards it had not
finished.

Example:
    >>> blocks(10, world=2, rank=1, size=3)
    [range(6, 9), range(9, 10)]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from repwidgets.atomic import atomic_write_bytes

__all__ = [
    "STEP_KEYS",
    "blocks",
    "engine_overrides",
    "load_tensors",
    "result_path",
    "save_tensors",
    "show_progress",
    "step_id",
    "step_layers",
    "step_pool",
    "work_dir",
]

#: Keys of a step's table that the step reads itself (not passed to the engine).
STEP_KEYS = ("name", "layers", "split", "pool", "block")


def step_layers(job: Any, step: Mapping[str, Any]) -> list[str]:
    """The layers a step runs on: its own ``layers`` or else the job's."""
    layers = step.get("layers", getattr(job, "layers", None))
    if isinstance(layers, str):
        layers = [layers]
    if not layers:
        raise ValueError(
            f"Step {step.get('name')!r} has no layers: set layers = [...] in the job file "
            "(at the top or in the step's table)."
        )
    return [str(layer) for layer in layers]


def step_id(job: Any, step: Mapping[str, Any]) -> str:
    """The step's name in the manifest and under ``results/`` and ``work/``: its name,
    or ``<name>-<i>`` where the job runs that step more than once (``job.step_ids()``)."""
    steps, ids = getattr(job, "steps", None), getattr(job, "step_ids", None)
    if steps and callable(ids):
        pairs = list(zip(steps, ids()))
        for candidate, sid in pairs:
            if candidate is step:
                return str(sid)
        for candidate, sid in pairs:
            if candidate == step:
                return str(sid)
    return str(step["name"])


def step_pool(job: Any, step: Mapping[str, Any]) -> str:
    """The pooling a step reads: its own ``pool`` or else the job's (the store's)."""
    return str(step.get("pool", getattr(job, "pool", "mean")))


def engine_overrides(step: Mapping[str, Any], own: Iterable[str] = ()) -> dict[str, Any]:
    """The step's settings meant for the engine: all but :data:`STEP_KEYS` and ``own``."""
    skip = set(STEP_KEYS) | set(own)
    return {key: value for key, value in step.items() if key not in skip}


def result_path(out: Path, step: str, layer: str) -> Path:
    """``<out>/results/<step>/<layer>.safetensors``, where the step's result is saved."""
    return Path(out) / "results" / step / f"{layer}.safetensors"


def work_dir(out: Path, step: str, layer: str) -> Path:
    """``<out>/work/<step>/<layer>``: the step's per-shard files for one layer."""
    return Path(out) / "work" / step / layer


def blocks(n: int, world: int, rank: int, size: int | None = None) -> list[range]:
    """Rank ``rank``'s blocks of ``range(n)``: blocks of ``size`` (default: one block
    per rank) dealt to the ranks in contiguous runs, so the ranks' blocks partition
    ``range(n)`` in order and each rank's run is one contiguous slice."""
    size = max(1, int(size or math.ceil(n / world)))
    edges = [range(lo, min(n, lo + size)) for lo in range(0, n, size)]
    per, extra = divmod(len(edges), world)
    first = rank * per + min(rank, extra)
    return edges[first : first + per + (1 if rank < extra else 0)]


def save_tensors(path: Path, tensors: Mapping[str, torch.Tensor]) -> Path:
    """Write named tensors to one ``.safetensors`` file atomically."""
    from safetensors.torch import save

    blob = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    return atomic_write_bytes(path, blob)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The named tensors of a file written by :func:`save_tensors`."""
    from safetensors.torch import load_file

    return load_file(str(path))


def show_progress(ctx: Any, sess: Any) -> bool:
    """Progress bars on the main rank only, and only where the session shows them."""
    return bool(ctx.is_main and getattr(sess, "progress", True))


def each_layer(
    ctx: Any,
    layers: Iterable[str],
    name: str,
    out: Path,
    manifest: Any,
    compute: Callable[[str, Path], Any],
) -> None:
    """Run ``compute(layer, work_folder) -> Result`` for every layer whose result the
    manifest does not hold yet; the main rank saves each result under
    ``<out>/results/<name>/`` and records it, and all ranks meet after each layer."""
    for layer in layers:
        key = f"{layer}:result"
        if manifest.done(name, key):
            continue
        result = compute(layer, work_dir(out, name, layer))
        if ctx.is_main:
            path = result_path(out, name, layer)
            result.save(path)
            manifest.record(name, key, path=str(path.relative_to(out)))
        ctx.barrier()
