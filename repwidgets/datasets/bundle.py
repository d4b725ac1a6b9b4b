"""DataBundle: one object that holds a dataset's splits and every label the methods need.

The methods ask a bundle for targets, concept labels (boolean attributes per sample,
used by INVERT, probes and reports) and group labels (class x artifact, used for
worst-group accuracy). The embedded datasets (:func:`repwidgets.datasets.shapes`,
:func:`repwidgets.datasets.digits`) return bundles; :func:`as_bundle` wraps user data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .._progress import progress_bar

__all__ = ["DataBundle", "TensorImageDataset", "as_bundle"]

_ACCEPTED = (
    "a DataBundle, a dict of split name -> torch Dataset, a single map-style torch Dataset "
    "(len() and [i] returning (image, target)), a torchvision ImageFolder, or a pair "
    "(X, y) of tensors/arrays with X of shape [n, C, H, W] and y of shape [n]"
)


def _describe(obj: Any) -> str:
    """A short human description of ``obj`` for error messages."""
    kind = type(obj).__module__ + "." + type(obj).__qualname__
    if isinstance(obj, (tuple, list)):
        inner = ", ".join(type(o).__name__ for o in obj[:4])
        return f"a {type(obj).__name__} of {len(obj)} items ({inner})"
    return f"an object of type {kind}"


def _as_long_tensor(values: Any) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().long().reshape(-1)
    return torch.as_tensor(np.asarray(values), dtype=torch.long).reshape(-1)


_TARGET_FIX = (
    "Targets must be int class ids, one per sample. For one-hot or probability targets "
    "[n, n_classes] pass the class index instead, e.g. TensorDataset(X, y.argmax(dim=1)); "
    "for whole-number float labels pass y.long()."
)


def _show(value: Any) -> str:
    """A short description of a target value: its repr, dtype and shape when it has them."""
    text = repr(value)
    text = text if len(text) <= 80 else text[:77] + "..."
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    details = ", ".join(
        part
        for part in (
            f"dtype {dtype}" if dtype is not None else type(value).__name__,
            f"shape {list(shape)}" if shape is not None else "",
        )
        if part
    )
    return f"{text} ({details})"


def class_id(target: Any, index: int, split: str) -> int:
    """The int class id of one item's target; a clear error naming the item otherwise."""
    if isinstance(target, (int, np.integer, np.bool_)):
        return int(target)
    array = target.detach().cpu() if isinstance(target, torch.Tensor) else target
    try:
        array = np.asarray(array)
    except Exception:  # an object that is not array-like at all
        array = np.asarray(None, dtype=object)
    integer = np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.bool_)
    if array.ndim == 0 and integer:
        return int(array)
    raise TypeError(
        f"Item {index} of split {split!r} has target {_show(target)}, not an int class id. "
        + _TARGET_FIX
    )


def class_ids(values: Any, split: str) -> torch.Tensor:
    """A dataset's ``targets`` attribute as LongTensor [n]; a clear error if not class ids."""
    t = values.detach().cpu() if isinstance(values, torch.Tensor) else None
    if t is None:
        try:
            t = torch.as_tensor(np.asarray(values))
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"The targets of split {split!r} are not an array ({err}). " + _TARGET_FIX
            ) from None
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 1:
        raise TypeError(
            f"The targets of split {split!r} have shape {list(t.shape)}; item 0 has target "
            f"{_show(t[0] if t.ndim else t)}. " + _TARGET_FIX
        )
    if t.is_complex():
        raise TypeError(f"The targets of split {split!r} have dtype {t.dtype}. " + _TARGET_FIX)
    if t.is_floating_point():
        bad = torch.nonzero(~torch.isfinite(t) | (t != t.round())).flatten()
        if bad.numel():
            i = int(bad[0])
            raise TypeError(
                f"Item {i} of split {split!r} has target {_show(t[i])}, not an int class id. "
                + _TARGET_FIX
            )
    return t.long()


