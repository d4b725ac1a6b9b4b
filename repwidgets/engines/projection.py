"""Seeded Johnson-Lindenstrauss projections, generated in blocks of rows.

TRAK compresses per-sample gradients (one number per model parameter, often
millions) to a few thousand numbers with a random matrix ``P`` [D, p] whose
entries are i.i.d. Rademacher (+-1) or standard normal, scaled by ``1/sqrt(p)``
so that inner products are preserved in expectation: E[(Px)^T(Py)] = x^T y.

The matrix is never built whole when it is large: its rows are cut into blocks of
``block_rows`` rows and every block has its own seed (derived from the projection's
seed and the block's index), so a block can be regenerated anywhere, in any order,
on any process, and always comes out the same. Blocks are kept in memory after
their first use while the whole matrix fits in ``cache_mb``; otherwise they are
regenerated on every call (amortise that by projecting large batches). A Rademacher
matrix too large to cache in float32 is cached as int8 signs (a quarter of the
memory) when that fits, and converted block by block.

The product itself runs in steps bounded by ``chunk_mb``: a slice of a block's rows
(parameters) times the matching columns of a slice of the samples (a Rademacher block
is held as int8 signs and converted to floats one slice at a time), so that no
``[samples, parameters]`` by ``[parameters, p]`` product larger than the budget is
formed at once. The steps only change the order of the sums: the result equals the
unchunked product up to float rounding. :meth:`JLProjection.project_parts` takes the
vector as consecutive pieces (e.g. one per parameter tensor), so a model's gradients
need never be concatenated into one ``[B, D]`` matrix.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

__all__ = ["JLProjection", "block_seed"]

Parts = Sequence[torch.Tensor]

KINDS = ("rademacher", "gaussian")


def block_seed(seed: int, index: int) -> int:
    """A well-mixed 63-bit seed for block ``index`` of a projection seeded with ``seed``.

    Example:
        >>> block_seed(0, 1) != block_seed(1, 0)
        True
    """
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(index)]).generate_state(
        2, dtype=np.uint32
    )
    return (int(state[0]) << 31) ^ int(state[1])


class JLProjection:
    """A random projection ``x -> x @ P`` with ``P`` [in_dim, proj_dim], made block by block.

    Args:
        in_dim: D, the dimension of the vectors to project (e.g. the number of parameters).
        proj_dim: p, the dimension after projection.
        kind: ``"rademacher"`` (entries +-1/sqrt(p)) or ``"gaussian"`` (N(0, 1/p)).
        seed: the projection's seed; the same seed on the same device gives the same matrix.
        device: where blocks are generated and multiplied.
        dtype: the matrix's dtype (float32 by default).
        block_rows: rows per generated block (memory of one block: block_rows * p * 4 bytes).
        cache_mb: keep generated blocks in memory while the whole matrix needs at most
            this many MiB (in float; a Rademacher matrix also as int8 signs, at a quarter
            of the size); 0 regenerates every block on every call.
        chunk_mb: working memory (MiB) of one step of the product: ``rows`` rows of a
            block in float and a ``[samples, rows]`` slice of the input; None: whole
            blocks and all samples at once. Does not change the matrix or the result.

    Example:
        >>> proj = JLProjection(in_dim=10_000, proj_dim=256, seed=0)
        >>> z = proj.project(torch.randn(8, 10_000))   # [8, 256]
        >>> z.shape
        torch.Size([8, 256])
    """

    def __init__(
        self,
        in_dim: int,
        proj_dim: int,
        kind: str = "rademacher",
        seed: int = 0,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        block_rows: int = 16384,
        cache_mb: float = 1024.0,
        chunk_mb: float | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
        if int(in_dim) < 1 or int(proj_dim) < 1:
            raise ValueError(
                f"in_dim and proj_dim must be positive, got in_dim={in_dim}, proj_dim={proj_dim}."
            )
        if int(block_rows) < 1:
            raise ValueError(f"block_rows must be at least 1, got {block_rows}.")
        self.in_dim = int(in_dim)
        self.proj_dim = int(proj_dim)
        self.kind = kind
        self.seed = int(seed)
        self.device = torch.device(device)
        self.dtype = dtype
        self.block_rows = int(block_rows)
        self.n_blocks = math.ceil(self.in_dim / self.block_rows)
        entries = self.in_dim * self.proj_dim
        budget = cache_mb * 2**20
        if entries * torch.empty((), dtype=dtype).element_size() <= budget:
            self.cache = "full"
        elif kind == "rademacher" and entries <= budget:
            self.cache = "int8"
        else:
            self.cache = "none"
        self._blocks: dict[int, torch.Tensor] = {}
        if chunk_mb is not None and not chunk_mb > 0:
            raise ValueError(f"chunk_mb must be positive (MiB) or None, got {chunk_mb}.")
        self.chunk_mb = chunk_mb

    @property
    def cached(self) -> bool:
        """Whether generated blocks are kept (in float, or as int8 signs)."""
        return self.cache != "none"

    def __repr__(self) -> str:
        return (
            f"JLProjection(in_dim={self.in_dim}, proj_dim={self.proj_dim}, kind={self.kind!r}, "
            f"seed={self.seed}, device={self.device}, cache={self.cache!r})"
        )

    def rows(self, index: int) -> slice:
        """The rows of ``P`` that block ``index`` holds."""
        start = index * self.block_rows
        return slice(start, min(start + self.block_rows, self.in_dim))

    def block(self, index: int) -> torch.Tensor:
        """Block ``index`` of ``P``: rows ``rows(index)``, shape [rows, proj_dim], scaled."""
        return self._scaled(self._generated(index))

    def _scaled(self, raw: torch.Tensor) -> torch.Tensor:
        """Rows of a generated block as ``P``'s entries (int8 signs converted and scaled)."""
        if raw.is_floating_point():
            return raw
        return raw.to(self.dtype).mul_(1.0 / math.sqrt(self.proj_dim))

    def _generated(self, index: int) -> torch.Tensor:
        """Block ``index`` as generated: scaled floats, or (Rademacher, unless the float
        matrix is cached) int8 signs, a quarter of the memory, converted by the caller."""
        if not 0 <= index < self.n_blocks:
            raise IndexError(f"Block {index} out of range: the projection has {self.n_blocks}.")
        cached = self._blocks.get(index)
        if cached is not None:
            return cached
        rows = self.rows(index)
        gen = torch.Generator(device=self.device)
        gen.manual_seed(block_seed(self.seed, index))
        shape = (rows.stop - rows.start, self.proj_dim)
        if self.kind == "rademacher":
            bits = torch.randint(0, 2, shape, generator=gen, device=self.device, dtype=torch.int8)
            out = bits.mul_(2).sub_(1)
            if self.cache == "full":
                out = self._scaled(out)
        else:
            out = torch.randn(shape, generator=gen, device=self.device, dtype=self.dtype)
            out.mul_(1.0 / math.sqrt(self.proj_dim))
        if self.cache != "none":
            self._blocks[index] = out
        return out

    def matrix(self) -> torch.Tensor:
        """The whole matrix ``P`` [in_dim, proj_dim] (for small projections and tests)."""
        return torch.cat([self.block(k) for k in range(self.n_blocks)], dim=0)

    def project(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Project a batch ``x`` [B, in_dim] to [B, proj_dim] (added into ``out`` if given)."""
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(
                f"Expected a batch of shape [B, {self.in_dim}], got {tuple(x.shape)}: the "
                "projection was made for vectors of that length."
            )
        return self.project_parts([x], out)

    def project_parts(self, parts: Parts, out: torch.Tensor | None = None) -> torch.Tensor:
        """Project a batch given as consecutive column pieces ``parts`` (each [B, d_i],
        the d_i summing to in_dim, e.g. per-sample gradients of each parameter tensor)
        to [B, proj_dim], added into ``out`` if given. Each block of ``P`` is made once
        per call, then multiplied in steps of at most ``chunk_mb``.

        Example:
            >>> proj = JLProjection(in_dim=6, proj_dim=2, seed=0, chunk_mb=1e-5)
            >>> x = torch.randn(3, 6)
            >>> torch.allclose(proj.project_parts([x[:, :2], x[:, 2:]]), x @ proj.matrix())
            True
        """
        parts = [p if p.ndim == 2 else p.reshape(p.shape[0], -1) for p in parts]
        widths = [p.shape[1] for p in parts]
        if not parts or sum(widths) != self.in_dim or len({p.shape[0] for p in parts}) != 1:
            raise ValueError(
                f"The parts have shapes {[tuple(p.shape) for p in parts][:6]}: they must share "
                f"the batch size and their widths must add up to in_dim={self.in_dim}."
            )
        batch = parts[0].shape[0]
        if out is None:
            out = torch.zeros(batch, self.proj_dim, device=parts[0].device, dtype=self.dtype)
        rows_step, samples_step = self._steps(batch)
        offsets = [0]
        for w in widths[:-1]:
            offsets.append(offsets[-1] + w)
        held_k, block = -1, None
        for k, piece, lo, hi in self._overlaps(offsets, widths):
            if k != held_k:
                held_k, block = k, self._generated(k)
            x, start = parts[piece], self.rows(k).start
            for r0 in range(lo, hi, rows_step):
                r1 = min(r0 + rows_step, hi)
                weights = self._scaled(block[r0 - start : r1 - start])
                cols = slice(r0 - offsets[piece], r1 - offsets[piece])
                for s0 in range(0, batch, samples_step):
                    s1 = min(s0 + samples_step, batch)
                    out[s0:s1].addmm_(x[s0:s1, cols].to(self.dtype), weights)
        return out

    def _steps(self, batch: int) -> tuple[int, int]:
        """Rows of ``P`` and samples per step of the product, from ``chunk_mb``."""
        if self.chunk_mb is None:
            return self.block_rows, max(1, batch)
        budget = self.chunk_mb * 2**20 / torch.empty((), dtype=self.dtype).element_size()
        rows = max(1, min(self.block_rows, int(budget // (2 * self.proj_dim))))
        samples = max(1, min(batch, int(budget // (2 * rows))))
        return rows, samples

    def _overlaps(
        self, offsets: list[int], widths: list[int]
    ) -> Iterator[tuple[int, int, int, int]]:
        """(block, piece, first row, end row) for every overlap of a block of ``P`` with
        a piece of the input starting at ``offsets``, in block order (rows of ``P``)."""
        piece = 0
        for k in range(self.n_blocks):
            rows = self.rows(k)
            while piece < len(widths) and offsets[piece] + widths[piece] <= rows.start:
                piece += 1
            j = piece
            while j < len(widths) and offsets[j] < rows.stop:
                lo, hi = max(rows.start, offsets[j]), min(rows.stop, offsets[j] + widths[j])
                if hi > lo:
                    yield k, j, lo, hi
                j += 1

    def free(self) -> None:
        """Forget cached blocks (they are regenerated identically when needed)."""
        self._blocks.clear()
