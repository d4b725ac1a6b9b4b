"""The feature store: training features [n, p] in memory-mapped chunk files on disk.

Chunk files are independent, so shards of a dataset can be written by different
processes. Reading goes chunk by chunk, so nothing needs the whole matrix in memory,
and sums over chunks (the kernel) combine exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

__all__ = ["FeatureStore"]


class FeatureStore:
    """Features [n, p] (float32) in memory-mapped files of ``chunk_rows`` rows each.

    Chunk files are independent, so shards of a dataset can be written by different
    processes. Reading goes chunk by chunk, so nothing needs the whole matrix in memory.
    """

    def __init__(self, root: Path, name: str, n: int, dim: int, chunk_rows: int = 16384) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.name, self.n, self.dim = name, int(n), int(dim)
        self.chunk_rows = max(1, int(chunk_rows))
        self.n_chunks = math.ceil(self.n / self.chunk_rows)
        self._maps: dict[int, np.memmap] = {}

    def _path(self, k: int) -> Path:
        return self.root / f"{self.name}.{k:05d}.npy"

    def _chunk(self, k: int, mode: str = "r+") -> np.memmap:
        if k not in self._maps:
            rows = min(self.chunk_rows, self.n - k * self.chunk_rows)
            path = self._path(k)
            if path.exists():
                self._maps[k] = np.load(path, mmap_mode=mode)
            else:
                self._maps[k] = np.lib.format.open_memmap(
                    path, mode="w+", dtype=np.float32, shape=(rows, self.dim)
                )
        return self._maps[k]

    def write(self, start: int, rows: torch.Tensor) -> None:
        """Write ``rows`` [b, dim] at row ``start`` (may straddle chunks)."""
        array = rows.detach().float().cpu().numpy()
        pos = 0
        while pos < array.shape[0]:
            row = start + pos
            k, offset = divmod(row, self.chunk_rows)
            chunk = self._chunk(k)
            take = min(chunk.shape[0] - offset, array.shape[0] - pos)
            chunk[offset : offset + take] = array[pos : pos + take]
            pos += take

    def chunk_range(self, k: int) -> range:
        """The rows of chunk ``k`` (a shard of the dataset one process may write)."""
        if not 0 <= k < self.n_chunks:
            raise IndexError(f"chunk {k} out of range: the store has {self.n_chunks} chunks.")
        return range(k * self.chunk_rows, min(self.n, (k + 1) * self.chunk_rows))

    def chunk(self, k: int) -> np.ndarray:
        """Chunk ``k`` as an array [rows, dim] (flushed, memory-mapped)."""
        array = self._chunk(k)
        array.flush()
        return array

    def discard(self, k: int) -> None:
        """Remove chunk ``k``'s file (for example one a killed process left half written)."""
        self._maps.pop(k, None)
        self._path(k).unlink(missing_ok=True)

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start_row, array [rows, dim])`` for every chunk, in order."""
        for k in range(self.n_chunks):
            chunk = self._chunk(k)
            chunk.flush()
            yield k * self.chunk_rows, chunk

    def delete(self) -> None:
        """Remove the chunk files."""
        self._maps.clear()
        for k in range(self.n_chunks):
            self._path(k).unlink(missing_ok=True)