def missing_concepts_message(name: str, split: str) -> str:
    """How to give a dataset concept labels, for methods that need them."""
    return (
        f"Data {name!r} has no concept labels for split {split!r}. Build the data as "
        "rw.datasets.DataBundle(name, {'train': train_ds, 'test': test_ds}, class_names, "
        "concept_names=[...K names...], concepts={'train': bool tensor [n_train, K], "
        "'test': bool tensor [n_test, K]}) and pass that bundle to rw.Session(model, bundle); "
        "or give each dataset a .concepts attribute (bool [n, K]) and pass concept_names to "
        "DataBundle. The embedded rw.datasets.shapes() and rw.datasets.digits() carry "
        "concept labels."
    )


class TensorImageDataset(Dataset):
    """A dataset over an image tensor ``X`` [n, C, H, W] in [0, 1] and labels ``y`` [n].

    Items are ``(X[i], int(y[i]))``; ``targets`` is the label tensor, so bundles read
    labels without touching images.

    Example:
        >>> ds = TensorImageDataset(torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 0, 1]))
        >>> ds[1][1]
        1
    """

    def __init__(self, X: torch.Tensor, y: torch.Tensor):
        if X.shape[0] != y.shape[0]:
            raise ValueError(
                f"X and y have different lengths: X has {X.shape[0]} samples, y has "
                f"{y.shape[0]}; pass one label per image."
            )
        self.X = X
        self.targets = y

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.X[i], int(self.targets[i])

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        xs, ys = self.X[idx], self.targets[idx]
        return [(xs[k], int(ys[k])) for k in range(len(idx))]

    def render(self, indices: Sequence[int]) -> torch.Tensor:
        """Images at ``indices`` as one tensor [m, C, H, W]."""
        return self.X[torch.as_tensor(list(indices), dtype=torch.long)]


class _ToTensorView(Dataset):
    """Wraps a dataset whose items are PIL images so that items become float tensors in [0, 1].

    Used for torchvision ImageFolder without a ``transform``; ``image_size`` (optional)
    resizes the shorter side and centre-crops to a square so that images can be batched.
    """

    def __init__(self, base: Dataset, image_size: int | None = None):
        self.base = base
        self.image_size = image_size
        if hasattr(base, "targets"):
            self.targets = base.targets
        if hasattr(base, "classes"):
            self.classes = base.classes

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img, target = self.base[i]
        return _to_image_tensor(img, self.image_size), int(target)


def _to_image_tensor(img: Any, image_size: int | None = None) -> torch.Tensor:
    """PIL image / array / tensor -> FloatTensor [C, H, W] in [0, 1]."""
    if isinstance(img, torch.Tensor):
        out = img.float() / 255.0 if img.dtype == torch.uint8 else img.float()
    else:
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover - pillow ships with torchvision
            Image = None
        if Image is not None and isinstance(img, Image.Image):
            img = img.convert("RGB")
            if image_size is not None:
                w, h = img.size
                scale = image_size / min(w, h)
                img = img.resize(
                    (max(image_size, round(w * scale)), max(image_size, round(h * scale))),
                    Image.BILINEAR,
                )
                w, h = img.size
                left, top = (w - image_size) // 2, (h - image_size) // 2
                img = img.crop((left, top, left + image_size, top + image_size))
            arr = np.asarray(img, dtype=np.uint8).copy()
            return torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0
        arr = np.asarray(img)
        out = torch.from_numpy(arr.astype(np.float32))
        if arr.dtype == np.uint8:
            out = out / 255.0
        if out.ndim == 3 and out.shape[-1] in (1, 3, 4) and out.shape[0] not in (1, 3, 4):
            out = out.permute(2, 0, 1)
    if out.ndim == 2:
        out = out[None]
    return out


