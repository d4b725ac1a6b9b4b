"""scikit-learn's handwritten digits as a small real-data bundle with an optional planted artifact.

The 1,797 8x8 digit images of ``sklearn.datasets.load_digits`` are upsampled (bicubic) to
``image_size``, made RGB (white ink on black), split into train / val / test (stratified by
digit), and optionally marked with an artifact (default a magenta border) in most training
images of one class. Concepts: the digit (``digit_0``..``digit_9``), stroke thickness
(``thin`` / ``medium`` / ``thick``: thirds of the ink mass within each digit) and the
artifact.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .bundle import DataBundle
from .shapes import _patch_size, check_artifact_arguments, draw_artifact, group_names_for

__all__ = ["DigitsDataset", "digits"]

GENERATOR_VERSION = 1
CLASS_NAMES = [str(d) for d in range(10)]
THICKNESS = ["thin", "medium", "thick"]


class DigitsDataset(Dataset):
    """One split of the digits bundle: items ``(FloatTensor [3, S, S] in [0, 1], digit)``.

    The split's images are small and kept in memory. ``targets`` [n], ``concepts``
    [n, K] (bool), ``groups`` [n] and ``source_index`` (row in ``load_digits``) are
    attributes.
    """

    def __init__(
        self,
        split: str,
        images: torch.Tensor,
        targets: np.ndarray,
        concepts: np.ndarray,
        groups: np.ndarray,
        source_index: np.ndarray,
        concept_names: list[str],
    ):
        self.split = split
        self.images = images
        self.targets = torch.as_tensor(targets, dtype=torch.long)
        self.concepts = torch.as_tensor(concepts, dtype=torch.bool)
        self.groups = torch.as_tensor(groups, dtype=torch.long)
        self.source_index = torch.as_tensor(source_index, dtype=torch.long)
        self.concept_names = concept_names
        self.classes = list(CLASS_NAMES)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.targets[i])

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        xs = self.images[idx]
        return [(xs[k], int(self.targets[j])) for k, j in enumerate(idx.tolist())]

    def render(self, indices: Sequence[int]) -> torch.Tensor:
        """Images at ``indices``: FloatTensor [m, 3, S, S]."""
        return self.images[torch.as_tensor(list(indices), dtype=torch.long)]

    def __repr__(self) -> str:
        return f"DigitsDataset(split={self.split!r}, n={len(self)})"


@functools.lru_cache(maxsize=1)
def _load_raw() -> tuple[np.ndarray, np.ndarray]:
    """The 8x8 images in [0, 1] (float32 [1797, 8, 8]) and labels, read once per process."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - scikit-learn is a dependency
        raise ImportError("digits() needs scikit-learn: pip install scikit-learn") from err
    raw = load_digits()
    images = raw.images.astype(np.float32) / 16.0
    labels = raw.target.astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def digits(
    artifact: str | None = "border",
    spurious_class: int = 0,
    spurious_strength: float = 0.95,
    seed: int = 0,
    image_size: int = 32,
    balanced_test: bool = True,
    *,
    artifact_rate: float = 0.02,
    val_fraction: float = 0.15,
    test_fraction: float = 0.25,
    test_artifact_fraction: float = 0.5,
) -> DataBundle:
    """scikit-learn's handwritten digits (1,797 images) as a DataBundle.

    Args:
        artifact: "border" (magenta frame), "watermark", "patch" or None.
        spurious_class: digit whose training images mostly carry the artifact.
        spurious_strength: fraction of that digit's training images with the artifact.
        seed: seeds the split and the artifact placement.
        image_size: side of the upsampled RGB images (8x8 originals).
        balanced_test: val and test carry the artifact in ``test_artifact_fraction`` of
            every digit (independent of the class).
        artifact_rate: fraction of other digits' training images with the artifact.
        val_fraction, test_fraction: split sizes (stratified by digit).

    Returns:
        DataBundle with splits train, val, test; concepts digit_0..digit_9, thin, medium,
        thick and the artifact; groups digit x artifact (e.g. "3/border").

    Example:
        >>> data = digits(artifact="border", spurious_class=3)
        >>> data.class_names[:3], data.concept_names[-1]
        (['0', '1', '2'], 'border')
    """
    check_artifact_arguments(artifact, spurious_strength, artifact_rate, test_artifact_fraction)
    if not 0 <= int(spurious_class) <= 9:
        raise ValueError(f"spurious_class must be a digit 0..9; got {spurious_class!r}.")
    if not (val_fraction > 0 and test_fraction > 0 and val_fraction + test_fraction < 0.9):
        raise ValueError(
            f"val_fraction and test_fraction must be > 0 and sum to < 0.9; got {val_fraction} "
            f"and {test_fraction}."
        )
    if int(image_size) < 8:
        raise ValueError(f"image_size must be >= 8; got {image_size}.")
    S = int(image_size)
    images8, labels = _load_raw()
    N = len(labels)

    # Stroke thickness: thirds of the ink mass within each digit (whole data set).
    ink = images8.reshape(N, -1).sum(1)
    thickness = np.zeros(N, dtype=np.int64)
    for d in range(10):
        idx = np.flatnonzero(labels == d)
        cuts = np.quantile(ink[idx], [1 / 3, 2 / 3])
        thickness[idx] = np.searchsorted(cuts, ink[idx], side="right")

    rng = np.random.default_rng([int(seed), 2024])
    split_of = np.zeros(N, dtype=np.int64)  # 0 train, 1 val, 2 test
    for d in range(10):
        idx = rng.permutation(np.flatnonzero(labels == d))
        n_val = int(round(len(idx) * val_fraction))
        n_test = int(round(len(idx) * test_fraction))
        split_of[idx[:n_val]] = 1
        split_of[idx[n_val : n_val + n_test]] = 2

    has_art = np.zeros(N, dtype=bool)
    if artifact is not None:
        for code in (0, 1, 2):
            in_split = split_of == code
            if code == 0 or not balanced_test:
                p = np.where(labels == int(spurious_class), spurious_strength, artifact_rate)
                draw = rng.random(N) < p
                has_art[in_split] = draw[in_split]
            else:
                for d in range(10):
                    idx = rng.permutation(np.flatnonzero(in_split & (labels == d)))
                    has_art[idx[: int(round(len(idx) * test_artifact_fraction))]] = True

    up = F.interpolate(
        torch.tensor(images8)[:, None], size=(S, S), mode="bicubic", align_corners=False
    ).clamp(0, 1)
    rgb = up.repeat(1, 3, 1, 1).numpy().copy()
    if artifact is not None and has_art.any():
        art_idx = np.flatnonzero(has_art)
        pos = None
        if artifact == "patch":
            p = _patch_size(S)
            corner = rng.integers(0, 4, len(art_idx))
            m = 1
            xs = np.where(corner % 2 == 0, m, S - m - p)
            ys = np.where(corner // 2 == 0, m, S - m - p)
            pos = np.stack([xs, ys], 1)
        rgb[art_idx] = draw_artifact(rgb[art_idx], artifact, pos)

    names = [f"digit_{d}" for d in range(10)] + THICKNESS + ([artifact] if artifact else [])
    cols = [labels == d for d in range(10)] + [thickness == t for t in range(3)]
    if artifact is not None:
        cols.append(has_art)
    concepts = np.stack(cols, 1)
    groups = labels * 2 + has_art if artifact is not None else labels.copy()

    cfg: dict[str, Any] = {
        "name": "digits",
        "version": GENERATOR_VERSION,
        "artifact": artifact,
        "spurious_class": int(spurious_class),
        "spurious_strength": float(spurious_strength),
        "artifact_rate": float(artifact_rate),
        "test_artifact_fraction": float(test_artifact_fraction),
        "balanced_test": bool(balanced_test),
        "seed": int(seed),
        "image_size": S,
        "val_fraction": float(val_fraction),
        "test_fraction": float(test_fraction),
    }
    splits: dict[str, Dataset] = {}
    for name, code in (("train", 0), ("val", 1), ("test", 2)):
        idx = np.flatnonzero(split_of == code)
        splits[name] = DigitsDataset(
            name,
            torch.from_numpy(rgb[idx]),
            labels[idx],
            concepts[idx],
            groups[idx],
            idx,
            names,
        )
    return DataBundle(
        "digits",
        splits,
        CLASS_NAMES,
        names,
        cfg,
        group_names=group_names_for(CLASS_NAMES, artifact),
    )
