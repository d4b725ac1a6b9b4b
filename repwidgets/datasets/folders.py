"""Your own images on disk, with a concept table, as a :class:`DataBundle`.

:func:`image_folder` reads a folder of image files, either in the ImageFolder layout
(``root/<class>/<file>``, the class is the folder's name) or flat (every file's class in
a table column), and a table (CSV file or pandas DataFrame) with one row per file: the
file's path relative to ``root`` and one 0/1 column per concept. Images are read from
disk when a sample is used, so a folder of 50,000 photographs never sits in memory;
labels (classes, concepts, groups, splits) are small tensors read once.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .._progress import progress_bar
from .bundle import DataBundle

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from PIL import Image as PILImage

__all__ = ["IMAGE_EXTENSIONS", "FolderBundle", "ImageFileDataset", "ImageFileError"]
__all__ += ["find_images", "image_folder", "read_image", "stratified_split"]

#: File name endings read as images (case-insensitive); other files under root are ignored.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff")
IMAGE_EXTENSIONS += (".webp",)
SPLITS = ("train", "val", "test")
#: With ``check_files=None`` every image is opened up front when there are at most this many.
CHECK_ALL_UP_TO = 1000
_SHOWN = 5


class ImageFileError(ValueError):
    """An image file that cannot be read, or whose size does not match the others."""


def _listing(items: Sequence[Any], shown: int = _SHOWN) -> str:
    """``'a', 'b', 'c' and 4 more`` for error messages."""
    head = ", ".join(repr(x) if isinstance(x, str) else str(x) for x in items[:shown])
    return head + (f" and {len(items) - shown} more" if len(items) > shown else "")


# ---------------------------------------------------------------------- reading images
def _to_rgb(img: PILImage.Image) -> PILImage.Image:
    """Any PIL mode -> 8-bit RGB (grey copied to three channels, alpha dropped)."""
    from PIL import Image

    if img.mode.startswith("I"):  # 16/32-bit grey: scale 0..65535 to 0..255
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(np.round(arr / 257.0), 0, 255).astype(np.uint8), "L")
    elif img.mode == "P":
        img = img.convert("RGBA")
    return img.convert("RGB")


def fit_image(img: PILImage.Image, size: tuple[int, int]) -> PILImage.Image:
    """Resize ``img`` (bilinear) so that it covers ``size`` = (h, w), then centre-crop to it.

    For a square ``size`` this resizes the shorter side to the target and crops the
    longer one, as torchvision's ``Resize(s)`` + ``CenterCrop(s)`` do.
    """
    from PIL import Image

    h, w = size
    width, height = img.size
    if (height, width) == (h, w):
        return img
    scale = max(h / height, w / width)
    new_w, new_h = max(w, round(width * scale)), max(h, round(height * scale))
    if (new_w, new_h) != (width, height):
        img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - w) // 2, (new_h - h) // 2
    return img.crop((left, top, left + w, top + h))


def _open_rgb(path: Path, shown_as: str) -> PILImage.Image:
    """Open and decode ``path`` as RGB; :class:`ImageFileError` naming the file otherwise."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            return _to_rgb(img)
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, ... for bad files
        raise ImageFileError(
            f"Cannot read image {shown_as!r} ({path}): {type(err).__name__}: {err}. The file is "
            "missing, truncated or not an image. Replace or delete it (and drop its row from "
            "the concept table); image_folder(..., check_files=True) lists every such file "
            "up front."
        ) from err


def read_image(path: str | os.PathLike, size: tuple[int, int] | None = None) -> torch.Tensor:
    """One image file as FloatTensor [3, H, W] in [0, 1] (RGB; grey becomes three channels).

    ``size`` = (h, w): resize to cover it (bilinear) and centre-crop (see :func:`fit_image`).

    Example:
        >>> read_image("cat/001.png", size=(224, 224)).shape  # doctest: +SKIP
        torch.Size([3, 224, 224])
    """
    img = _open_rgb(Path(path), str(path))
    if size is not None:
        img = fit_image(img, size)
    return _pixels(img)


def _pixels(img: PILImage.Image) -> torch.Tensor:
    arr = np.array(img, dtype=np.uint8)  # [H, W, 3], a copy torch may own
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)


