"""Training and evaluation of classifiers on bundles or datasets.

:func:`train_model` is a plain supervised loop (AdamW, cosine learning-rate decay, cross
entropy) that records a :class:`TrainHistory` for training curves. :func:`evaluate`
reports accuracy overall, per class and per group (class x artifact), including the
worst-group accuracy that reveals a shortcut.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from repwidgets._progress import progress_bar, progress_counter

from ..datasets.bundle import DataBundle

__all__ = ["TrainHistory", "evaluate", "predict", "resolve_device", "train_model"]


@dataclass
class TrainHistory:
    """What happened during training; JSON-able (``to_dict`` / ``from_dict``).

    Attributes:
        loss, accuracy: mean training loss and accuracy per epoch.
        val_accuracy: accuracy on the validation data after each epoch (empty without one).
        step_loss, step_accuracy: running means over windows of ``log_every`` steps, for
            finer training curves; ``steps`` is the step index at the end of each window.
        seconds: wall-clock training time.
        config: the training arguments.
    """

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)
    step_accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainHistory:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    @property
    def epochs(self) -> int:
        return len(self.loss)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """ "auto"/None -> cuda if available else cpu; anything else -> torch.device(device)."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"Unknown device {device!r} ({err}); use 'auto', 'cpu' or 'cuda'."
        ) from None


def _train_dataset(data: DataBundle | Dataset) -> Dataset:
    if isinstance(data, DataBundle):
        return data.train
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        return data
    raise TypeError(
        f"train_model needs a DataBundle or a map-style Dataset of (image, target); got "
        f"{type(data).__name__}. Wrap other data with repwidgets.datasets.as_bundle(...)."
    )


