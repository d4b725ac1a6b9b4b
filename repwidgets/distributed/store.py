"""The activation store: pooled activations of a job's layers, one file per layer and split.

``<root>/<split>/<layer>.npy`` is a float32 array ``[n, C]`` (the session's pooled
activations: ``n`` samples of the split, ``C`` neurons), created whole by the main
rank (``np.lib.format.open_memmap``) and filled by every rank, each writing the rows
of its own shard at their offsets (shards are disjoint, so no two ranks touch a byte). When every row is written
the main rank writes ``<root>/<split>/<layer>.json`` (atomically) with the pool, the
neuron axis and the shape: an array without it is unfinished and is never read.

``rw.Session(..., store=root)`` answers ``activations(layer, split, pool)`` from a
finished array with that pool and neuron axis instead of running the model.

Example:
    >>> store = ActivationStore("runs/shapes/store")        # doctest: +SKIP
    >>> store.get("features.conv3", "test").shape           # doctest: +SKIP
    torch.Size([2000, 64])
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repwidgets.atomic import atomic_write_text

__all__ = ["ActivationStore"]


class ActivationStore:
    """Reads and writes the store under ``root`` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def array_path(self, layer: str, split: str) -> Path:
        """Where ``layer``'s rows over ``split`` live."""
        if "/" in layer or "/" in split or layer.startswith("."):
            raise ValueError(f"Cannot store layer {layer!r} of split {split!r}: names with '/'.")
        return self.root / split / f"{layer}.npy"

    def _meta_path(self, layer: str, split: str) -> Path:
        return self.array_path(layer, split).with_suffix(".json")

    # --- writing (the job) -----------------------------------------------------------------
    def allocate(self, layer: str, split: str, n: int, width: int) -> None:
        """Create the ``[n, width]`` float32 file (zeros) for ``layer`` over ``split``,
        replacing an unfinished one; the main rank calls it before the ranks write."""
        path = self.array_path(layer, split)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._meta_path(layer, split).unlink(missing_ok=True)
        array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, width))
        array.flush()
        del array

    def write_rows(self, layer: str, split: str, start: int, rows: torch.Tensor) -> None:
        """Write ``rows`` [m, C] at rows ``start..start+m`` and make them durable.

        A plain positioned write of exactly those bytes (then fsync), not a write through
        a memory map: a map writes back whole pages, and on a networked filesystem a page
        holding the last row of one rank's shard and the first of the next would then be
        written by two nodes.
        """
        path = self.array_path(layer, split)
        with open(path, "r+b") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(
                version, np.lib.format.read_array_header_2_0
            )
            shape, _fortran, _dtype = read_header(handle)
            stop = start + rows.shape[0]
            if stop > shape[0] or tuple(rows.shape[1:]) != tuple(shape[1:]):
                raise ValueError(
                    f"Rows of shape {tuple(rows.shape)} at {start} do not fit the stored array "
                    f"{shape} of {layer!r} ({split})."
                )
            row_bytes = 4 * int(np.prod(shape[1:]))
            handle.seek(handle.tell() + start * row_bytes)
            handle.write(rows.detach().float().cpu().contiguous().numpy().tobytes())
            handle.flush()
            os.fsync(handle.fileno())

    def mark_complete(self, layer: str, split: str, **meta: Any) -> None:
        """Note that every row of ``layer`` over ``split`` is written, with ``meta``
        (``pool`` and ``neuron_axis`` at least); after this the array is readable."""
        shape = list(np.load(self.array_path(layer, split), mmap_mode="r").shape)
        atomic_write_text(
            self._meta_path(layer, split), json.dumps({**meta, "shape": shape}, sort_keys=True)
        )

    # --- reading (the notebook and the steps) ------------------------------------------------
    def meta(self, layer: str, split: str) -> dict[str, Any] | None:
        """What :meth:`mark_complete` noted, or None while the array is unfinished."""
        try:
            return json.loads(self._meta_path(layer, split).read_text())
        except FileNotFoundError:
            return None

    def contents(self) -> list[tuple[str, str]]:
        """Every finished ``(layer, split)`` in the store."""
        return sorted(
            (p.stem, p.parent.name)
            for p in self.root.glob("*/*.json")
            if p.with_suffix(".npy").exists()
        )

    def get(self, layer: str, split: str = "test") -> torch.Tensor:
        """The stored rows ``[n, C]`` (float32, CPU, memory-mapped copy-on-write: writing
        to the tensor never changes the file).

        Raises a KeyError listing what the store holds when ``layer``/``split`` is not
        finished there.
        """
        if self.meta(layer, split) is None:
            held = ", ".join(f"{lay} ({s})" for lay, s in self.contents()) or "nothing yet"
            raise KeyError(
                f"The store at {self.root} has no finished activations of {layer!r} over "
                f"{split!r}; it holds: {held}. Run the job's extract step for them."
            )
        return torch.from_numpy(np.load(self.array_path(layer, split), mmap_mode="c"))

    def lookup(
        self, layer: str, split: str, pool: str | None, neuron_axis: int, n: int
    ) -> torch.Tensor | None:
        """The stored rows when they were pooled with ``pool`` on ``neuron_axis`` over a
        split of ``n`` samples, else None (the caller computes them)."""
        if "/" in layer or "/" in split:
            return None
        meta = self.meta(layer, split)
        if meta is None or meta.get("pool") != pool or meta.get("neuron_axis") != neuron_axis:
            return None
        if meta.get("shape", [None])[0] != n:
            return None
        return self.get(layer, split)