class DataBundle:
    """The splits of a dataset together with class, concept and group labels.

    Args:
        name: short name, e.g. ``"shapes"``.
        splits: split name -> map-style Dataset whose items are
            ``(image FloatTensor [C, H, W] in [0, 1], int target)``. Must contain
            ``"train"`` and ``"test"``.
        class_names: one name per class.
        concept_names: names of the boolean concept columns (may be empty).
        config: JSON-able description of how the data was made (used in cache keys).
        targets, concepts, groups: optional split -> tensor overrides. When absent the
            bundle reads the dataset attributes ``targets`` [n], ``concepts`` [n, K] (bool)
            and ``groups`` [n] (long), and for targets falls back to iterating the
            dataset once.
        group_names: names of the group ids (e.g. ``"circle/watermark"``).

    Example:
        >>> data = repwidgets.datasets.shapes(n_train=200, n_test=100)  # doctest: +SKIP
        >>> data.concepts("test").shape  # doctest: +SKIP
        torch.Size([100, 23])
    """

    def __init__(
        self,
        name: str,
        splits: Mapping[str, Dataset],
        class_names: Sequence[str],
        concept_names: Sequence[str] = (),
        config: dict | None = None,
        *,
        targets: Mapping[str, Any] | None = None,
        concepts: Mapping[str, Any] | None = None,
        groups: Mapping[str, Any] | None = None,
        group_names: Sequence[str] = (),
    ):
        splits = dict(splits)
        for required in ("train", "test"):
            if required not in splits:
                raise ValueError(
                    f"A DataBundle needs a {required!r} split; got splits {sorted(splits)}. "
                    "Pass the same dataset for both if you only have one."
                )
        self.name = str(name)
        self.splits: dict[str, Dataset] = splits
        self.class_names = [str(c) for c in class_names]
        self.concept_names = [str(c) for c in concept_names]
        self.group_names = [str(g) for g in group_names]
        self.config = dict(config) if config is not None else {"name": self.name}
        try:
            json.dumps(self.config)
        except TypeError as err:
            raise ValueError(
                f"DataBundle config must be JSON-serialisable (it is used in cache keys): {err}"
            ) from None
        self._targets = {k: _as_long_tensor(v) for k, v in (targets or {}).items()}
        self._concepts = {
            k: torch.as_tensor(np.asarray(v)).bool() for k, v in (concepts or {}).items()
        }
        self._groups = {k: _as_long_tensor(v) for k, v in (groups or {}).items()}

    # ------------------------------------------------------------------ access
    @property
    def train(self) -> Dataset:
        """The training split."""
        return self.splits["train"]

    @property
    def test(self) -> Dataset:
        """The test split."""
        return self.splits["test"]

    @property
    def val(self) -> Dataset:
        """The validation split (ValueError if the bundle has none)."""
        return self.dataset("val")

    @property
    def split_names(self) -> list[str]:
        return list(self.splits)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def dataset(self, split: str) -> Dataset:
        """The Dataset of ``split``; ValueError listing the available splits if unknown."""
        if split not in self.splits:
            raise ValueError(
                f"Unknown split {split!r} for data {self.name!r}; available splits: "
                f"{list(self.splits)}."
            )
        return self.splits[split]

    def n(self, split: str) -> int:
        """Number of samples in ``split``."""
        return len(self.dataset(split))  # type: ignore[arg-type]

    def targets(self, split: str) -> torch.Tensor:
        """Class labels of ``split``: LongTensor [n]."""
        ds = self.dataset(split)
        if split not in self._targets:
            t = getattr(ds, "targets", None)
            if t is not None:
                self._targets[split] = class_ids(t, split)
            else:
                ys = [
                    class_id(ds[i][1], i, split)
                    for i in progress_bar(
                        range(len(ds)),  # type: ignore[arg-type]
                        desc=f"reading {split} labels",
                        enable=len(ds) > 2000,  # type: ignore[arg-type]
                    )
                ]
                self._targets[split] = torch.tensor(ys, dtype=torch.long)
        return self._targets[split]

    def has_concepts(self) -> bool:
        return len(self.concept_names) > 0

    def concepts(self, split: str) -> torch.Tensor:
        """Concept labels of ``split``: BoolTensor [n, K] with K = len(concept_names)."""
        ds = self.dataset(split)
        if split not in self._concepts:
            c = getattr(ds, "concepts", None)
            if c is None or not self.concept_names:
                raise ValueError(missing_concepts_message(self.name, split))
            self._concepts[split] = torch.as_tensor(np.asarray(c)).bool()
        out = self._concepts[split]
        if out.ndim != 2 or out.shape[1] != len(self.concept_names):
            raise ValueError(
                f"Concept labels of split {split!r} have shape {tuple(out.shape)}, expected "
                f"[n, {len(self.concept_names)}] (one column per concept name)."
            )
        return out

    def groups(self, split: str) -> torch.Tensor | None:
        """Group ids of ``split`` (class x artifact): LongTensor [n], or None without groups."""
        ds = self.dataset(split)
        if split not in self._groups:
            g = getattr(ds, "groups", None)
            if g is None:
                return None
            self._groups[split] = _as_long_tensor(g)
        return self._groups[split]

    def concept_index(self, name: str) -> int:
        """Column of concept ``name`` in :meth:`concepts`; ValueError listing names if unknown."""
        try:
            return self.concept_names.index(name)
        except ValueError:
            raise ValueError(
                f"Unknown concept {name!r}; data {self.name!r} has concepts {self.concept_names}."
            ) from None

    def images(self, indices: Sequence[int], split: str = "test") -> torch.Tensor:
        """Images at ``indices`` of ``split`` as FloatTensor [m, C, H, W] in [0, 1]."""
        ds = self.dataset(split)
        idx = [int(i) for i in indices]
        n = len(ds)  # type: ignore[arg-type]
        bad = [i for i in idx if not -n <= i < n]
        if bad:
            raise ValueError(
                f"Indices {bad[:5]} are out of range for split {split!r} with {n} samples."
            )
        if hasattr(ds, "render"):
            return ds.render(idx)
        if not idx:
            raise ValueError("images() needs at least one index.")
        return torch.stack([_to_image_tensor(ds[i][0]) for i in idx])

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.splits.items())  # type: ignore[arg-type]
        return (
            f"DataBundle({self.name!r}, {sizes}, classes={self.class_names}, "
            f"{len(self.concept_names)} concepts)"
        )