def train_model(
    model: nn.Module,
    dataset: DataBundle | Dataset,
    epochs: int = 3,
    lr: float = 2e-3,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = True,
    *,
    weight_decay: float = 1e-4,
    warmup: float = 0.05,
    val_dataset: Dataset | None = None,
    device: str | torch.device | None = "cpu",
    log_every: int = 10,
) -> TrainHistory:
    """Train ``model`` in place on ``dataset`` (a bundle's train split or a Dataset).

    AdamW with a linear warm-up over the first ``warmup`` fraction of steps, then cosine
    decay to zero; cross-entropy loss; shuffling seeded by ``seed``. Items must be
    ``(image [C, H, W], target)``; datasets with ``__getitems__`` are read a batch at a time.

    Returns:
        TrainHistory with per-epoch loss and accuracy (and val accuracy when
        ``val_dataset`` is given).

    Example:
        >>> data = repwidgets.datasets.shapes(n_train=512, n_test=128)  # doctest: +SKIP
        >>> model = SmallCNN(4)  # doctest: +SKIP
        >>> hist = train_model(model, data, epochs=1, progress=False)  # doctest: +SKIP
        >>> hist.accuracy  # doctest: +SKIP
        [0.41...]
    """
    ds = _train_dataset(dataset)
    if int(epochs) < 1:
        raise ValueError(f"epochs must be >= 1; got {epochs}.")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
    if not lr > 0:
        raise ValueError(f"lr must be > 0; got {lr}.")
    n = len(ds)  # type: ignore[arg-type]
    if n == 0:
        raise ValueError("Cannot train on an empty dataset.")
    dev = resolve_device(device)
    model.to(dev)
    gen = torch.Generator().manual_seed(int(seed))
    loader = DataLoader(
        ds, batch_size=int(batch_size), shuffle=True, generator=gen, pin_memory=dev.type == "cuda"
    )
    steps_per_epoch = len(loader)
    total = steps_per_epoch * int(epochs)
    n_warm = max(1, int(round(warmup * total)))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)

    def lr_at(step: int) -> float:
        if step < n_warm:
            return (step + 1) / n_warm
        t = (step - n_warm) / max(1, total - n_warm)
        return 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    loss_fn = nn.CrossEntropyLoss()
    hist = TrainHistory(
        config={
            "epochs": int(epochs),
            "lr": float(lr),
            "batch_size": int(batch_size),
            "seed": int(seed),
            "weight_decay": float(weight_decay),
            "warmup": float(warmup),
            "optimizer": "AdamW",
            "schedule": "warmup-cosine",
        }
    )
    start = time.perf_counter()
    step = 0
    bar = progress_counter(total, f"training ({int(epochs)} epochs)", progress, unit="step")
    win_loss = win_correct = win_n = 0.0
    try:
        for epoch in range(int(epochs)):
            model.train()
            ep_loss = ep_correct = ep_n = 0.0
            for x, y in loader:
                x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                logits = model(x)
                loss = loss_fn(logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                b = y.shape[0]
                lv = float(loss.detach())
                correct = float((logits.detach().argmax(1) == y).sum())
                if not math.isfinite(lv):
                    check_images_are_finite(ds, "train")
                    raise FloatingPointError(
                        f"Training loss became {lv} at step {step}; lower lr (now {lr})."
                    )
                ep_loss += lv * b
                ep_correct += correct
                ep_n += b
                win_loss += lv * b
                win_correct += correct
                win_n += b
                if step % log_every == 0 or step == total:
                    hist.steps.append(step)
                    hist.step_loss.append(win_loss / win_n)
                    hist.step_accuracy.append(win_correct / win_n)
                    win_loss = win_correct = win_n = 0.0
                bar.update(1)
                bar.set_postfix(
                    epoch=epoch + 1, loss=f"{ep_loss / ep_n:.3f}", acc=f"{ep_correct / ep_n:.3f}"
                )
            hist.loss.append(ep_loss / ep_n)
            hist.accuracy.append(ep_correct / ep_n)
            if val_dataset is not None:
                hist.val_accuracy.append(
                    evaluate(model, val_dataset, device=dev, progress=False)["accuracy"]
                )
    finally:
        bar.close()
        model.eval()
    hist.seconds = time.perf_counter() - start
    return hist


def check_images_are_finite(dataset: Dataset, split: str = "train") -> None:
    """Read ``dataset`` in order and raise, naming the samples, if an image holds NaN or inf."""
    from repwidgets.datasets.batches import finite_checked

    for _batch in finite_checked(DataLoader(dataset, batch_size=256, shuffle=False), split):
        pass


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Logits of ``model`` on every item of ``dataset``: FloatTensor [n, n_classes] (CPU)."""
    dev = resolve_device(device) if device is not None else _model_device(model)
    was_training = model.training
    model.eval()
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, pin_memory=dev.type == "cuda"
    )
    out = []
    try:
        for x, _ in progress_bar(loader, total=len(loader), desc="predicting", enable=progress):
            out.append(model(x.to(dev, non_blocking=True)).float())
    finally:
        model.train(was_training)
    return torch.cat(out).cpu() if out else torch.zeros(0, 0)


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def evaluate(
    model: nn.Module,
    data: DataBundle | Dataset,
    split: str = "test",
    batch_size: int = 256,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Accuracy of ``model`` overall, per class and per group.

    Args:
        data: a DataBundle (``split`` selects the split; groups come from the bundle) or a
            Dataset (groups from its ``groups`` attribute, if any).

    Returns:
        dict with ``accuracy``, ``n``, ``per_class`` {class name: accuracy}, and when the
        data has groups: ``groups`` {group name: accuracy}, ``group_counts``,
        ``worst_group`` (name) and ``worst_group_accuracy`` (over non-empty groups).
        All values are plain floats/ints/strings (JSON-able).

    Example:
        >>> evaluate(model, data)["worst_group_accuracy"]  # doctest: +SKIP
        0.31
    """
    if isinstance(data, DataBundle):
        ds = data.dataset(split)
        targets = data.targets(split)
        groups = data.groups(split)
        class_names = data.class_names
        group_names = data.group_names
    elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        ds = data
        t = getattr(ds, "targets", None)
        targets = torch.as_tensor(t).long() if t is not None else None
        g = getattr(ds, "groups", None)
        groups = torch.as_tensor(g).long() if g is not None else None
        class_names = list(getattr(ds, "classes", []) or [])
        group_names = []
    else:
        raise TypeError(f"evaluate needs a DataBundle or a Dataset; got {type(data).__name__}.")
    logits = predict(model, ds, batch_size=batch_size, device=device, progress=progress)
    if targets is None:
        targets = torch.tensor([int(ds[i][1]) for i in range(len(ds))])  # type: ignore[arg-type]
    pred = logits.argmax(1)
    correct = (pred == targets).float()
    n_classes = logits.shape[1]
    if not class_names:
        class_names = [str(i) for i in range(n_classes)]
    out: dict[str, Any] = {
        "accuracy": float(correct.mean()) if len(correct) else float("nan"),
        "n": int(len(correct)),
        "per_class": {
            class_names[k]: float(correct[targets == k].mean())
            for k in range(len(class_names))
            if (targets == k).any()
        },
    }
    if groups is not None:
        names = group_names or [str(g) for g in range(int(groups.max()) + 1)]
        accs, counts = {}, {}
        for gid, name in enumerate(names):
            mask = groups == gid
            counts[name] = int(mask.sum())
            if mask.any():
                accs[name] = float(correct[mask].mean())
        out["groups"] = accs
        out["group_counts"] = counts
        worst = min(accs, key=accs.get)  # type: ignore[arg-type]
        out["worst_group"] = worst
        out["worst_group_accuracy"] = accs[worst]
    return out