class ImageFileDataset(Dataset):
    """One split of an image folder: items ``(FloatTensor [3, H, W] in [0, 1], class id)``.

    Each item is read from disk when asked for (nothing is kept in memory); ``targets``
    [n] (long), ``concepts`` [n, K] (bool) and ``groups`` [n] (long) are tensors, so
    labels never touch the images. ``files`` are the paths relative to ``root``.

    Args:
        root: the folder the files are relative to.
        files: n relative paths (``"cat/001.png"``).
        targets: LongTensor [n] of class ids.
        size: (h, w) to resize and centre-crop every image to; None keeps each image's
            size, which must then equal ``reference`` = (file, (width, height)).
        concepts, groups: optional label tensors, one row per file.
        classes: class names (optional, as torchvision folders have).
        rows: each sample's row in the concept table (default 0..n-1).

    Example:
        >>> ds = ImageFileDataset("photos", ["cat/1.png"], torch.tensor([0]),  # doctest: +SKIP
        ...                       size=(64, 64))
        >>> ds[0][0].shape  # doctest: +SKIP
        torch.Size([3, 64, 64])
    """

    def __init__(
        self,
        root: str | os.PathLike,
        files: Sequence[str],
        targets: torch.Tensor,
        *,
        size: tuple[int, int] | None = None,
        reference: tuple[str, tuple[int, int]] | None = None,
        concepts: torch.Tensor | None = None,
        groups: torch.Tensor | None = None,
        classes: Sequence[str] | None = None,
        rows: Sequence[int] | None = None,
    ):
        if len(files) != len(targets):
            raise ValueError(
                f"files and targets have different lengths: {len(files)} files, "
                f"{len(targets)} targets; pass one class id per file."
            )
        self.root = Path(root)
        self.files = [str(f) for f in files]
        self.targets = torch.as_tensor(targets, dtype=torch.long)
        self.size = size
        self.reference = reference
        self.concepts = concepts
        self.groups = groups
        self.rows = np.asarray(rows if rows is not None else range(len(self.files)))
        if classes is not None:
            self.classes = [str(c) for c in classes]

    def __len__(self) -> int:
        return len(self.files)

    def _index(self, i: int) -> int:
        n = len(self.files)
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"Index {i} is out of range for a split of {n} images.")
        return i % n

    def path(self, i: int) -> Path:
        """The file of sample ``i``."""
        return self.root / self.files[self._index(i)]

    def load(self, i: int) -> torch.Tensor:
        """The image of sample ``i``: FloatTensor [3, H, W] in [0, 1], read from disk now."""
        i = self._index(i)
        img = _open_rgb(self.root / self.files[i], self.files[i])
        if self.size is not None:
            return _pixels(fit_image(img, self.size))
        if self.reference is not None and img.size != self.reference[1]:
            raise ImageFileError(_size_message([(self.files[i], img.size)], self.reference))
        return _pixels(img)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        i = self._index(i)
        return self.load(i), int(self.targets[i])

    def render(self, indices: Sequence[int]) -> torch.Tensor:
        """Images at ``indices`` as FloatTensor [m, 3, H, W] in [0, 1]."""
        return torch.stack([self.load(i) for i in indices])

    def __repr__(self) -> str:
        return f"ImageFileDataset(root={str(self.root)!r}, n={len(self)}, size={self.size})"


def _size_message(
    wrong: Sequence[tuple[str, tuple[int, int]]], reference: tuple[str, tuple[int, int]]
) -> str:
    ref_file, (ref_w, ref_h) = reference
    shown = ", ".join(f"{f!r} is {w}x{h}" for f, (w, h) in wrong[:_SHOWN])
    more = f" and {len(wrong) - _SHOWN} more differ" if len(wrong) > _SHOWN else ""
    return (
        f"Images have different sizes (width x height): {shown}{more}, but {ref_file!r} is "
        f"{ref_w}x{ref_h}; images of different sizes cannot be batched. Pass image_size= "
        "(an int, or (h, w), usually the model's input size) to image_folder to resize "
        "and centre-crop every image to one size."
    )


# ---------------------------------------------------------------------- the folder
def _root(root: str | os.PathLike) -> Path:
    folder = Path(root).expanduser()
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise ValueError(
            f"Image folder {str(folder)!r} {what}. Pass the folder that holds the images "
            "(root/<class>/<file> or a flat folder of files)."
        )
    return folder


