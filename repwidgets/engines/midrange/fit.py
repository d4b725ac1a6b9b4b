"""The retraining core on tensors: a logistic-regression head, and accuracy per group.

:func:`fit_last_layer` fits a multinomial logistic regression on frozen features and
returns it as ``nn.Linear``; :func:`group_accuracy` scores predictions per group (the
worst group is what a shortcut hurts).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["fit_last_layer", "group_accuracy", "predict"]


def fit_last_layer(
    features: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor | None = None,
    *,
    n_classes: int | None = None,
    C: float = 1.0,
    standardize: bool = True,
    max_iter: int = 2000,
    device: str | torch.device | None = None,
) -> nn.Linear:
    """Fit a multinomial logistic-regression head on frozen features; return it as nn.Linear.

    scikit-learn's ``LogisticRegression(C=C, solver="lbfgs")`` (L2 penalty) with per-sample
    ``weights``, on features standardised with the (unweighted) mean and standard
    deviation of the training rows; the standardisation is folded into the returned
    layer, so ``head(features)`` gives the logistic regression's decision values.

    Args:
        features: [n, D] penultimate features.
        targets: [n] class labels in ``0..n_classes-1`` (every class must appear).
        weights: [n] non-negative sample weights (None: all 1).
        n_classes: width of the head (default: max label + 1).
        C: inverse regularisation strength.
        device: device of the returned layer (default: the features' device).

    Returns:
        ``nn.Linear(D, n_classes)`` in float32. With two classes, rows are
        ``(-w/2, w/2)`` so that the softmax equals the logistic model.
    """
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    device = torch.device(device) if device is not None else torch.as_tensor(features).device
    X = torch.as_tensor(features).detach().double().cpu().numpy()
    y = torch.as_tensor(targets).detach().long().cpu().numpy().reshape(-1)
    if X.ndim != 2:
        raise ValueError(f"features must have shape [n, D]; got {X.shape}.")
    if X.shape[0] != y.shape[0]:
        raise ValueError(
            f"features and targets have different lengths: {X.shape[0]} rows, {y.shape[0]} labels."
        )
    if not np.isfinite(X).all():
        rows = np.flatnonzero(~np.isfinite(X).all(1))[:10].tolist()
        raise ValueError(f"features contain NaN or infinite values (rows {rows}).")
    n_classes = int(n_classes) if n_classes is not None else int(y.max()) + 1
    present = np.unique(y)
    if len(present) != n_classes:
        missing = sorted(set(range(n_classes)) - set(present.tolist()))
        raise ValueError(
            f"The training set for the head lacks classes {missing}; every class needs samples. "
            "Add samples of those classes (a larger class-balanced sample of the rest)."
        )
    w = None
    if weights is not None:
        w = torch.as_tensor(weights).detach().double().cpu().numpy().reshape(-1)
        if w.shape[0] != X.shape[0]:
            raise ValueError(f"weights has {w.shape[0]} entries for {X.shape[0]} samples.")
        if (w < 0).any() or not np.isfinite(w).all():
            raise ValueError("weights must be finite and non-negative.")
    if standardize:
        mean = X.mean(0)
        scale = X.std(0)
        scale[scale == 0] = 1.0
    else:
        mean, scale = np.zeros(X.shape[1]), np.ones(X.shape[1])
    Z = (X - mean) / scale
    clf = LogisticRegression(C=float(C), max_iter=int(max_iter), solver="lbfgs")
    # One BLAS thread: the problem is small ([n, D] with D in the hundreds), and a thread
    # pool on a busy machine makes each fit tens of times slower, not faster.
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.filterwarnings("ignore", message=".*did not converge.*")
        clf.fit(Z, y, sample_weight=w)
    coef, intercept = clf.coef_, clf.intercept_
    if coef.shape[0] == 1:  # binary: decision = w.z + b for class 1
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    weight = coef / scale[None, :]
    bias = intercept - weight @ mean
    head = nn.Linear(X.shape[1], n_classes)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(weight))
        head.bias.copy_(torch.from_numpy(bias))
    return head.to(device)


def group_accuracy(
    predictions: torch.Tensor, targets: torch.Tensor, groups: torch.Tensor | None = None
) -> dict[str, Any]:
    """Accuracy, per-group accuracies and the worst group's (groups absent: the classes).

    Returns:
        ``{"accuracy", "worst_group_accuracy", "worst_group", "mean_group_accuracy",
        "per_group": {group id: accuracy}}``; empty groups are left out.
    """
    pred = torch.as_tensor(predictions).cpu().long().reshape(-1)
    y = torch.as_tensor(targets).cpu().long().reshape(-1)
    if pred.shape != y.shape:
        raise ValueError(f"{pred.numel()} predictions for {y.numel()} targets.")
    g = y if groups is None else torch.as_tensor(groups).cpu().long().reshape(-1)
    correct = (pred == y).double()
    per_group = {}
    for gid in torch.unique(g).tolist():
        mask = g == gid
        per_group[int(gid)] = float(correct[mask].mean())
    worst = min(per_group, key=per_group.get) if per_group else -1
    return {
        "accuracy": float(correct.mean()) if correct.numel() else float("nan"),
        "worst_group_accuracy": per_group.get(worst, float("nan")),
        "worst_group": worst,
        "mean_group_accuracy": float(np.mean(list(per_group.values())))
        if per_group
        else float("nan"),
        "per_group": per_group,
    }


def predict(head: nn.Module, X: torch.Tensor) -> torch.Tensor:
    """The head's predicted class for every row of features ``X`` [n, D]; LongTensor [n]."""
    param = next(head.parameters(), None)
    device = param.device if param is not None else X.device
    outs = []
    with torch.no_grad():
        for start in range(0, X.shape[0], 65536):
            outs.append(head(X[start : start + 65536].to(device).float()).argmax(1).cpu())
    return torch.cat(outs) if outs else torch.zeros(0, dtype=torch.long)