# ---------------------------------------------------------------------- adapters
def _is_map_dataset(obj: Any) -> bool:
    return (
        hasattr(obj, "__getitem__")
        and hasattr(obj, "__len__")
        and not isinstance(obj, (str, bytes, Mapping, tuple, list, torch.Tensor, np.ndarray))
    )


def _class_names_for(ds: Any, targets: torch.Tensor | None) -> list[str]:
    classes = getattr(ds, "classes", None)
    if classes is not None:
        return [str(c) for c in classes]
    if targets is not None and len(targets):
        return [str(i) for i in range(int(targets.max()) + 1)]
    return []


def _wrap_dataset(ds: Any, image_size: int | None) -> Dataset:
    """Make items of torchvision folders without transform into tensors."""
    try:
        from torchvision.datasets import DatasetFolder
    except ImportError:  # pragma: no cover
        DatasetFolder = ()  # type: ignore[assignment]
    if isinstance(ds, DatasetFolder) and (
        getattr(ds, "transform", None) is None or image_size is not None
    ):
        return _ToTensorView(ds, image_size)
    return ds


def _from_tensors(X: Any, y: Any) -> TensorImageDataset:
    try:
        Xt = X if isinstance(X, torch.Tensor) else torch.as_tensor(np.asarray(X))
        yt = y if isinstance(y, torch.Tensor) else torch.as_tensor(np.asarray(y))
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"Could not read (X, y) as arrays ({err}); accepted: {_ACCEPTED}."
        ) from None
    if Xt.dtype == torch.uint8:
        Xt = Xt.float() / 255.0
    elif not torch.is_floating_point(Xt):
        raise TypeError(f"X must hold floats in [0, 1] or uint8 pixels; got dtype {Xt.dtype}.")
    if Xt.ndim == 3:
        Xt = Xt[:, None]
    if Xt.ndim != 4:
        raise ValueError(
            f"X must have shape [n, C, H, W] (or [n, H, W] for grey images); got {tuple(Xt.shape)}."
        )
    if yt.ndim != 1:
        raise ValueError(f"y must have shape [n] (one class id per image); got {tuple(yt.shape)}.")
    if torch.is_floating_point(yt) and not torch.equal(yt, yt.round()):
        raise ValueError("y must hold integer class ids; got non-integer floats.")
    if Xt.shape[0] != yt.shape[0]:
        raise ValueError(
            f"X and y have different lengths: X has {Xt.shape[0]} samples, y has "
            f"{yt.shape[0]}; pass one label per image."
        )
    if len(yt) and int(yt.min()) < 0:
        raise ValueError(f"y must hold class ids >= 0; found {int(yt.min())}.")
    return TensorImageDataset(Xt.float(), yt.long())


