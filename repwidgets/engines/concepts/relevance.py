"""Relevance of a layer's channels for the prediction, and its contrast between classes.

Relevance is gradient x rectified activation, averaged over positions (or tokens), one
vector [C] per sample, on the layer's neuron axis (see :mod:`repwidgets.layouts`) (:func:`layer_relevance`); projected on directions or concept vectors it is
contrasted between the samples predicted as each class and the rest
(:func:`relevance_z`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repwidgets._progress import progress_bar
from repwidgets.hooks import first_tensor, hooked
from repwidgets.layouts import Layout, normalise_axis
from repwidgets.session import select_output

__all__ = ["OBJECTIVES", "layer_relevance", "relevance_z"]

#: What the relevance gradient is of: the predicted logit, the true logit, or the loss.
OBJECTIVES = ("predicted", "label", "loss")


def layer_relevance(
    model: nn.Module,
    layer: nn.Module,
    batches: Iterable,
    *,
    objective: str = "predicted",
    sign: float = 1.0,
    device: torch.device | str | None = None,
    preprocess=None,
    total: int | None = None,
    progress: bool = True,
    neuron_axis: int = 1,
    pool: str = "mean",
    output=None,
) -> tuple[Tensor, Tensor]:
    """Per-sample relevance of a layer's channels: gradient x rectified activation.

    For every sample, the gradient of the objective w.r.t. the layer's output ``A``
    ([C, H, W], [T, C] tokens, [H, W, C] channels-last or [C]) is multiplied
    elementwise by ``relu(A)`` and averaged over every axis but the neurons' (positions
    or tokens), giving a vector [C]; with ``pool="cls"`` it is the class token's
    product instead (matching activations pooled that way). One forward and one backward pass per
    batch; the backward pass stops at the layer (the layer's output is made a leaf),
    so nothing before it is differentiated and no parameter gradient is accumulated.

    Args:
        model: maps a batch of inputs to logits [b, n_classes]; put in eval mode for
            the pass (and restored afterwards).
        layer: the module whose output is explained (a module of ``model``).
        batches: iterable of inputs ``x`` or of ``(x, y)`` pairs (``y`` is needed for
            ``objective="label"`` or ``"loss"``).
        objective: "predicted" (the logit of the predicted class, the default),
            "label" (the logit of the true class) or "loss" (cross-entropy).
        sign: multiplies the objective (e.g. -1 with "loss" to see what lowers the loss).
        device: where to run (default: the device of the model's first parameter).
        preprocess: applied to ``x`` before the model (e.g. a session's normalisation).
        total: number of batches, for the progress bar.
        neuron_axis: the axis of ``A`` (batch at 0) that holds the neurons: 1 for
            convolutions, -1 for token and channels-last layers (a session's
            ``sess.layout(layer).neuron_axis``).
        pool: "mean" or "max" (relevance averaged over positions) or "cls" (the class
            token's relevance), as the activations it goes with were pooled.
        output: how to read logits from a model that returns a dict, tuple or object
            (see :func:`repwidgets.session.select_output`; a session's ``sess.output``).

    Returns:
        ``(R [n, C], predictions [n])`` on ``device``; R is float32.

    Example:
        >>> head = nn.Sequential(nn.Identity(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        ...                      nn.Linear(4, 3))
        >>> R, pred = layer_relevance(head, head[0], [torch.rand(5, 4, 2, 2)], progress=False)
        >>> R.shape
        torch.Size([5, 4])
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}; got {objective!r}.")
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    device = torch.device(device)
    store: dict[str, Tensor] = {}

    def make_leaf(_module, _inputs, output):
        """Replace the layer's output by a leaf, so the backward pass stops here."""
        leaf = first_tensor(output).detach().requires_grad_(True)
        store["a"] = leaf
        replaced = leaf.clone()  # later in-place ops (e.g. ReLU(inplace=True)) act on the copy
        if isinstance(output, tuple):
            return (replaced, *output[1:])
        if isinstance(output, list):
            return [replaced, *output[1:]]
        return replaced

    was_training = model.training
    model.eval()
    out_r: list[Tensor] = []
    out_p: list[Tensor] = []
    try:
        with hooked(layer, make_leaf):
            for batch in progress_bar(batches, total=total, desc="relevance", enable=progress):
                x, y = _split_batch(batch)
                x = x.to(device)
                if preprocess is not None:
                    x = preprocess(x)
                with torch.enable_grad():
                    logits = select_output(model(x), output)
                    if "a" not in store:
                        raise ValueError(
                            "The layer was not called during the forward pass: it is not part "
                            "of this model's computation. Pick a layer the model uses."
                        )
                    a = store.pop("a")
                    pred = logits.argmax(dim=1)
                    obj = _objective(logits, pred, y, objective)
                    (grad,) = torch.autograd.grad(float(sign) * obj, a, allow_unused=True)
                if grad is None:
                    grad = torch.zeros_like(a)
                rel = _reduce(grad * a.detach().clamp_min(0), neuron_axis, pool)
                out_r.append(rel.detach().float())
                out_p.append(pred.detach())
    finally:
        model.train(was_training)
    if not out_r:
        raise ValueError("No batches were given: there is nothing to compute relevance on.")
    return torch.cat(out_r), torch.cat(out_p)


def _reduce(rel: Tensor, neuron_axis: int, pool: str) -> Tensor:
    """Relevance maps [b, ...] to [b, C] on the layer's layout: the class token's for
    ``pool="cls"``, else the mean over positions."""
    if rel.ndim < 2:
        raise ValueError(f"The layer's output has shape {tuple(rel.shape)}: no neuron axis.")
    layout = Layout(normalise_axis(neuron_axis, rel.ndim), rel.ndim)
    return layout.pool(rel, "cls" if pool == "cls" else "mean")


def _split_batch(batch) -> tuple[Tensor, Tensor | None]:
    """``(x, y)`` of a batch given as ``x`` or as ``(x, y, ...)``."""
    if isinstance(batch, (tuple, list)):
        return batch[0], (batch[1] if len(batch) > 1 else None)
    return batch, None


def _objective(logits: Tensor, pred: Tensor, y, objective: str) -> Tensor:
    """The summed quantity whose gradient defines the relevance (see OBJECTIVES)."""
    if objective == "predicted":
        return logits.gather(1, pred[:, None]).sum()
    if y is None:
        raise ValueError(f"objective={objective!r} needs the true labels: pass (x, y) batches.")
    y = torch.as_tensor(y, device=logits.device).long()
    if objective == "label":
        return logits.gather(1, y[:, None]).sum()
    return F.cross_entropy(logits.float(), y, reduction="sum")


def relevance_z(projections: Tensor, predictions: Tensor, n_classes: int) -> Tensor:
    """z[k, d] = (mean of projections over samples predicted k - mean over the others)
    / std over the others (ddof=1).

    Args:
        projections: [n, m] relevance projected on m directions.
        predictions: [n] predicted class per sample.
        n_classes: number of classes (rows of the output).

    Returns:
        [n_classes, m] float32 (NaN for a class without predicted samples, or when the
        others have zero spread).

    Example:
        >>> z = relevance_z(torch.tensor([[3.0], [0.0], [1.0]]), torch.tensor([0, 1, 1]), 2)
        >>> round(float(z[0, 0]), 3)
        3.536
    """
    P = projections.to(torch.float64)
    pred = predictions.to(P.device).long()
    z = torch.full((n_classes, P.shape[1]), float("nan"), dtype=torch.float64, device=P.device)
    for k in range(n_classes):
        inside = pred == k
        n_in, n_out = int(inside.sum()), int((~inside).sum())
        if n_in == 0 or n_out < 2:
            continue
        others = P[~inside]
        std = others.std(dim=0)
        diff = P[inside].mean(dim=0) - others.mean(dim=0)
        z[k] = torch.where(std > 0, diff / std.clamp_min(1e-300), torch.nan)
    return z.float()