def find_images(root: str | os.PathLike) -> list[str]:
    """Every image file under ``root`` (recursively, hidden names skipped), as sorted
    paths relative to ``root`` with ``/`` separators."""
    out = []
    for here, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = Path(here).relative_to(root).as_posix()
        prefix = "" if rel == "." else rel + "/"
        out += [
            prefix + f
            for f in names
            if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)
        ]
    return sorted(out)


def _image_size(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        pair: tuple[Any, ...] = (int(image_size), int(image_size))
    elif isinstance(image_size, Sequence) and len(image_size) == 2:
        pair = tuple(image_size)
    else:
        pair = ()
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in pair):
        raise ValueError(
            f"image_size must be a positive int, a pair (h, w) of positive ints, or None; "
            f"got {image_size!r}."
        )
    return int(pair[0]), int(pair[1])


# ---------------------------------------------------------------------- the table
def _read_table(concepts: Any) -> pd.DataFrame | None:
    import pandas as pd

    if concepts is None or isinstance(concepts, pd.DataFrame):
        frame = concepts
    elif isinstance(concepts, (str, os.PathLike)):
        path = Path(concepts).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"Concept table {str(path)!r} does not exist. Pass the path of a CSV file "
                "(a file column and one 0/1 column per concept) or a pandas DataFrame."
            )
        frame = pd.read_csv(path)
    else:
        raise TypeError(
            f"concepts must be a CSV path, a pandas DataFrame or None; got "
            f"{type(concepts).__name__}."
        )
    if frame is not None and len(frame) == 0:
        raise ValueError("The concept table has no rows; it needs one row per image file.")
    return frame


def _column(frame: pd.DataFrame, column: str, role: str, fix: str) -> pd.Series:
    if column not in frame.columns:
        raise ValueError(
            f"The concept table has no {role} column {column!r}; its columns are "
            f"{[str(c) for c in frame.columns]}. {fix}"
        )
    series = frame[column]
    empty = np.flatnonzero(series.isna().to_numpy())
    if len(empty):
        raise ValueError(
            f"Column {column!r} is empty in {len(empty)} row(s) (rows {_listing(empty.tolist())}); "
            f"every row needs a {role}."
        )
    return series


def _relative(value: Any, roots: tuple[str, ...]) -> str:
    """A table's file entry as a clean relative posix path; ``roots`` (the folder as given
    and resolved, posix) are taken off absolute paths inside it."""
    text = str(value).strip().replace("\\", "/")
    if not text.startswith(("/", "./")) and "//" not in text and "/./" not in text:
        return text  # already clean: the common case, kept fast for large tables
    path = PurePosixPath(text)
    if path.is_absolute():
        inside = [path.relative_to(r) for r in roots if path.is_relative_to(r)]
        if not inside:
            return text
        path = inside[0]
    return "/".join(p for p in path.parts if p not in ("", "."))


def _match(files: list[str], found: list[str], root: Path, file_column: str, unlisted: str) -> None:
    """Check the table's files against the images on disk: duplicates, missing, unlisted."""
    seen: dict[str, int] = {}
    for row, f in enumerate(files):
        if f in seen:
            raise ValueError(
                f"The concept table lists {f!r} twice (rows {seen[f]} and {row}); keep one "
                "row per image file."
            )
        seen[f] = row
    on_disk = set(found)
    missing = [f for f in files if f not in on_disk]
    if missing:
        not_images = [f for f in missing[:_SHOWN] if (root / f).is_file()]
        note = (
            f" ({_listing(not_images)} exist but are not image files: {', '.join(IMAGE_EXTENSIONS)})"
            if not_images
            else ""
        )
        raise ValueError(
            f"{len(missing)} row(s) of the concept table name files that are not images under "
            f"{str(root)!r}: {_listing(missing)}{note}. Fix column {file_column!r} (paths "
            "relative to root, like 'cat/001.png') or drop those rows."
        )
    if unlisted not in ("error", "ignore"):
        raise ValueError(f"unlisted must be 'error' or 'ignore'; got {unlisted!r}.")
    extra = [f for f in found if f not in seen]
    if extra and unlisted == "error":
        raise ValueError(
            f"{len(extra)} image file(s) under {str(root)!r} have no row in the concept table: "
            f"{_listing(extra)}. Add a row for each (column {file_column!r}), move them out of "
            "the folder, or pass unlisted='ignore' to leave them out."
        )


