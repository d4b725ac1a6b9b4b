"""Big layers within memory: an extraction larger than the session's budget is written
batch by batch to a memory-mapped file, never held whole, and equals the in-memory result.

How memory is measured: the process's peak resident set (``VmHWM`` in
``/proc/self/status``) is reset to the current resident set by writing ``5`` to
``/proc/self/clear_refs`` just before the extraction, and read right after it. The
growth of the peak over the resident set before the extraction counts every allocation
the extraction made in this process, NumPy's, torch's and the C library's alike (which
tracemalloc, seeing only Python's and NumPy's allocators, would miss for torch tensors),
and does not depend on what earlier tests allocated (which a bare ``ru_maxrss`` would).
Rows are appended to the spill file through a file handle, so the written pages belong
to the operating system's cache, not to the process: holding the result whole would
raise the peak by its size.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import repwidgets as rw

CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1))


def peak_growth(fn) -> tuple[object, int]:
    """``fn()`` and how far the process's peak resident memory rose above its resident
    memory at the start (bytes)."""
    CLEAR_REFS.write_text("5")
    before = _status_kib("VmRSS")
    result = fn()
    return result, (_status_kib("VmHWM") - before) * 1024


needs_proc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not CLEAR_REFS.exists(),
    reason="measures peak memory through /proc/self/clear_refs (Linux only)",
)


class Wide(nn.Module):
    """A layer4-like block: 2,048 channels on a 4 x 4 grid, then a head."""

    def __init__(self) -> None:
        super().__init__()
        self.layer4 = nn.Sequential(nn.Conv2d(3, 2048, 4, stride=4), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, 5)

    def forward(self, x):
        return self.fc(self.pool(self.layer4(x)).flatten(1))


@pytest.fixture(scope="module")
def wide():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    X = torch.rand(960, 3, 16, 16, generator=g)  # raw layer4 output: 960 x 2048 x 4 x 4 floats
    return Wide().eval(), X, torch.arange(960) % 5


def direct(model, X, pool: bool) -> torch.Tensor:
    with torch.no_grad():
        out = torch.cat([model.layer4(X[i : i + 100]) for i in range(0, len(X), 100)])
    return out.mean(dim=(2, 3)) if pool else out


@needs_proc
@pytest.mark.parametrize("pool", [None, "mean"])
def test_a_wide_layer_spills_within_the_budget_and_equals_the_forward_pass(
    wide, pool, tmp_path, monkeypatch, one_thread
):
    monkeypatch.setenv("REPWIDGETS_CACHE", str(tmp_path))
    model, X, y = wide
    budget_mb = 1.0
    sess = rw.Session(
        model, (X, y), device="cpu", batch_size=40, memory_budget_mb=budget_mb, progress=False
    )
    sess.layer_shapes()
    sess.activations("fc", pool="mean")  # warm up: allocator pools, lazy imports
    size = 960 * 2048 * (16 if pool is None else 1) * 4
    acts, growth = peak_growth(lambda: sess.activations("layer4", pool=pool))
    expected_shape = (960, 2048, 4, 4) if pool is None else (960, 2048)
    assert acts.shape == expected_shape and acts.device.type == "cpu"
    assert list(tmp_path.rglob("*.npy")), "nothing was spilled to disk"
    assert acts.untyped_storage().nbytes() == size  # a view of the file, not a copy
    assert sess._cached_bytes() <= sess.memory_budget
    if pool is None:  # 120 MiB of maps; a batch of them is 5 MiB, and the
        # allocator keeps a few freed batches (glibc raises its mmap threshold)
        assert growth < size / 4, f"peak memory rose by {growth / 2**20:.1f} MiB"
    torch.testing.assert_close(acts, direct(model, X, pool is not None), atol=1e-5, rtol=1e-5)


@needs_proc
def test_holding_the_maps_in_memory_would_show_in_the_measure(wide, one_thread):
    """The measure is not blind: the same extraction within a large budget raises the
    peak by at least the result's size."""
    model, X, y = wide
    sess = rw.Session(
        model, (X, y), device="cpu", batch_size=40, memory_budget_mb=512, progress=False
    )
    sess.layer_shapes()
    sess.activations("fc", pool="mean")
    acts, growth = peak_growth(lambda: sess.activations("layer4", pool=None))
    assert growth >= 0.9 * acts.numel() * 4
    torch.testing.assert_close(acts, direct(model, X, pool=False), atol=1e-5, rtol=1e-5)


def test_an_interrupted_spill_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setenv("REPWIDGETS_CACHE", str(tmp_path))
    X = torch.rand(30, 3, 16, 16)
    X[25] = float("nan")
    sess = rw.Session(
        Wide().eval(),
        (X, torch.zeros(30, dtype=torch.long)),
        device="cpu",
        batch_size=10,
        memory_budget_mb=0.01,
        progress=False,
    )
    with pytest.raises(ValueError, match=r"sample\(s\) 25"):
        sess.activations("layer4", pool=None)
    assert not list(tmp_path.rglob("*.npy")) and not sess._cache
