"""Reading a dataset in batches: a background prefetcher and a check for NaN images.

The session's extraction and the trainer's evaluation read data through these, so a
slow dataset overlaps with the model and a broken image is named before it turns
into NaN activations.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

import torch

__all__ = ["finite_checked", "nonfinite_samples", "prefetched"]


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


def prefetched(batches: Iterable, depth: int = 2) -> Iterator:
    """Iterate ``batches`` while a background thread loads the next ``depth`` ones.

    Data generation and decoding (NumPy, PIL) overlap with the model's forward pass,
    which keeps extraction close to the model's own throughput.
    """
    slots: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def load() -> None:
        try:
            for batch in batches:
                if stop.is_set():
                    return
                slots.put(batch)
        except BaseException as exc:  # handed to the consumer, raised there
            slots.put(exc)
        slots.put(done)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        while (item := slots.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                slots.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.01)