def _integer_values(values: np.ndarray) -> np.ndarray | None:
    """``values`` as int64 when they are all whole numbers (ints, or floats like 2.0)."""
    if values.dtype == bool or values.dtype.kind not in "iuf":
        return None
    if values.dtype.kind == "f" and not np.all(values == np.round(values)):
        return None
    return values.astype(np.int64)


def _class_ids(
    labels: Sequence[Any], class_names: Sequence[str] | None, source: str
) -> tuple[np.ndarray, list[str]]:
    """Class ids [n] and class names from per-sample labels (names, or ints used as ids)."""
    values = np.asarray(labels)
    ints = _integer_values(values)
    if ints is not None:
        if ints.min() < 0:
            raise ValueError(f"{source} holds class id {int(ints.min())}; class ids are >= 0.")
        names = [str(c) for c in class_names] if class_names else []
        names = names or [str(i) for i in range(int(ints.max()) + 1)]
        if int(ints.max()) >= len(names):
            raise ValueError(
                f"{source} holds class id {int(ints.max())} but class_names has {len(names)} "
                "names; give one name per class id."
            )
        return ints, names
    text = [str(v) for v in labels]
    names = [str(c) for c in class_names] if class_names else sorted(set(text))
    position = {c: k for k, c in enumerate(names)}
    unknown = sorted({t for t in text if t not in position})
    if unknown:
        raise ValueError(
            f"{source} holds classes {_listing(unknown)} that are not in class_names "
            f"{names}; add them to class_names (in the order of the model's outputs)."
        )
    return np.array([position[t] for t in text], dtype=np.int64), names


def _folder_classes(
    samples: list[str], found: list[str], class_names: Sequence[str] | None
) -> tuple[np.ndarray, list[str]]:
    """ImageFolder layout: each file's class is its first folder below root."""
    loose = [f for f in samples if "/" not in f]
    if loose:
        raise ValueError(
            f"{len(loose)} image file(s) sit directly in the image folder, outside any class "
            f"folder: {_listing(loose)}. Use the layout root/<class>/<file>, or for a flat "
            "folder pass class_column= naming the concept table's column that holds each "
            "file's class."
        )
    folders = sorted({f.split("/", 1)[0] for f in found if "/" in f})
    ids, names = _class_ids(
        [f.split("/", 1)[0] for f in samples], class_names or folders, "The folder layout"
    )
    return ids, names


def _bool_column(series: pd.Series, files: Sequence[str]) -> np.ndarray:
    """A 0/1 or True/False column as a bool array; a clear error naming a bad value."""
    values = series.to_numpy()
    if values.dtype == bool:
        return values
    if values.dtype.kind in "iuf":
        bad = np.flatnonzero(~np.isin(values, (0, 1)))
    else:
        bad = np.flatnonzero(
            [
                not (isinstance(v, (bool, np.bool_)) or (_is_number(v) and v in (0, 1)))
                for v in values
            ]
        )
    if len(bad):
        row = int(bad[0])
        value = values[row].item() if isinstance(values[row], np.generic) else values[row]
        raise ValueError(
            f"Concept column {str(series.name)!r} is not boolean: row {row} ({files[row]!r}) "
            f"holds {value!r} ({len(bad)} bad value(s) in all). Concept columns hold 0/1 "
            "or True/False; fix those values, or leave the column out with "
            "concept_columns=[...]."
        )
    return values.astype(bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not np.isnan(value)


def _concepts(
    frame: pd.DataFrame,
    files: Sequence[str],
    concept_columns: Sequence[str] | None,
    used: Sequence[str | None],
) -> tuple[list[str], np.ndarray]:
    """Concept names and the bool matrix [n, K] of the table's concept columns."""
    if concept_columns is None:
        columns = [c for c in frame.columns if c not in used]
    else:
        columns = list(concept_columns)
        unknown = [c for c in columns if c not in frame.columns]
        if unknown:
            raise ValueError(
                f"concept_columns names {unknown}, which the concept table lacks; its "
                f"columns are {[str(c) for c in frame.columns]}."
            )
    matrix = np.zeros((len(frame), len(columns)), dtype=bool)
    for k, column in enumerate(columns):
        matrix[:, k] = _bool_column(frame[column], files)
    return [str(c) for c in columns], matrix


# ---------------------------------------------------------------------- splits and groups
def _split_codes(series: pd.Series, files: Sequence[str]) -> np.ndarray:
    """The split column as codes 0 (train), 1 (val), 2 (test)."""
    text = [str(v).strip().lower() for v in series]
    bad = [k for k, v in enumerate(text) if v not in SPLITS]
    if bad:
        row = bad[0]
        raise ValueError(
            f"Split column {str(series.name)!r} holds {series.iloc[row]!r} in row {row} "
            f"({files[row]!r}); each row needs 'train', 'val' or 'test'."
        )
    return np.array([SPLITS.index(v) for v in text], dtype=np.int64)


def _shares(n: int, fractions: Sequence[float]) -> list[int]:
    """Split ``n`` into counts proportional to ``fractions`` (largest remainder, ties to
    the earlier split)."""
    raw = [n * f for f in fractions]
    counts = [int(np.floor(r)) for r in raw]
    order = sorted(range(len(raw)), key=lambda k: (-(raw[k] - counts[k]), k))
    for k in order[: n - sum(counts)]:
        counts[k] += 1
    return counts


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(f) for f in fractions)
    if (
        len(values) != 3
        or any(not np.isfinite(f) or f < 0 for f in values)
        or abs(sum(values) - 1) > 1e-6
        or values[0] == 0
        or values[2] == 0
    ):
        raise ValueError(
            f"fractions must be (train, val, test) shares >= 0 that sum to 1, with train and "
            f"test > 0 (val may be 0); got {tuple(fractions)}."
        )
    return values  # type: ignore[return-value]


