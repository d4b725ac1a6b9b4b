"""The linear datamodeling score (LDS): how well attribution scores predict retraining.

Train one model per random subset of the training set (:func:`subset_outputs`), record
the targets' outputs (:func:`model_outputs`), and ask how well the scores' sums over
each subset rank those outputs (:func:`lds`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset

from repwidgets._progress import progress_bar
from repwidgets.engines.attribution.data import as_dataset, loader
from repwidgets.engines.attribution.outputs import as_output_fn
from repwidgets.engines.attribution.plotting import histogram
from repwidgets.results import Result
from repwidgets.session import select_output

__all__ = ["LDSResult", "lds", "model_outputs", "subset_outputs"]


def _rank_columns(a: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(a, axis=0)


def lds(scores: Any, masks: Any, outputs: Any) -> LDSResult:
    """Linear datamodeling score: how well scores predict outputs of models trained on subsets.

    For each subset k (a boolean mask over the training set) the predicted output of
    target j is ``sum_{i in subset k} scores[i, j]``; the LDS of target j is the
    Spearman correlation, over subsets, of predicted and actual outputs; the LDS is
    its mean over targets (targets whose outputs or predictions are constant are left out).

    Args:
        scores: [n_train, m] attribution scores.
        masks: [K, n_train] bool, the training subsets.
        outputs: [K, m] the target outputs of the model trained on each subset.

    Example:
        >>> masks, outputs = subset_outputs(train_fn, train, targets)   # doctest: +SKIP
        >>> lds(r.scores, masks, outputs).lds                            # doctest: +SKIP
    """
    S = np.asarray(torch.as_tensor(scores, dtype=torch.float64).cpu())
    M = np.asarray(torch.as_tensor(masks).bool().cpu(), dtype=np.float64)
    Y = np.asarray(torch.as_tensor(outputs, dtype=torch.float64).cpu())
    if S.ndim == 1:
        S = S[:, None]
    if Y.ndim == 1:
        Y = Y[:, None]
    if M.ndim != 2 or M.shape[1] != S.shape[0]:
        raise ValueError(
            f"masks must be [K, n_train] with n_train={S.shape[0]} (the scores' rows), got "
            f"{tuple(M.shape)}."
        )
    if Y.shape != (M.shape[0], S.shape[1]):
        raise ValueError(
            f"outputs must be [K, m] = [{M.shape[0]}, {S.shape[1]}] (subsets x targets), got "
            f"{tuple(Y.shape)}."
        )
    if M.shape[0] < 3:
        raise ValueError(f"The LDS needs at least 3 subsets, got {M.shape[0]}.")
    pred = M @ S
    rp, ry = _rank_columns(pred), _rank_columns(Y)
    rp -= rp.mean(axis=0)
    ry -= ry.mean(axis=0)
    denom = np.sqrt((rp**2).sum(axis=0) * (ry**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(denom > 0, (rp * ry).sum(axis=0) / denom, np.nan)
    return LDSResult(
        lds=float(np.nanmean(rho)) if np.isfinite(rho).any() else float("nan"),
        per_target=rho,
        n_subsets=int(M.shape[0]),
    )


@dataclass
class LDSResult(Result):
    """Linear datamodeling score: ``lds`` (mean over targets) and ``per_target`` [m]."""

    lds: float
    per_target: np.ndarray
    n_subsets: int = 0

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {"target": np.arange(len(self.per_target)), "spearman": self.per_target}
        )

    def plot(self):
        rho = np.asarray(self.per_target)
        return histogram(
            {"targets": rho[np.isfinite(rho)]}, f"LDS per target (mean {self.lds:.3f})"
        )


def model_outputs(
    model: nn.Module,
    data: Any,
    output_fn: Any = "margin",
    device: str | torch.device | None = None,
    batch_size: int = 256,
    preprocess: Callable | None = None,
    output: str | int | Callable | None = None,
) -> torch.Tensor:
    """Output values f(z) [n] of a model over a dataset (no gradients); ``output`` reads
    the logits from a model that returns a dict, tuple or object (see
    :func:`repwidgets.session.select_output`)."""
    data = as_dataset(data, "evaluation")
    fn = as_output_fn(output_fn)
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else "cpu"
    device = torch.device(device)
    model = model.to(device).eval()
    params = {n: p.detach() for n, p in model.named_parameters()}
    params.update({n: b.detach() for n, b in model.named_buffers()})
    pre = preprocess or (lambda x: x)

    def one(x, y):
        def forward(xb):
            return select_output(torch.func.functional_call(model, params, (pre(xb),)), output)

        return fn(forward, x, y)

    values = []
    with fn.attached(model, device), torch.no_grad():
        for x, y in loader(data, batch_size):
            values.append(torch.func.vmap(one)(x.to(device), y.to(device)).float().cpu())
    return torch.cat(values)


def subset_outputs(
    train_fn: Callable[[Dataset, int], nn.Module],
    train: Any,
    targets: Any,
    output_fn: Any = "margin",
    n_subsets: int = 32,
    fraction: float = 0.5,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    preprocess: Callable | None = None,
    output: str | int | Callable | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train one model per random subset of the training set and record target outputs.

    Args:
        train_fn: ``train_fn(dataset, seed) -> trained model``.
        train, targets: Datasets (or ``(X, y)`` pairs).
        n_subsets: K, the number of subsets (and of trainings).
        fraction: the fraction of the training set in each subset (0.5 in TRAK).
        preprocess, output: how the trained models are run (see :func:`model_outputs`).

    Returns:
        ``masks`` [K, n_train] bool and ``outputs`` [K, n_targets] for :func:`lds`.
    """
    from torch.utils.data import Subset

    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}.")
    train = as_dataset(train, "training")
    targets = as_dataset(targets, "target")
    n = len(train)
    rng = np.random.default_rng(seed)
    size = max(1, round(fraction * n))
    masks = torch.zeros(n_subsets, n, dtype=torch.bool)
    outputs = torch.empty(n_subsets, len(targets))
    for k in progress_bar(range(n_subsets), total=n_subsets, desc="subset models", enable=progress):
        idx = np.sort(rng.choice(n, size=size, replace=False))
        masks[k, torch.as_tensor(idx)] = True
        model = train_fn(Subset(train, idx.tolist()), int(seed * 100_003 + k))
        outputs[k] = model_outputs(
            model, targets, output_fn=output_fn, device=device, preprocess=preprocess, output=output
        )
    return masks, outputs
