"""TRAK's kernel solve: ``Phi K^-1 Phi_target^T`` with ``K = Phi^T Phi + ridge I``.

One :class:`Checkpoint` holds what featurising one model left behind: the stored
training features, their Gram matrix and the Q term. When there are more features
than training samples the kernel is solved in its dual form ``(Phi Phi^T + ridge
I)^-1 Phi``, which is the same matrix.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from repwidgets.engines.attribution.featurize import Featurizer
from repwidgets.engines.attribution.store import FeatureStore

__all__ = [
    "Checkpoint",
    "dual_gram",
    "kernel_dtype",
    "psd_solver",
    "scores_one",
    "soft_threshold",
]


def psd_solver(K: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """A solver for K X = B with K symmetric positive (semi-)definite.

    Cholesky when K is positive definite; otherwise the pseudo-inverse (eigenvalues
    below 1e-10 of the largest dropped), with a warning suggesting ``lam > 0``.
    """
    L, info = torch.linalg.cholesky_ex(K)
    if int(info) == 0:
        return lambda B: torch.cholesky_solve(B.to(K.dtype), L)
    warnings.warn(
        "The TRAK kernel Phi^T Phi is singular (more features than independent training "
        "gradients); using its pseudo-inverse. Set lam > 0 to regularise it.",
        RuntimeWarning,
        stacklevel=3,
    )
    evals, evecs = torch.linalg.eigh(K)
    keep = evals > evals.max().clamp_min(0) * 1e-10
    inv = torch.where(keep, 1.0 / evals.clamp_min(1e-300), torch.zeros_like(evals))
    return lambda B: evecs @ (inv[:, None] * (evecs.T @ B.to(K.dtype)))


def kernel_dtype(dtype: Any, device: torch.device) -> torch.dtype:
    """The dtype of the kernel solve: float64 (float32 on MPS, which lacks it) or float32."""
    if dtype in ("float64", torch.float64):
        return torch.float32 if device.type == "mps" else torch.float64
    if dtype in ("float32", torch.float32):
        return torch.float32
    raise ValueError(f"kernel_dtype must be 'float32' or 'float64', got {dtype!r}.")


def soft_threshold(scores: torch.Tensor, quantile: float) -> torch.Tensor:
    """Shrink each target's scores (columns of [n, m]) towards 0 by its |score| ``quantile``."""
    if not 0.0 <= quantile < 1.0:
        raise ValueError(f"soft_threshold must be a quantile in [0, 1), got {quantile}.")
    tau = torch.quantile(scores.abs().double(), quantile, dim=0).to(scores.dtype)
    return scores.sign() * (scores.abs() - tau).clamp_min(0)


@dataclass
class Checkpoint:
    """One model's training features and kernel.

    Attributes:
        featurizer: the model's :class:`Featurizer` (for the targets' features).
        store: the training features [n, p] on disk.
        q: [n] the out-to-loss term of every training sample.
        gram: primal ``Phi^T Phi`` [p, p]; dual ``Phi Phi^T`` [n, n] (no ridge).
        dual: whether ``gram`` is the dual one.
        solvers: absolute ridge -> ``solve(B) = (gram + ridge I)^-1 B`` (one kept at a time).
    """

    featurizer: Featurizer
    store: FeatureStore
    q: torch.Tensor
    gram: torch.Tensor
    dual: bool
    solvers: dict = field(default_factory=dict)

    def solver(self, lam: float, relative: bool) -> tuple[Callable, float]:
        """The solver for ridge ``lam`` (times ``trace(gram) / p`` when ``relative``)."""
        dim = self.featurizer.out_dim
        ridge = lam * float(self.gram.diagonal().sum()) / dim if relative else lam
        if ridge not in self.solvers:
            K = self.gram.clone()
            K.diagonal().add_(ridge)
            self.solvers = {ridge: psd_solver(K)}  # keep one factorisation at a time
        return self.solvers[ridge], ridge


def dual_gram(store: FeatureStore, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Phi Phi^T [n, n] from the stored chunks (chunk pairs, one at a time)."""
    n = store.n
    gram = torch.zeros(n, n, dtype=dtype, device=device)
    chunks = list(store.chunks())
    for i, (si, ai) in enumerate(chunks):
        ti = torch.as_tensor(np.asarray(ai), device=device)
        for sj, aj in chunks[i:]:
            tj = torch.as_tensor(np.asarray(aj), device=device)
            block = (ti @ tj.T).to(dtype)
            gram[si : si + len(ti), sj : sj + len(tj)] = block
            gram[sj : sj + len(tj), si : si + len(ti)] = block.T
    return gram


def scores_one(
    ck: Checkpoint,
    phi_t: torch.Tensor,
    solve: Callable,
    n_train: int,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """Phi K^-1 phi_t^T [n, m] (float32, CPU) for one checkpoint, streaming over chunks.

    ``phi_t`` [m, p] are the targets' features.
    """
    out = torch.empty(n_train, phi_t.shape[0], dtype=torch.float32)
    if not ck.dual:
        A = solve(phi_t.T).to(torch.float32)  # [p, m]
        for start, chunk in ck.store.chunks():
            block = torch.as_tensor(np.asarray(chunk), device=device) @ A
            out[start : start + block.shape[0]] = block.cpu()
        return out
    cross = torch.empty(n_train, phi_t.shape[0], dtype=dtype, device=device)
    for start, chunk in ck.store.chunks():
        block = torch.as_tensor(np.asarray(chunk), device=device) @ phi_t.T
        cross[start : start + block.shape[0]] = block.to(dtype)
    return solve(cross).to(torch.float32).cpu()