def stratified_split(targets: np.ndarray, fractions: Sequence[float], seed: int = 0) -> np.ndarray:
    """Split codes [n] (0 train, 1 val, 2 test): each class shared out by ``fractions``
    after a seeded shuffle, so every split holds each class in the same proportions."""
    shares = _check_fractions(fractions)
    rng = np.random.default_rng(int(seed))
    codes = np.empty(len(targets), dtype=np.int64)
    for c in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == c))
        start = 0
        for code, count in enumerate(_shares(len(members), shares)):
            codes[members[start : start + count]] = code
            start += count
    return codes


def _groups(
    targets: np.ndarray,
    class_names: Sequence[str],
    concept_names: Sequence[str],
    matrix: np.ndarray | None,
    group_concept: str | None,
) -> tuple[np.ndarray | None, list[str]]:
    """Group ids class * 2 + has_concept and their names (``cat/no-watermark``, ``cat/watermark``)."""
    if group_concept is None:
        return None, []
    if matrix is None or not concept_names:
        raise ValueError(
            f"group_concept={group_concept!r} needs concept labels; pass a concept table with "
            "a column of that name."
        )
    if group_concept not in concept_names:
        raise ValueError(
            f"Unknown group_concept {group_concept!r}; the concept table has concepts "
            f"{list(concept_names)}."
        )
    has = matrix[:, list(concept_names).index(group_concept)].astype(np.int64)
    names = [f"{c}/{p}{group_concept}" for c in class_names for p in ("no-", "")]
    return targets * 2 + has, names


# ---------------------------------------------------------------------- checking files
def check_images(
    root: Path,
    files: Sequence[str],
    size: tuple[int, int] | None,
    reference: tuple[str, tuple[int, int]],
) -> None:
    """Open and decode every file; one error listing all unreadable files (or, with
    ``size`` None, all files whose size differs from ``reference``)."""
    broken: list[str] = []
    first_error = ""
    wrong: list[tuple[str, tuple[int, int]]] = []
    bar = progress_bar(files, desc="checking images", enable=len(files) > 2000, unit="file")
    for f in bar:
        try:
            img = _open_rgb(root / f, f)
        except ImageFileError as err:
            broken.append(f)
            first_error = first_error or str(err.__cause__)
            continue
        if size is None and img.size != reference[1]:
            wrong.append((f, img.size))
    if broken:
        raise ImageFileError(
            f"{len(broken)} image file(s) under {str(root)!r} cannot be read: "
            f"{_listing(broken)} (first: {first_error}). Replace or delete them and drop their "
            "rows from the concept table."
        )
    if wrong:
        raise ImageFileError(_size_message(wrong, reference))


def _reference(root: Path, first: str) -> tuple[str, tuple[int, int]]:
    """The first image's file and (width, height): the size every image must have when
    ``image_size`` is None (read now, so a broken first file is named at once)."""
    return first, _open_rgb(root / first, first).size


