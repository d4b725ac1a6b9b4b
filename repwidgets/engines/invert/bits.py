"""Packed masks and exact float32 sums for INVERT's beam search.

Masks are bool tensors whose sample axis is a multiple of 8; viewed as int64 words they
combine eight samples per operation. Integer weights (ranks, hashes) are split into
digits small enough that every float32 product of masks and digits is an exact integer,
whatever the summation order, so equal masks always give equal sums.
"""

from __future__ import annotations

import math

import torch

__all__ = ["ONES8", "digit_bits", "from_digits", "pack", "to_digits", "unpack"]

ONES8 = 0x0101010101010101  # one 1 per byte: XOR flips 8 packed booleans at once


def pack(masks: torch.Tensor) -> torch.Tensor:
    """Bool [..., n_pad] (n_pad a multiple of 8) -> int64 [..., n_pad / 8], same memory."""
    shape = masks.shape
    flat = masks.contiguous().view(-1, shape[-1]).view(torch.int64)
    return flat.view(*shape[:-1], shape[-1] // 8)


def unpack(words: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pack`."""
    shape = words.shape
    flat = words.contiguous().view(-1, shape[-1]).view(torch.bool)
    return flat.view(*shape[:-1], shape[-1] * 8)


def digit_bits(n: int) -> int:
    """Bits per digit so that a sum of n digits stays below 2^24 (exact in float32)."""
    return max(1, min(16, int(math.floor(24 - math.log2(max(n, 2))))))


def to_digits(values: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """Non-negative int64 [...] -> float32 [..., count] base-2^bits digits (least first)."""
    shifts = torch.arange(count, device=values.device) * bits
    return ((values[..., None] >> shifts) & ((1 << bits) - 1)).to(torch.float32)


def from_digits(sums: torch.Tensor, bits: int) -> torch.Tensor:
    """Exact float32 digit sums [..., count] -> int64 [...]."""
    shifts = torch.arange(sums.shape[-1], device=sums.device) * bits
    return (sums.to(torch.int64) << shifts).sum(-1)