def as_bundle(
    data: Any,
    *,
    name: str | None = None,
    class_names: Sequence[str] | None = None,
    image_size: int | None = None,
) -> DataBundle:
    """Turn user data into a :class:`DataBundle`.

    Accepted:
        - a DataBundle (returned as is);
        - a dict of split name -> Dataset (a missing "train" or "test" uses the other);
        - a single map-style Dataset of ``(image, target)`` (used as "train" and "test");
        - a torchvision ImageFolder (targets from ``.targets``, class names from
          ``.classes``; PIL images become tensors in [0, 1], resized and centre-cropped
          to ``image_size`` when given);
        - a pair ``(X, y)``: X [n, C, H, W] floats in [0, 1] (or uint8 pixels), y [n].

    Example:
        >>> bundle = as_bundle((torch.rand(10, 3, 16, 16), torch.arange(10) % 2))
        >>> bundle.class_names
        ['0', '1']
    """
    if isinstance(data, DataBundle):
        return data
    if isinstance(data, Mapping):
        if not data:
            raise ValueError(f"Got an empty dict of splits; accepted: {_ACCEPTED}.")
        splits: dict[str, Dataset] = {}
        for key, ds in data.items():
            if not _is_map_dataset(ds):
                raise TypeError(
                    f"Split {key!r} is {_describe(ds)}, not a map-style Dataset; accepted: "
                    f"{_ACCEPTED}."
                )
            splits[str(key)] = _wrap_dataset(ds, image_size)
        if "train" not in splits and "test" not in splits:
            raise ValueError(
                f"The dict of splits has keys {sorted(splits)}; it needs 'train' and/or 'test'."
            )
        splits.setdefault("train", splits.get("test"))  # type: ignore[arg-type]
        splits.setdefault("test", splits["train"])
        first = next(iter(data.values()))
        t = getattr(splits["train"], "targets", None)
        names = class_names or _class_names_for(
            first, class_ids(t, "train") if t is not None else None
        )
        bundle = DataBundle(
            name or "data",
            splits,
            names,
            config={"name": name or "data", "kind": "user", "sizes": _sizes(splits)},
        )
        if not bundle.class_names:
            bundle.class_names = _class_names_for(None, bundle.targets("train"))
        return bundle
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise TypeError(
                f"Got {_describe(data)}; a tuple must be exactly (X, y). Accepted: {_ACCEPTED}."
            )
        ds = _from_tensors(*data)
        names = class_names or _class_names_for(None, ds.targets)
        return DataBundle(
            name or "tensors",
            {"train": ds, "test": ds},
            names,
            config={"name": name or "tensors", "kind": "tensors", "shape": list(ds.X.shape)},
        )
    if _is_map_dataset(data):
        ds = _wrap_dataset(data, image_size)
        t = getattr(ds, "targets", None)
        tt = class_ids(t, "train") if t is not None else None
        bundle = DataBundle(
            name or type(data).__name__,
            {"train": ds, "test": ds},
            class_names or _class_names_for(data, tt),
            config={"name": name or type(data).__name__, "kind": "user", "n": len(data)},
        )
        if not bundle.class_names:
            bundle.class_names = _class_names_for(None, bundle.targets("test"))
        return bundle
    if isinstance(data, (torch.Tensor, np.ndarray)):
        raise TypeError(
            "Got a single array/tensor of shape "
            f"{tuple(data.shape)}; pass (X, y) so that every image has a label. "
            f"Accepted: {_ACCEPTED}."
        )
    raise TypeError(f"Cannot use {_describe(data)} as data; accepted: {_ACCEPTED}.")


def _sizes(splits: Mapping[str, Dataset]) -> dict[str, int]:
    out = {}
    for k, v in splits.items():
        try:
            out[k] = len(v)  # type: ignore[arg-type]
        except TypeError:
            out[k] = -1
    return out