# ---------------------------------------------------------------------- the bundle
class FolderBundle(DataBundle):
    """A :class:`DataBundle` over image files, which also knows each sample's file and row.

    ``files(split)`` are the paths relative to ``root`` in sample order, and
    ``table(split)`` the concept table's rows in the same order (sample ``i`` of a split
    is row ``i`` of its table), so a selection of samples maps back to files and rows.
    """

    root: Path
    _frame: pd.DataFrame | None

    def files(self, split: str) -> list[str]:
        """Paths (relative to ``root``) of the samples of ``split``, in sample order."""
        return list(self.dataset(split).files)  # type: ignore[attr-defined]

    def table(self, split: str) -> pd.DataFrame | None:
        """The concept table's rows of ``split`` in sample order (None without a table)."""
        rows = self.dataset(split).rows  # type: ignore[attr-defined]
        return None if self._frame is None else self._frame.iloc[rows]


def _digest(files: Sequence[str], *arrays: np.ndarray | None) -> str:
    """A short hash of the sample list and labels, for cache keys and reprs."""
    h = hashlib.sha1("\n".join(files).encode())
    for a in arrays:
        if a is not None:
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def image_folder(
    root: str | os.PathLike,
    concepts: str | os.PathLike | pd.DataFrame | None = None,
    *,
    file_column: str = "file",
    class_column: str | None = None,
    split_column: str | None = None,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    image_size: int | tuple[int, int] | None = None,
    group_concept: str | None = None,
    seed: int = 0,
    name: str | None = None,
    concept_columns: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    check_files: bool | None = None,
    unlisted: str = "error",
) -> FolderBundle:
    """A folder of images and its concept table as a :class:`DataBundle` for ``rw.Session``.

    Args:
        root: the image folder. ImageFolder layout ``root/<class>/<file>`` (classes are the
            folder names, sorted, as torchvision's ImageFolder numbers them), or a flat
            folder whose classes come from ``class_column``. Files ending in
            :data:`IMAGE_EXTENSIONS` are images; other files (the CSV itself) are ignored.
        concepts: the concept table, a CSV path or a pandas DataFrame: one row per image,
            a file column and one column per concept holding 0/1 or True/False. None: no
            concept labels (ImageFolder layout only).
        file_column: the table's column of file paths, relative to ``root``
            (``"cat/001.png"``).
        class_column: the table's column of each file's class, names or int ids (ids are
            used as they are, so they keep matching a model's outputs). When given it
            takes precedence over the folder names.
        split_column: the table's column of ``"train"``, ``"val"`` or ``"test"`` per row;
            without it the files are split by ``fractions``.
        fractions: (train, val, test) shares, drawn per class after a shuffle seeded by
            ``seed`` (stratified, reproducible). A val share of 0 leaves out the val split.
        image_size: an int or (h, w): every image is resized (bilinear) so that it covers
            that size, then centre-cropped to it (an int resizes the shorter side). Use
            the model's input size. None keeps the images as they are; they must then all
            have one size.
        group_concept: a concept name; groups are class x that concept, named like
            ``"cat/watermark"`` and ``"cat/no-watermark"`` (group id = class * 2 + has it),
            for worst-group accuracy and mid-range curation.
        seed: the seed of the split by ``fractions``.
        name: the bundle's name (default: the folder's name).
        concept_columns: which columns are concepts (default: every column other than the
            file, class and split columns).
        class_names: class names in the order of the model's outputs (default: sorted
            folder names or class values; with int class ids, ``"0"``, ``"1"``, ...).
        check_files: open and decode every image now, listing every unreadable file (and,
            with ``image_size=None``, every file of a different size) in one error.
            Default None checks when there are at most 1,000 images (seconds at most) and
            otherwise reads each image only when a sample is first used: decoding 50,000
            JPEGs takes minutes, and a file that cannot be read is still named, with its
            path, by the error raised when it is read. Pass True once after collecting data.
        unlisted: ``"error"`` (default) when image files under ``root`` have no row in the
            table; ``"ignore"`` leaves them out.

    Returns:
        A :class:`FolderBundle` with splits ``train``, ``val`` (when it has samples) and
        ``test``, whose items are ``(FloatTensor [3, H, W] in [0, 1], class id)`` read from
        disk on access. ``concepts(split)`` is bool [n, K] with row ``i`` the table row of
        sample ``i``'s file (``files(split)[i]``); ``groups(split)`` with ``group_concept``.

    Example:
        >>> bundle = rw.datasets.image_folder(  # doctest: +SKIP
        ...     "photos", "photos/concepts.csv", image_size=224, group_concept="watermark"
        ... )
        >>> bundle.concept_names, bundle.files("test")[:2]  # doctest: +SKIP
        (['watermark', 'outdoor'], ['cat/0003.jpg', 'cat/0011.jpg'])
        >>> sess = rw.Session(model, bundle, preprocess=normalize)  # doctest: +SKIP
    """
    folder = _root(root)
    size = _image_size(image_size)
    found = find_images(folder)
    if not found:
        raise ValueError(
            f"No image files under {str(folder)!r} (looked for {', '.join(IMAGE_EXTENSIONS)}, "
            "in subfolders too). Pass the folder that holds the images."
        )
    frame = _read_table(concepts)
    for option, value in (("class_column", class_column), ("split_column", split_column)):
        if value is not None and frame is None:
            raise ValueError(f"{option}={value!r} needs a concept table (concepts=...).")
    if frame is None:
        samples = found
    else:
        fix = "Pass file_column= naming the column of file paths relative to root."
        roots = (folder.absolute().as_posix(), folder.resolve().as_posix())
        samples = [_relative(v, roots) for v in _column(frame, file_column, "file", fix)]
        _match(samples, found, folder, file_column, unlisted)
    if class_column is not None:
        fix = "Pass class_column= naming the column with each file's class."
        labels = _column(frame, class_column, "class", fix).tolist()  # type: ignore[arg-type]
        targets, names = _class_ids(labels, class_names, f"Class column {class_column!r}")
    else:
        targets, names = _folder_classes(samples, found, class_names)
    concept_names: list[str] = []
    matrix: np.ndarray | None = None
    if frame is not None:
        used = (file_column, class_column, split_column)
        concept_names, matrix = _concepts(frame, samples, concept_columns, used)
    if split_column is not None:
        fix = "Pass split_column= naming the column of 'train' / 'val' / 'test'."
        codes = _split_codes(_column(frame, split_column, "split", fix), samples)  # type: ignore[arg-type]
    else:
        codes = stratified_split(targets, fractions, seed)
    groups, group_names = _groups(targets, names, concept_names, matrix, group_concept)
    reference = _reference(folder, samples[0])
    if check_files or (check_files is None and len(samples) <= CHECK_ALL_UP_TO):
        check_images(folder, samples, size, reference)
    labels = {"targets": targets, "concepts": matrix, "groups": groups}
    splits = _split_datasets(folder, samples, codes, labels, names, size, reference)
    config = {
        "name": name or folder.name or "images",
        "kind": "image_folder",
        "root": str(folder.resolve()),
        "n": len(samples),
        "image_size": list(size) if size is not None else None,
        "split_column": split_column,
        "fractions": None if split_column else [float(f) for f in fractions],
        "seed": int(seed),
        "group_concept": group_concept,
        "digest": _digest(samples, targets, codes, matrix),
    }
    bundle = FolderBundle(
        config["name"], splits, names, concept_names, config, group_names=group_names
    )
    bundle.root, bundle._frame = folder, frame
    return bundle


def _split_datasets(
    folder: Path,
    samples: list[str],
    codes: np.ndarray,
    labels: dict[str, np.ndarray | None],
    class_names: list[str],
    size: tuple[int, int] | None,
    reference: tuple[str, tuple[int, int]],
) -> dict[str, ImageFileDataset]:
    """One :class:`ImageFileDataset` per split, samples in table (or file) order; ``labels``
    maps targets / concepts / groups to arrays over all samples ([n] or [n, K]) or None."""
    splits: dict[str, ImageFileDataset] = {}
    for code, split in enumerate(SPLITS):
        idx = np.flatnonzero(codes == code)
        if not len(idx) and split == "val":
            continue
        if not len(idx):
            raise ValueError(
                f"The {split!r} split has no images ({len(samples)} in all). Give it some rows "
                "in the split column, or more images / a larger share in fractions."
            )
        part = {
            k: None if v is None else torch.from_numpy(v[idx].copy()) for k, v in labels.items()
        }
        splits[split] = ImageFileDataset(
            folder,
            [samples[i] for i in idx],
            part["targets"],  # type: ignore[arg-type]
            size=size,
            reference=reference,
            concepts=part["concepts"],
            groups=part["groups"],
            classes=class_names,
            rows=idx,
        )
    return splits
