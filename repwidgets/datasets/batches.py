"""Reading a dataset in batches: a loader, a background prefetcher, a check for NaN
images, the batch size that fits in memory, and results written batch by batch to a
memory-mapped file.

The session's extraction and the trainer's evaluation read data through these, so a
slow dataset overlaps with the model (and, on a GPU, host-to-device copies overlap
with compute) and a broken image is named before it turns into NaN activations.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = [
    "SpillFile",
    "available_memory",
    "batch_loader",
    "batch_size_for",
    "discard_unfinished",
    "finite_checked",
    "finished_tensor",
    "nonfinite_samples",
    "prefetched",
]


def nonfinite_samples(images: torch.Tensor) -> torch.Tensor:
    """Positions (LongTensor) of the images in a batch that hold NaN or infinite values."""
    if not images.is_floating_point() or images.ndim == 0:
        return torch.empty(0, dtype=torch.long)
    finite = torch.isfinite(images.reshape(images.shape[0], -1)).all(dim=1)
    return torch.nonzero(~finite).flatten().cpu()


def finite_checked(batches: Iterable, split: str = "test", shown: int = 10) -> Iterator:
    """Yield ``(images, targets)`` batches, raising when an image holds NaN or infinity.

    The error names the split and the first ``shown`` offending sample indices (counted
    over the batches in order, as a DataLoader without shuffling reads the dataset).
    """
    start = 0
    for batch in batches:
        images = batch[0]
        bad = nonfinite_samples(images)
        if bad.numel():
            indices = (bad + start).tolist()
            listed = ", ".join(str(i) for i in indices[:shown])
            more = f" and {len(indices) - shown} more" if len(indices) > shown else ""
            raise ValueError(
                f"Images of split {split!r} hold NaN or infinite values: sample(s) {listed}"
                f"{more} (in the first batch that has any; later samples were not read). The "
                "model would turn them into NaN activations and logits. Fix those images (for "
                "example torch.nan_to_num in the dataset's transform) or leave them out "
                "(torch.utils.data.Subset with the other indices)."
            )
        start += int(images.shape[0])
        yield batch


def batch_loader(dataset: Dataset, batch_size: int, device: torch.device) -> DataLoader:
    """A DataLoader reading ``dataset`` in order; batches land in pinned (page-locked)
    memory when ``device`` is a GPU, so their copies to it can run asynchronously."""
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=False, pin_memory=device.type == "cuda"
    )


def _to_device(batch, device: torch.device, stream) -> tuple:
    """Start copying a batch's tensors to ``device`` on ``stream``; the copies' event."""
    with torch.cuda.stream(stream):
        moved = tuple(
            t.to(device, non_blocking=True) if isinstance(t, torch.Tensor) else t for t in batch
        )
        event = torch.cuda.Event()
        event.record(stream)
    return moved, event


def _arrived(moved: tuple, event, device: torch.device) -> tuple:
    """Make the current stream wait for a batch's copies and own its memory."""
    current = torch.cuda.current_stream(device)
    current.wait_event(event)
    for t in moved:
        if isinstance(t, torch.Tensor) and t.is_cuda:
            t.record_stream(current)
    return moved


def prefetched(
    batches: Iterable, depth: int = 2, device: torch.device | str | None = None
) -> Iterator:
    """Iterate ``batches`` while a background thread loads the next ``depth`` ones.

    Data generation and decoding (NumPy, PIL) overlap with the model's forward pass,
    which keeps extraction close to the model's own throughput. With a CUDA ``device``
    the thread also starts each batch's copy to the GPU on a side stream (non-blocking,
    from pinned memory: see :func:`batch_loader`), so the copy of batch ``i + 1``
    overlaps with the compute on batch ``i``; the batches come out on the device, and
    the consumer's stream waits for each copy before using it. Other devices get the
    batches as they were loaded.
    """
    device = torch.device(device) if device is not None else None
    cuda = device is not None and device.type == "cuda"
    stream = torch.cuda.Stream(device) if cuda else None
    slots: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def load() -> None:
        try:
            for batch in batches:
                if stop.is_set():
                    return
                slots.put(_to_device(batch, device, stream) if cuda else batch)
        except BaseException as exc:  # handed to the consumer, raised there
            slots.put(exc)
        slots.put(done)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        while (item := slots.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield _arrived(*item, device) if cuda else item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                slots.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.01)


def available_memory(device: torch.device) -> int:
    """Bytes free for a batch on ``device``: the GPU's free memory (``mem_get_info``),
    else the host's available memory (``MemAvailable``; 4 GiB where it cannot be read)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def batch_size_for(
    per_sample: float, free: float, *, cap: int, fraction: float = 0.5, multiple: int = 8
) -> int:
    """The largest batch whose ``per_sample`` bytes fit in ``fraction`` of ``free`` bytes,
    at most ``cap``, rounded down to a ``multiple`` (when that leaves at least one).

    Example:
        >>> batch_size_for(2**20, 2**30, cap=4096)   # 1 MiB a sample, 1 GiB free
        512
    """
    fits = int(fraction * free // max(per_sample, 1.0))
    size = max(1, min(int(cap), fits))
    return size - size % multiple if size >= multiple else size


class SpillFile:
    """A float32 ``.npy`` file of ``shape`` filled in order, batch by batch, then read back
    as a CPU tensor over a memory map.

    Rows are appended through a file handle (not written into a writable map), so the
    written pages sit in the operating system's cache, never in the process's memory,
    and only one batch is held at a time.
    """

    def __init__(self, path, shape: tuple[int, ...]) -> None:
        self.path, self.shape, self.rows = path, shape, 0
        self._file = open(path, "wb")  # noqa: SIM115 - closed by finish() or discard()
        header = {"descr": "<f4", "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_2_0(self._file, header)

    def __setitem__(self, rows: slice, value: torch.Tensor) -> None:
        if rows.start != self.rows or tuple(value.shape[1:]) != self.shape[1:]:
            raise RuntimeError(f"Rows {rows} of {self.path} are not the next ones in order.")
        array = value.detach().to("cpu", torch.float32).contiguous().numpy()
        self._file.write(memoryview(array).cast("B"))
        self.rows = rows.stop

    def finish(self) -> torch.Tensor:
        """The file as a CPU tensor ``[n, ...]`` over a memory map (pages read on use)."""
        self._file.close()
        if self.rows != self.shape[0]:
            raise RuntimeError(f"{self.path} holds {self.rows} of {self.shape[0]} rows.")
        return torch.from_numpy(np.load(self.path, mmap_mode="r+"))

    def discard(self) -> None:
        self._file.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


def finished_tensor(output: torch.Tensor | SpillFile) -> torch.Tensor:
    """A tensor as it is; a :class:`SpillFile` finished into its memory-mapped tensor."""
    return output.finish() if isinstance(output, SpillFile) else output


def discard_unfinished(outputs: dict) -> None:
    """Remove the spill files of an extraction that stopped half way."""
    for output in outputs.values():
        if isinstance(output, SpillFile):
            output.discard()
