"""Attribution to training data with TRAK, and concept attribution with linear probes.

Two layers, as for every engine:

* the tensor-level core, :class:`TRAK` and :func:`trak_scores`: models, a training set
  and target samples in; a score for every (training sample, target) pair out. A
  positive score says that training on that sample pushed the target's output up.
* the session-level entry points, :func:`probe_layers`, :func:`concept_attribution`
  and :func:`removal_experiment`: for a concept (a label of the session's data, or a
  selection of samples), where in the network it lives and which training samples
  taught it.

TRAK (Park et al., 2023) in brief, for M checkpoints c = 1..M:

1. ``phi_c(z) = P_c^T grad_theta f_c(z)``: the gradient of a scalar model output f
   (the class margin ``logit_y - logsumexp(other logits)``, or a concept probe's
   logit) with respect to the parameters, for every sample separately (torch.func:
   ``grad`` under ``vmap``), projected by a seeded Johnson-Lindenstrauss matrix
   ``P_c`` [D, p] (entries +-1/sqrt(p) or N(0, 1/p), generated in blocks, never
   whole when D is large; see :mod:`repwidgets.engines.projection`).
2. ``K_c = Phi_c^T Phi_c + lambda I`` over the training features ``Phi_c`` [n, p].
3. ``S = mean_c(Phi_c K_c^-1 Phi_c,target^T) * mean_c(Q_c)`` where
   ``Q_c = 1 - p_c(correct)`` per training sample (the out-to-loss term; for a
   margin, ``p(correct) = sigmoid(margin)`` is the softmax probability of the label;
   for a probe, the sigmoid of the logit signed by the concept label).

Choices that differ from the reference library, on purpose:

* the ensemble is an unweighted mean over checkpoints (the reference rescales each
  checkpoint's inverse kernel by its own mean magnitude, which weights them);
* ``lam`` is explicit; by default it is relative (``lam * trace(Phi^T Phi)/p``, with
  lam = 1 by default, chosen by LDS), which makes every checkpoint's term invariant to
  the scale of its gradients;
* soft-thresholding of each target's scores is an explicit option;
* the out-to-loss term comes from the same forward pass as the gradients;
* when there are more features than training samples (no projection on a large
  model) the kernel is solved in its dual form ``(Phi Phi^T + lambda I)^-1 Phi``,
  which is the same matrix.

Training features are written to memory-mapped chunks on disk, so the training set
need not fit in memory; the kernel is a sum over chunks (shards of the dataset whose
partial sums combine exactly).

Example:
    >>> import repwidgets as rw
    >>> sess = rw.demo_session()                                        # doctest: +SKIP
    >>> r = rw.attribution.concept_attribution(sess, "watermark")       # doctest: +SKIP
    >>> r.to_frame().head(); r.top(100); r.plot()                       # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from repwidgets._progress import progress_bar
from repwidgets.engines import _checks
from repwidgets.engines.probes import (
    LinearProbe,
    ProbeLayersResult,
    concept_labels,
    default_probe_layers,
    probe_activations,
)
from repwidgets.engines.projection import JLProjection
from repwidgets.results import Result
from repwidgets.session import check_layer_names, resolve_layer

__all__ = [
    "OutputFunction",
    "ClassMargin",
    "LogitOutput",
    "ProbeLogit",
    "TRAK",
    "TRAKResult",
    "trak_scores",
    "lds",
    "LDSResult",
    "subset_outputs",
    "model_outputs",
    "probe_layers",
    "concept_attribution",
    "ConceptAttributionResult",
    "removal_experiment",
    "RemovalResult",
    "demo_section",
]


# ---------------------------------------------------------------------------------------
# Model output functions
# ---------------------------------------------------------------------------------------


class OutputFunction:
    """A scalar output f(z) of a model for one sample z = (x, y), differentiable in theta.

    Subclasses implement ``__call__(forward, x, y)``: ``forward`` maps a batch of
    inputs to the model's output (it runs the model with the parameters being
    differentiated), ``x`` is ONE sample without batch dimension and ``y`` its label
    (a 0-dim tensor). The call runs under ``torch.func.vmap``/``grad``, so it must use
    tensor operations only (no ``.item()``, no data-dependent Python branches).

    ``out_to_loss(out, y)`` gives TRAK's Q term, 1 - p(correct), from the output
    values; the default ``sigmoid(-out)`` is exact for a class margin and for a
    label-signed binary logit.
    """

    name = "output"

    def attach(self, model: nn.Module, device: torch.device) -> None:
        """Prepare for ``model`` (e.g. register hooks); undone by :meth:`detach`."""

    def detach(self) -> None:
        """Undo :meth:`attach`."""

    @contextlib.contextmanager
    def attached(self, model: nn.Module, device: torch.device):
        self.attach(model, device)
        try:
            yield self
        finally:
            self.detach()

    def __call__(self, forward: Callable, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def out_to_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(-out)


class ClassMargin(OutputFunction):
    """The class margin ``logit_y - logsumexp_{k != y} logit_k`` (TRAK's classification output).

    ``sigmoid(margin)`` equals the softmax probability of class y, so
    ``out_to_loss = 1 - p(y)``.
    """

    name = "margin"

    def __call__(self, forward, x, y):
        logits = forward(x.unsqueeze(0))[0]
        if logits.ndim != 1:
            raise ValueError(
                f"The class margin needs a model output of shape [batch, n_classes], got "
                f"[batch, {', '.join(map(str, logits.shape))}]. Pass output_fn= your own."
            )
        is_y = torch.arange(logits.shape[0], device=logits.device) == y
        correct = (logits * is_y).sum()
        others = logits.masked_fill(is_y, float("-inf")).logsumexp(dim=0)
        return correct - others


class LogitOutput(OutputFunction):
    """Any scalar function ``fn(model_output, y)`` of one sample's model output.

    Example:
        >>> f = LogitOutput(lambda logits, y: logits[3])   # the raw logit of class 3
    """

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], name: str = ""):
        if not callable(fn):
            raise TypeError(f"output_fn must be callable, got {type(fn).__name__}.")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "output")

    def __call__(self, forward, x, y):
        return self.fn(forward(x.unsqueeze(0))[0], y)


class _LayerReached(Exception):
    """Raised by a forward hook to stop the forward pass at the probed layer."""

    def __init__(self, output: torch.Tensor):
        super().__init__("layer reached")
        self.output = output


class ProbeLogit(OutputFunction):
    """A linear probe's logit on a layer's pooled activations, composed with the network.

    ``f(x, y) = s(y) * (pool(a_layer(x)) @ weight + bias)`` with ``s(y) = 2y - 1`` when
    ``signed`` (y = 1: the sample carries the concept), so that ``sigmoid(f)`` is the
    probability the probe gives to the sample's own concept label. The forward pass
    stops at the layer (later layers cannot change the output).

    Args:
        layer: module name, as in ``model.named_modules()``.
        weight: [C] probe direction; bias: scalar.
        pool: ``"mean"`` or ``"max"`` over spatial positions (as the probe was fitted).
        signed: sign the logit by the label (True for TRAK's training features).
    """

    name = "probe"

    def __init__(
        self,
        layer: str,
        weight: torch.Tensor,
        bias: float,
        pool: str = "mean",
        signed: bool = True,
    ) -> None:
        if pool not in ("mean", "max"):
            raise ValueError(f"pool must be 'mean' or 'max', got {pool!r}.")
        self.layer = layer
        self.weight = torch.as_tensor(weight, dtype=torch.float32).reshape(-1)
        self.bias = float(bias)
        self.pool = pool
        self.signed = signed
        self._handle = None
        self._w = self.weight

    @classmethod
    def from_probe(cls, layer: str, probe: LinearProbe, pool: str = "mean") -> ProbeLogit:
        return cls(layer, probe.weight, probe.bias, pool=pool)

    def attach(self, model, device):
        module = resolve_layer(model, self.layer)
        self.detach()

        def stop(_module, _inputs, output):
            if isinstance(output, (tuple, list)):
                output = output[0]
            raise _LayerReached(output)

        self._handle = module.register_forward_hook(stop)
        self._w = self.weight.to(device)

    def detach(self):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __call__(self, forward, x, y):
        try:
            forward(x.unsqueeze(0))
        except _LayerReached as reached:
            act = reached.output[0]
        else:  # pragma: no cover - attach() guarantees the hook
            raise RuntimeError(f"The forward pass never reached layer {self.layer!r}.")
        if act.ndim > 1:
            flat = act.reshape(act.shape[0], -1)
            act = flat.mean(dim=1) if self.pool == "mean" else flat.amax(dim=1)
        if act.shape[0] != self._w.shape[0]:
            raise ValueError(
                f"The probe has {self._w.shape[0]} weights but layer {self.layer!r} has "
                f"{act.shape[0]} channels: fit the probe on this layer's activations."
            )
        logit = act @ self._w + self.bias
        if self.signed:
            logit = logit * (2.0 * y.to(logit.dtype) - 1.0)
        return logit


def _as_output_fn(output_fn) -> OutputFunction:
    if isinstance(output_fn, OutputFunction):
        return output_fn
    if output_fn in ("margin", "class_margin", None):
        return ClassMargin()
    if isinstance(output_fn, str):
        raise ValueError(
            f"Unknown output_fn {output_fn!r}: use 'margin', an OutputFunction (e.g. ProbeLogit) "
            "or a callable fn(model_output, y) -> scalar."
        )
    return LogitOutput(output_fn)


# ---------------------------------------------------------------------------------------
# Data helpers
# ---------------------------------------------------------------------------------------


class _PairDataset(Dataset):
    """(X[i], y[i]) over two tensors."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor):
        self.X, self.y = X, y

    def __len__(self):
        return int(self.X.shape[0])

    def __getitem__(self, i):
        return self.X[i], self.y[i]

    def __getitems__(self, idx):
        idx = torch.as_tensor(list(idx), dtype=torch.long)
        xs, ys = self.X[idx], self.y[idx]
        return [(xs[k], ys[k]) for k in range(len(idx))]


class _Relabeled(Dataset):
    """A dataset's images with other labels (e.g. a concept's 0/1 instead of the class)."""

    def __init__(self, base: Dataset, labels: torch.Tensor, indices: Sequence[int] | None = None):
        self.base = base
        self.labels = torch.as_tensor(labels).long().reshape(-1)
        self.indices = None if indices is None else [int(i) for i in indices]
        n = len(base) if self.indices is None else len(self.indices)
        if self.labels.numel() != n:
            raise ValueError(f"{self.labels.numel()} labels for {n} samples.")

    def __len__(self):
        return int(self.labels.numel())

    def _base_index(self, i):
        return i if self.indices is None else self.indices[i]

    def __getitem__(self, i):
        return self.base[self._base_index(i)][0], self.labels[i]

    def __getitems__(self, idx):
        idx = list(idx)
        base_idx = [self._base_index(i) for i in idx]
        if hasattr(self.base, "__getitems__"):
            items = self.base.__getitems__(base_idx)
        else:
            items = [self.base[i] for i in base_idx]
        return [(item[0], self.labels[i]) for item, i in zip(items, idx)]


def _as_dataset(data, what: str) -> Dataset:
    if isinstance(data, Dataset):
        if len(data) == 0:
            raise ValueError(f"The {what} set is empty.")
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        X, y = (torch.as_tensor(v) for v in data)
        if X.shape[0] != y.shape[0]:
            raise ValueError(
                f"The {what} pair (X, y) has different lengths: X has {X.shape[0]} samples, "
                f"y has {y.shape[0]}."
            )
        if X.shape[0] == 0:
            raise ValueError(f"The {what} set is empty.")
        return _PairDataset(X, y)
    raise TypeError(
        f"The {what} set must be a torch Dataset of (input, label) items or a pair (X, y) of "
        f"tensors, got {type(data).__name__}."
    )


def _collate(items):
    xs = torch.stack([torch.as_tensor(it[0]) for it in items])
    ys = torch.as_tensor(
        np.asarray([int(it[1]) if not torch.is_tensor(it[1]) else it[1].item() for it in items])
    )
    return xs, ys


def _loader(dataset: Dataset, batch_size: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=_collate)


# ---------------------------------------------------------------------------------------
# Per-sample gradient features
# ---------------------------------------------------------------------------------------


def _select_params(model: nn.Module, grad_wrt) -> list[str]:
    names = [n for n, p in model.named_parameters()]
    if grad_wrt is None:
        return names
    if callable(grad_wrt):
        chosen = [n for n in names if grad_wrt(n)]
    else:
        patterns = [grad_wrt] if isinstance(grad_wrt, str) else list(grad_wrt)
        chosen = [
            n
            for n in names
            if any(n == pat or n.startswith(pat.rstrip(".") + ".") for pat in patterns)
        ]
    if not chosen:
        raise ValueError(
            f"grad_wrt={grad_wrt!r} matches no parameter. Parameters: "
            f"{', '.join(names[:20])}{' ...' if len(names) > 20 else ''}. Pass full names or "
            "prefixes such as 'features.conv4'."
        )
    return chosen


class _Featurizer:
    """Per-sample output gradients of one checkpoint, flattened and projected.

    Only parameters that influence the output (and match ``grad_wrt``) are
    differentiated; the rest are held constant.
    """

    def __init__(
        self,
        model: nn.Module,
        output_fn: OutputFunction,
        grad_wrt,
        proj_dim: int | None,
        proj_kind: str,
        proj_seed: int,
        device: torch.device,
        preprocess: Callable | None,
        example: tuple[torch.Tensor, torch.Tensor],
        proj_cache_mb: float,
    ) -> None:
        self.model = model.to(device).eval()
        self.output_fn = output_fn
        self.device = device
        self.preprocess = preprocess or (lambda x: x)
        candidates = _select_params(model, grad_wrt)
        self.names = self._used(candidates, example)
        params = dict(model.named_parameters())
        self.params = {n: params[n].detach() for n in self.names}
        self.frozen = {n: p.detach() for n, p in params.items() if n not in self.params}
        self.frozen.update({n: b.detach() for n, b in model.named_buffers()})
        self.dim = int(sum(p.numel() for p in self.params.values()))
        if proj_dim is None:
            self.projection = None
            self.out_dim = self.dim
        else:
            if int(proj_dim) > self.dim:
                raise ValueError(
                    f"proj_dim={proj_dim} is larger than the number of parameters being "
                    f"differentiated ({self.dim}): a projection cannot add information. Use "
                    f"proj_dim <= {self.dim}, or proj_dim=None for no projection."
                )
            self.projection = JLProjection(
                self.dim,
                int(proj_dim),
                kind=proj_kind,
                seed=proj_seed,
                device=device,
                cache_mb=proj_cache_mb,
            )
            self.out_dim = int(proj_dim)
        self._grad = torch.func.vmap(
            torch.func.grad(self._output, has_aux=True), in_dims=(None, 0, 0)
        )
        self._value = torch.func.vmap(self._output, in_dims=(None, 0, 0))

    def _forward_with(self, params: dict):
        merged = {**self.frozen, **params}

        def forward(xb):
            return torch.func.functional_call(self.model, merged, (self.preprocess(xb),))

        return forward

    def _output(self, params, x, y):
        out = self.output_fn(self._forward_with(params), x, y)
        return out, out

    def _used(self, candidates: list[str], example) -> list[str]:
        """The candidate parameters that the output depends on (found with one sample)."""
        x, y = example
        params = dict(self.model.named_parameters())
        leaves = {n: params[n].detach().clone().requires_grad_(True) for n in candidates}
        merged = {n: p.detach() for n, p in params.items()}
        merged.update({n: b.detach() for n, b in self.model.named_buffers()})
        merged.update(leaves)

        def forward(xb):
            return torch.func.functional_call(self.model, merged, (self.preprocess(xb),))

        with torch.enable_grad():
            out = self.output_fn(forward, x.to(self.device), torch.as_tensor(y).to(self.device))
            if out.ndim != 0:
                raise ValueError(
                    f"The output function must return a scalar per sample, got shape "
                    f"{tuple(out.shape)}."
                )
            grads = torch.autograd.grad(out, list(leaves.values()), allow_unused=True)
        used = [n for n, g in zip(candidates, grads) if g is not None]
        if not used:
            raise ValueError(
                "The output does not depend on any of the selected parameters: widen grad_wrt "
                "(parameters before the probed layer influence a probe's output)."
            )
        return used

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features [B, out_dim] (float32, device) and output values [B] of a batch."""
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        grads, out = self._grad(self.params, x, y)
        flat = torch.cat([grads[n].reshape(x.shape[0], -1) for n in self.names], dim=1)
        del grads
        if self.projection is not None:
            flat = self.projection.project(flat)
        return flat.float(), out.detach().float()

    def values(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Output values [B] of a batch, without gradients."""
        with torch.no_grad():
            return self._value(self.params, x.to(self.device), y.to(self.device)).float()


# ---------------------------------------------------------------------------------------
# Feature store: memory-mapped chunks on disk
# ---------------------------------------------------------------------------------------


class FeatureStore:
    """Features [n, p] (float32) in memory-mapped files of ``chunk_rows`` rows each.

    Chunk files are independent, so shards of a dataset can be written by different
    processes. Reading goes chunk by chunk, so nothing needs the whole matrix in memory.
    """

    def __init__(self, root: Path, name: str, n: int, dim: int, chunk_rows: int = 16384):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.name, self.n, self.dim = name, int(n), int(dim)
        self.chunk_rows = max(1, int(chunk_rows))
        self.n_chunks = math.ceil(self.n / self.chunk_rows)
        self._maps: dict[int, np.memmap] = {}

    def _path(self, k: int) -> Path:
        return self.root / f"{self.name}.{k:05d}.npy"

    def _chunk(self, k: int, mode: str = "r+") -> np.memmap:
        if k not in self._maps:
            rows = min(self.chunk_rows, self.n - k * self.chunk_rows)
            path = self._path(k)
            if path.exists():
                self._maps[k] = np.load(path, mmap_mode=mode)
            else:
                self._maps[k] = np.lib.format.open_memmap(
                    path, mode="w+", dtype=np.float32, shape=(rows, self.dim)
                )
        return self._maps[k]

    def write(self, start: int, rows: torch.Tensor) -> None:
        """Write ``rows`` [b, dim] at row ``start`` (may straddle chunks)."""
        array = rows.detach().float().cpu().numpy()
        pos = 0
        while pos < array.shape[0]:
            row = start + pos
            k, offset = divmod(row, self.chunk_rows)
            chunk = self._chunk(k)
            take = min(chunk.shape[0] - offset, array.shape[0] - pos)
            chunk[offset : offset + take] = array[pos : pos + take]
            pos += take

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start_row, array [rows, dim])`` for every chunk, in order."""
        for k in range(self.n_chunks):
            chunk = self._chunk(k)
            chunk.flush()
            yield k * self.chunk_rows, chunk

    def delete(self) -> None:
        self._maps.clear()
        for k in range(self.n_chunks):
            self._path(k).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------
# Kernel solves
# ---------------------------------------------------------------------------------------


def _psd_solver(K: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
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


def _kernel_dtype(dtype, device: torch.device) -> torch.dtype:
    if dtype in ("float64", torch.float64):
        return torch.float32 if device.type == "mps" else torch.float64
    if dtype in ("float32", torch.float32):
        return torch.float32
    raise ValueError(f"kernel_dtype must be 'float32' or 'float64', got {dtype!r}.")


def _soft_threshold(scores: torch.Tensor, quantile: float) -> torch.Tensor:
    """Shrink each target's scores (columns) towards 0 by its |score| ``quantile``."""
    if not 0.0 <= quantile < 1.0:
        raise ValueError(f"soft_threshold must be a quantile in [0, 1), got {quantile}.")
    tau = torch.quantile(scores.abs().double(), quantile, dim=0).to(scores.dtype)
    return scores.sign() * (scores.abs() - tau).clamp_min(0)


# ---------------------------------------------------------------------------------------
# TRAK
# ---------------------------------------------------------------------------------------


@dataclass
class _Checkpoint:
    featurizer: _Featurizer
    store: FeatureStore
    q: torch.Tensor  # [n] out-to-loss term
    gram: torch.Tensor  # primal: Phi^T Phi [p, p]; dual: Phi Phi^T [n, n] (no ridge)
    dual: bool
    solvers: dict = field(
        default_factory=dict
    )  # absolute ridge -> solve(B) = (gram + ridge I)^-1 B

    def solver(self, lam: float, relative: bool) -> tuple[Callable, float]:
        dim = self.featurizer.out_dim
        ridge = lam * float(self.gram.diagonal().sum()) / dim if relative else lam
        if ridge not in self.solvers:
            K = self.gram.clone()
            K.diagonal().add_(ridge)
            self.solvers = {ridge: _psd_solver(K)}  # keep one factorisation at a time
        return self.solvers[ridge], ridge


class TRAK:
    """TRAK attribution for a set of checkpoints: featurise a training set once, score targets.

    Args:
        models: one ``nn.Module`` or a list (checkpoints of one run, or independently
            trained models); each becomes one term of the unweighted ensemble mean.
        output_fn: ``"margin"`` (class margin), an :class:`OutputFunction` (e.g.
            :class:`ProbeLogit`), a callable ``fn(model_output, y) -> scalar``, or a
            list with one of those per model.
        proj_dim: p, the projected feature size (about 512-4096); ``None`` for no
            projection (exact gradients; only for small models).
        proj_kind: ``"rademacher"`` or ``"gaussian"`` JL matrix, scaled by 1/sqrt(p).
        lam: ridge term added to ``Phi^T Phi``. The default 1.0 (relative: the ridge
            equals the mean eigenvalue of ``Phi^T Phi``) scored the highest linear
            datamodeling score on the benchmark setting (0.16 against 0.05 for no ridge,
            see ``benchmarks/bench_attribution.py``); the reference library uses 0.
            With many more training samples than features a smaller value may do
            better: pick it with :func:`lds` (``score(..., lam=...)`` re-solves cheaply).
        lam_relative: if True (default) the ridge is ``lam * trace(Phi^T Phi) / p`` (scale
            free: each checkpoint's term does not depend on the scale of its gradients);
            if False it is ``lam`` itself.
        grad_wrt: restrict gradients to parameters whose names equal or start with one of
            these prefixes (e.g. ``["features.conv4", "fc"]``), or a predicate on names.
            Parameters that do not influence the output are always skipped.
        seed: projection seed; checkpoint c uses ``seed + c``.
        device: computation device (default: the first model's device).
        batch_size: samples per vectorised gradient pass (reduced to fit ``memory_budget_mb``).
        memory_budget_mb: bound on the per-sample gradients held at once.
        kernel_dtype: ``"float64"`` (default) or ``"float32"`` for the kernel solve.
        feature_dir: folder for the memory-mapped features; a temporary folder (removed
            when the object is garbage-collected or :meth:`close` is called) if None.
        chunk_rows: rows per memory-mapped feature file.
        preprocess: function applied to an input batch before the model.
        proj_cache_mb: memory for keeping the generated projection blocks between batches:
            in float while the whole matrix fits, else (Rademacher) as int8 signs at a
            quarter of the size, else regenerated for every batch (slow). More memory,
            faster featurisation: on the benchmark's 241k-parameter CNN with p = 1024 the
            float cache (1 GB) is about 1.5x faster than the int8 one.
        progress: show progress bars.

    Example:
        >>> trak = TRAK([model_a, model_b], output_fn="margin", proj_dim=512)  # doctest: +SKIP
        >>> trak.featurize(train_dataset)                                       # doctest: +SKIP
        >>> r = trak.score(test_subset)        # r.scores: [n_train, n_targets]  # doctest: +SKIP
    """

    def __init__(
        self,
        models: nn.Module | Sequence[nn.Module],
        output_fn="margin",
        proj_dim: int | None = 1024,
        proj_kind: str = "rademacher",
        lam: float = 1.0,
        lam_relative: bool = True,
        grad_wrt=None,
        seed: int = 0,
        device: str | torch.device | None = None,
        batch_size: int = 64,
        memory_budget_mb: float = 1024,
        kernel_dtype: str | torch.dtype = "float64",
        feature_dir: str | Path | None = None,
        chunk_rows: int = 16384,
        preprocess: Callable | None = None,
        proj_cache_mb: float = 256,
        progress: bool = True,
    ) -> None:
        self.models = [models] if isinstance(models, nn.Module) else list(models)
        if not self.models or not all(isinstance(m, nn.Module) for m in self.models):
            raise TypeError("models must be an nn.Module or a non-empty list of nn.Modules.")
        fns = output_fn if isinstance(output_fn, (list, tuple)) else [output_fn] * len(self.models)
        if len(fns) != len(self.models):
            raise ValueError(
                f"Got {len(fns)} output functions for {len(self.models)} models: pass one, or "
                "one per model."
            )
        self.output_fns = [_as_output_fn(f) for f in fns]
        if proj_dim is not None and int(proj_dim) < 1:
            raise ValueError(f"proj_dim must be a positive integer or None, got {proj_dim}.")
        if lam < 0:
            raise ValueError(f"lam must be >= 0, got {lam}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        self.proj_dim = None if proj_dim is None else int(proj_dim)
        self.proj_kind = proj_kind
        self.lam = float(lam)
        self.lam_relative = bool(lam_relative)
        self.grad_wrt = grad_wrt
        self.seed = int(seed)
        if device is None:
            first = next(self.models[0].parameters(), None)
            device = first.device if first is not None else "cpu"
        self.device = torch.device(device)
        self.kernel_dtype = _kernel_dtype(kernel_dtype, self.device)
        self.batch_size = int(batch_size)
        self.memory_budget = float(memory_budget_mb) * 2**20
        self.chunk_rows = int(chunk_rows)
        self.preprocess = preprocess
        self.proj_cache_mb = proj_cache_mb
        self.progress = progress
        if feature_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="repwidgets-trak-")
            self.feature_dir = Path(self._tmp.name)
        else:
            self._tmp = None
            self.feature_dir = Path(feature_dir)
        self._checkpoints: list[_Checkpoint] = []
        self.n_train = 0

    def close(self) -> None:
        """Delete the features on disk (when they live in a temporary folder)."""
        self._checkpoints.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _batch(self, dim: int) -> int:
        per_sample = max(1, dim) * 4 * 3
        return max(1, min(self.batch_size, int(self.memory_budget // per_sample)))

    def _featurizer(self, c: int, example) -> _Featurizer:
        return _Featurizer(
            self.models[c],
            self.output_fns[c],
            self.grad_wrt,
            self.proj_dim,
            self.proj_kind,
            self.seed + c,
            self.device,
            self.preprocess,
            example,
            self.proj_cache_mb,
        )

    def featurize(self, train) -> TRAK:
        """Compute, store and invert the training features of every checkpoint.

        Args:
            train: a Dataset of ``(input, label)`` items or a pair ``(X, y)``; the label is
                what the output function expects (class for the margin, 0/1 for a probe).
        """
        train = _as_dataset(train, "training")
        n = len(train)
        example = _collate([train[0]])
        example = (example[0][0], example[1][0])
        self._checkpoints.clear()
        for c in range(len(self.models)):
            fn = self.output_fns[c]
            with fn.attached(self.models[c], self.device):
                feat = self._featurizer(c, example)
                p = feat.out_dim
                dual = p > n
                store = FeatureStore(
                    self.feature_dir, f"train_c{c}", n, p, chunk_rows=self.chunk_rows
                )
                q = torch.empty(n, dtype=torch.float32)
                gram = (
                    None if dual else torch.zeros(p, p, dtype=self.kernel_dtype, device=self.device)
                )
                bs = self._batch(feat.dim)
                start = 0
                batches = progress_bar(
                    _loader(train, bs),
                    total=math.ceil(n / bs),
                    desc=f"TRAK features (model {c + 1}/{len(self.models)})",
                    enable=self.progress,
                )
                for x, y in batches:
                    phi, out = feat(x, y)
                    store.write(start, phi)
                    q[start : start + len(out)] = fn.out_to_loss(out, y.to(out.device)).cpu()
                    if gram is not None:
                        gram += (phi.T @ phi).to(self.kernel_dtype)
                    start += len(out)
            if dual:
                gram = self._dual_gram(store)
            ck = _Checkpoint(feat, store, q, gram, dual)
            ck.solver(self.lam, self.lam_relative)  # factorise now: errors surface here
            self._checkpoints.append(ck)
        self.n_train = n
        return self

    def _dual_gram(self, store: FeatureStore) -> torch.Tensor:
        """Phi Phi^T [n, n] from the stored chunks (chunk pairs, one at a time)."""
        n = store.n
        gram = torch.zeros(n, n, dtype=self.kernel_dtype, device=self.device)
        chunks = list(store.chunks())
        for i, (si, ai) in enumerate(chunks):
            ti = torch.as_tensor(np.asarray(ai), device=self.device)
            for sj, aj in chunks[i:]:
                tj = torch.as_tensor(np.asarray(aj), device=self.device)
                block = (ti @ tj.T).to(self.kernel_dtype)
                gram[si : si + len(ti), sj : sj + len(tj)] = block
                gram[sj : sj + len(tj), si : si + len(ti)] = block.T
        return gram

    def target_features(self, c: int, targets: Dataset) -> torch.Tensor:
        """Features [m, p] of the targets under checkpoint ``c`` (in memory, device)."""
        ck = self._checkpoints[c]
        fn = self.output_fns[c]
        rows = []
        bs = self._batch(ck.featurizer.dim)
        with fn.attached(self.models[c], self.device):
            for x, y in _loader(targets, bs):
                rows.append(ck.featurizer(x, y)[0])
        return torch.cat(rows)

    def score(
        self,
        targets,
        reduce: str | None = None,
        soft_threshold: float | None = None,
        lam: float | None = None,
        lam_relative: bool | None = None,
    ) -> TRAKResult:
        """Scores of every training sample for every target.

        Args:
            targets: a Dataset of ``(input, label)`` items or a pair ``(X, y)``.
            reduce: None for the full matrix [n_train, m]; ``"sum"`` or ``"mean"`` to
                aggregate over targets (computed from the summed target features, so
                the [n, m] matrix is never formed unless soft-thresholding needs it).
            soft_threshold: if set, a quantile q in [0, 1): each target's scores are
                shrunk towards 0 by the q-quantile of their magnitudes (sparsifies
                them), before any reduction.
            lam, lam_relative: another ridge for this call (the kernels are kept, so
                trying several values, e.g. to pick the best by :func:`lds`, costs
                no new features).
        """
        lam = self.lam if lam is None else float(lam)
        lam_relative = self.lam_relative if lam_relative is None else bool(lam_relative)
        if lam < 0:
            raise ValueError(f"lam must be >= 0, got {lam}.")
        if not self._checkpoints:
            raise RuntimeError("Call featurize(train) before score(targets).")
        if reduce not in (None, "sum", "mean"):
            raise ValueError(f"reduce must be None, 'sum' or 'mean', got {reduce!r}.")
        targets = _as_dataset(targets, "target")
        m = len(targets)
        aggregate = reduce is not None and soft_threshold is None
        width = 1 if aggregate else m
        total = torch.zeros(self.n_train, width, dtype=torch.float32)
        loop = progress_bar(
            range(len(self._checkpoints)),
            total=len(self._checkpoints),
            desc="TRAK scores",
            enable=self.progress and len(self._checkpoints) > 1,
        )
        for c in loop:
            ck = self._checkpoints[c]
            phi_t = self.target_features(c, targets)
            if aggregate:
                phi_t = phi_t.sum(dim=0, keepdim=True)
            solve, _ridge = ck.solver(lam, lam_relative)
            total += self._scores_one(ck, phi_t, solve)
        q = torch.stack([ck.q for ck in self._checkpoints]).mean(dim=0)
        scores = total / len(self._checkpoints) * q[:, None]
        if soft_threshold is not None:
            scores = _soft_threshold(scores, float(soft_threshold))
        if reduce is not None:
            scores = scores.sum(dim=1) if (aggregate or reduce == "sum") else scores.mean(dim=1)
            if aggregate and reduce == "mean":
                scores = scores / m
        first = self._checkpoints[0].featurizer
        return TRAKResult(
            scores=scores,
            out_to_loss=q,
            n_models=len(self._checkpoints),
            proj_dim=self.proj_dim,
            proj_kind=self.proj_kind if self.proj_dim is not None else "none",
            lam=lam,
            lam_relative=lam_relative,
            reduce=reduce,
            soft_threshold=soft_threshold,
            n_targets=m,
            output=self.output_fns[0].name,
            grad_dims=[int(ck.featurizer.dim) for ck in self._checkpoints],
            grad_params=list(first.names),
            seed=self.seed,
        )

    def _scores_one(self, ck: _Checkpoint, phi_t: torch.Tensor, solve: Callable) -> torch.Tensor:
        """Phi K^-1 phi_t^T [n, m] for one checkpoint, streaming over stored chunks."""
        out = torch.empty(self.n_train, phi_t.shape[0], dtype=torch.float32)
        if not ck.dual:
            A = solve(phi_t.T).to(torch.float32)  # [p, m]
            for start, chunk in ck.store.chunks():
                block = torch.as_tensor(np.asarray(chunk), device=self.device) @ A
                out[start : start + block.shape[0]] = block.cpu()
            return out
        cross = torch.empty(
            self.n_train, phi_t.shape[0], dtype=self.kernel_dtype, device=self.device
        )
        for start, chunk in ck.store.chunks():
            block = torch.as_tensor(np.asarray(chunk), device=self.device) @ phi_t.T
            cross[start : start + block.shape[0]] = block.to(self.kernel_dtype)
        return solve(cross).to(torch.float32).cpu()


def trak_scores(
    models: nn.Module | Sequence[nn.Module],
    train,
    targets,
    output_fn="margin",
    proj_dim: int | None = 1024,
    lam: float = 1.0,
    reduce: str | None = None,
    soft_threshold: float | None = None,
    **kwargs,
) -> TRAKResult:
    """TRAK scores of every training sample for every target, in one call.

    Args:
        models: one model or a list of checkpoints (unweighted ensemble mean).
        train: Dataset of ``(input, label)`` items, or a pair ``(X, y)``.
        targets: the samples to explain, same forms.
        output_fn: ``"margin"`` (class margin, the default), an :class:`OutputFunction`,
            a callable ``fn(model_output_of_one_sample, y) -> scalar``, or one per model.
        proj_dim: JL projection size; None for exact gradients (small models only).
        lam: ridge term (relative to the mean eigenvalue unless ``lam_relative=False``).
        reduce, soft_threshold: see :meth:`TRAK.score`.
        **kwargs: the other options of :class:`TRAK` (proj_kind, lam_relative, grad_wrt,
            seed, device, batch_size, memory_budget_mb, kernel_dtype, feature_dir,
            preprocess, progress).

    Returns:
        :class:`TRAKResult` with ``scores`` [n_train, n_targets] (or [n_train] reduced).

    Example:
        >>> r = trak_scores(model, (X_train, y_train), (X_test[:5], y_test[:5]),
        ...                 proj_dim=None, progress=False)           # doctest: +SKIP
        >>> r.scores.shape                                            # doctest: +SKIP
        torch.Size([1000, 5])
    """
    trak = TRAK(models, output_fn=output_fn, proj_dim=proj_dim, lam=lam, **kwargs)
    try:
        return trak.featurize(train).score(targets, reduce=reduce, soft_threshold=soft_threshold)
    finally:
        trak.close()


@dataclass
class TRAKResult(Result):
    """TRAK scores.

    Attributes:
        scores: [n_train, n_targets] (or [n_train] when reduced over targets); positive
            means that the training sample pushed the target's output up.
        out_to_loss: [n_train] mean Q term (1 - p(correct)) over checkpoints.
        grad_dims: number of differentiated parameters per checkpoint.
        grad_params: names of the differentiated parameters (first checkpoint).
    """

    scores: torch.Tensor
    out_to_loss: torch.Tensor
    n_models: int = 1
    proj_dim: int | None = None
    proj_kind: str = "rademacher"
    lam: float = 0.0
    lam_relative: bool = True
    reduce: str | None = None
    soft_threshold: float | None = None
    n_targets: int = 0
    output: str = "margin"
    grad_dims: list = field(default_factory=list)
    grad_params: list = field(default_factory=list)
    seed: int = 0

    def _per_sample(self) -> torch.Tensor:
        s = torch.as_tensor(self.scores)
        return s if s.ndim == 1 else s.mean(dim=1)

    def top(self, k: int = 100, target: int | None = None) -> np.ndarray:
        """Indices of the k training samples with the highest score (for one target, or
        the mean over targets)."""
        s = torch.as_tensor(self.scores)
        s = s[:, target] if target is not None and s.ndim == 2 else self._per_sample()
        return torch.argsort(s, descending=True)[: int(k)].numpy()

    def to_frame(self) -> pd.DataFrame:
        """One row per training sample: score (mean over targets), rank (1 = highest), Q."""
        s = self._per_sample().numpy()
        order = np.argsort(-s, kind="stable")
        rank = np.empty(len(s), dtype=int)
        rank[order] = np.arange(1, len(s) + 1)
        return pd.DataFrame(
            {
                "sample": np.arange(len(s)),
                "score": s,
                "rank": rank,
                "out_to_loss": torch.as_tensor(self.out_to_loss).numpy(),
            }
        )

    def plot(self):
        """Bokeh histogram of the (target-averaged) scores."""
        return _histogram({"all": self._per_sample().numpy()}, "TRAK scores")

    def widget(self):
        """An HTML table of the top-scored training samples."""
        import ipywidgets

        df = self.to_frame().sort_values("rank").head(50)
        return ipywidgets.HTML(df.to_html(index=False, float_format="%.4g"))


# ---------------------------------------------------------------------------------------
# Linear datamodeling score
# ---------------------------------------------------------------------------------------


def _rank_columns(a: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(a, axis=0)


def lds(scores, masks, outputs) -> LDSResult:
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
        return _histogram(
            {"targets": rho[np.isfinite(rho)]}, f"LDS per target (mean {self.lds:.3f})"
        )

    def widget(self):
        import ipywidgets

        return ipywidgets.HTML(
            f"<b>LDS</b> {self.lds:.4f} over {len(self.per_target)} targets, "
            f"{self.n_subsets} subsets"
        )


def model_outputs(
    model: nn.Module,
    data,
    output_fn="margin",
    device: str | torch.device | None = None,
    batch_size: int = 256,
    preprocess: Callable | None = None,
) -> torch.Tensor:
    """Output values f(z) [n] of a model over a dataset (no gradients)."""
    data = _as_dataset(data, "evaluation")
    fn = _as_output_fn(output_fn)
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else "cpu"
    device = torch.device(device)
    model = model.to(device).eval()
    params = {n: p.detach() for n, p in model.named_parameters()}
    params.update({n: b.detach() for n, b in model.named_buffers()})
    pre = preprocess or (lambda x: x)

    def one(x, y):
        return fn(lambda xb: torch.func.functional_call(model, params, (pre(xb),)), x, y)

    values = []
    with fn.attached(model, device), torch.no_grad():
        for x, y in _loader(data, batch_size):
            values.append(torch.func.vmap(one)(x.to(device), y.to(device)).float().cpu())
    return torch.cat(values)


def subset_outputs(
    train_fn: Callable[[Dataset, int], nn.Module],
    train,
    targets,
    output_fn="margin",
    n_subsets: int = 32,
    fraction: float = 0.5,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train one model per random subset of the training set and record target outputs.

    Args:
        train_fn: ``train_fn(dataset, seed) -> trained model``.
        train, targets: Datasets (or ``(X, y)`` pairs).
        n_subsets: K, the number of subsets (and of trainings).
        fraction: the fraction of the training set in each subset (0.5 in TRAK).

    Returns:
        ``masks`` [K, n_train] bool and ``outputs`` [K, n_targets] for :func:`lds`.
    """
    from torch.utils.data import Subset

    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}.")
    train = _as_dataset(train, "training")
    targets = _as_dataset(targets, "target")
    n = len(train)
    rng = np.random.default_rng(seed)
    size = max(1, round(fraction * n))
    masks = torch.zeros(n_subsets, n, dtype=torch.bool)
    outputs = torch.empty(n_subsets, len(targets))
    for k in progress_bar(range(n_subsets), total=n_subsets, desc="subset models", enable=progress):
        idx = np.sort(rng.choice(n, size=size, replace=False))
        masks[k, torch.as_tensor(idx)] = True
        model = train_fn(Subset(train, idx.tolist()), int(seed * 100_003 + k))
        outputs[k] = model_outputs(model, targets, output_fn=output_fn, device=device)
    return masks, outputs


# ---------------------------------------------------------------------------------------
# Plot helpers
# ---------------------------------------------------------------------------------------


_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def _histogram(groups: dict[str, np.ndarray], title: str, bins: int = 50):
    from bokeh.plotting import figure

    values = [np.asarray(v, dtype=float) for v in groups.values() if len(v)]
    allv = np.concatenate(values) if values else np.zeros(1)
    lo, hi = float(np.min(allv)), float(np.max(allv))
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    fig = figure(height=280, width=520, title=title, toolbar_location="above")
    for (name, v), color in zip(groups.items(), _COLORS):
        if not len(v):
            continue
        counts, _ = np.histogram(np.asarray(v, dtype=float), bins=edges)
        fig.quad(
            top=counts,
            bottom=0,
            left=edges[:-1],
            right=edges[1:],
            fill_color=color,
            fill_alpha=0.45,
            line_color=color,
            legend_label=str(name),
        )
    fig.xaxis.axis_label = "score"
    fig.yaxis.axis_label = "training samples"
    fig.legend.location = "top_right"
    return fig


# ---------------------------------------------------------------------------------------
# Session level: probes over an ensemble, concept attribution
# ---------------------------------------------------------------------------------------


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys():
        return False
    return all(sa[k].shape == sb[k].shape and torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def _ensemble(sess, n_models: int, models, seeds, progress: bool) -> list[nn.Module]:
    """The session's model first, then extra default models trained with other seeds."""
    if models is not None:
        models = [models] if isinstance(models, nn.Module) else list(models)
        if not models or not all(isinstance(m, nn.Module) for m in models):
            raise TypeError("models must be an nn.Module or a non-empty list of nn.Modules.")
        return models
    if int(n_models) < 1:
        raise ValueError(f"n_models must be at least 1, got {n_models}.")
    out = [sess.model]
    if n_models == 1:
        return out
    from repwidgets import models as zoo

    candidates = list(seeds) if seeds is not None else list(range(1, 2 * n_models + 1))
    for seed in candidates:
        if len(out) == n_models:
            break
        extra = zoo.ensemble(sess.data, seeds=[int(seed)], progress=progress)[0]
        if not any(_same_weights(extra, m) for m in out):
            out.append(extra)
    if len(out) < n_models:
        raise ValueError(
            f"Could only gather {len(out)} distinct models for n_models={n_models}; pass more "
            "seeds, or pass models=[...] yourself."
        )
    return out


def _model_sessions(sess, models: list[nn.Module]) -> list:
    from repwidgets.session import Session

    out = []
    for m in models:
        if m is sess.model:
            out.append(sess)
            continue
        other = Session(
            m,
            sess.data,
            device=sess.device,
            batch_size=sess.batch_size,
            memory_budget_mb=sess.memory_budget / 2**20,
            preprocess=sess.preprocess,
            progress=sess.progress,
        )
        out.append(other)
    return out


def _check_layers(sessions, layers: list[str]) -> None:
    for k, s in enumerate(sessions):
        try:
            check_layer_names(s.model, layers)
        except ValueError as err:
            which = "the session's model" if k == 0 else f"ensemble model {k}"
            raise ValueError(
                f"In {which}: {err} If the ensemble's default models do not match your "
                "architecture, pass models=[...] (checkpoints of your own model)."
            ) from None


def _concept_name(concept) -> str:
    return concept if isinstance(concept, str) else "selection"


def _labels(sess, concept, split: str) -> torch.Tensor:
    """Concept labels [n] of a split, from a concept name or a {split: selection} dict."""
    if isinstance(concept, dict):
        if split not in concept:
            raise ValueError(
                f"The concept selection has no entry for split {split!r} (it has "
                f"{sorted(concept)}); give indices or a mask for every split used "
                "(fit_split, eval_split, 'train' and the target split)."
            )
        return concept_labels(sess, concept[split], split)
    if not isinstance(concept, str):
        raise TypeError(
            "concept must be a concept name of the data, or a dict {split: sample indices or "
            f"bool mask}} for your own concept; got {type(concept).__name__}."
        )
    return concept_labels(sess, concept, split)


def _default_fit_split(sess) -> str:
    return "val" if "val" in sess.splits else "train"


def probe_layers(
    sess,
    concept,
    layers: Sequence[str] | None = None,
    n_models: int = 1,
    models: Sequence[nn.Module] | None = None,
    seeds: Sequence[int] | None = None,
    pool: str = "mean",
    fit_split: str | None = None,
    eval_split: str = "test",
    max_fit: int | None = 4000,
    C: float = 1.0,
    progress: bool | None = None,
) -> ProbeLayersResult:
    """Probe accuracy of a concept at each layer, for each model of an ensemble.

    Args:
        sess: the session (its model is the ensemble's first member).
        concept: a concept name of the data (``sess.concept_names``), or a dict
            ``{split: indices or bool mask}`` defining your own concept on each split used.
        layers: layers to probe; default :func:`~repwidgets.engines.probes.default_probe_layers`
            (every conv/linear block after its activation).
        n_models: ensemble size: the session's model plus default models trained on the
            session's data with other seeds (``rw.models.ensemble``, cached).
        models: your own list of models instead (overrides n_models).
        pool: spatial pooling of the activations ("mean" or "max").
        fit_split: split the probes are fitted on; default "val" when the data has one (in
            the embedded data it is balanced, so the concept is not confounded with the
            class), else "train".
        eval_split: split for the held-out accuracy.
        max_fit: cap on fitting samples (stratified subsample).

    Returns:
        :class:`~repwidgets.engines.probes.ProbeLayersResult` (``to_frame()``: one row per
        layer, ensemble mean and spread).

    Example:
        >>> p = probe_layers(sess, "watermark", n_models=2)     # doctest: +SKIP
        >>> p.to_frame(); p.best_layer(); p.plot()              # doctest: +SKIP
    """
    progress = sess.progress if progress is None else progress
    fit_split = fit_split or _default_fit_split(sess)
    layers = list(layers) if layers is not None else default_probe_layers(sess.model)
    if not layers:
        raise ValueError("No layers to probe: pass layers=[...] (see sess.layers()).")
    _checks.one_of("pool", pool, ("mean", "max"))
    if models is None:  # checked before any extra model is trained or any activation read
        _checks.positive_int("n_models", n_models)
        check_layer_names(sess.model, layers)
    y_fit = _labels(sess, concept, fit_split)
    y_eval = _labels(sess, concept, eval_split)
    for name, y, split in (("fitting", y_fit, fit_split), ("evaluation", y_eval, eval_split)):
        n_pos = int(y.sum())
        if n_pos == 0 or n_pos == len(y):
            raise ValueError(
                f"The concept {_concept_name(concept)!r} has {n_pos} positive samples out of "
                f"{len(y)} in the {name} split {split!r}: probes need both positive and "
                "negative samples there. Choose other splits or another concept."
            )
    model_list = _ensemble(sess, n_models, models, seeds, progress)
    sessions = _model_sessions(sess, model_list)
    _check_layers(sessions, layers)
    acc = np.zeros((len(layers), len(sessions)))
    bal = np.zeros_like(acc)
    probes: list[list[LinearProbe]] = [[None] * len(sessions) for _ in layers]  # type: ignore[list-item]
    loop = progress_bar(
        list(enumerate(sessions)), total=len(sessions), desc="probes", enable=progress
    )
    for j, s in loop:
        fit = s.activations_many(layers, split=fit_split, pool=pool)
        ev = s.activations_many(layers, split=eval_split, pool=pool)
        for i, layer in enumerate(layers):
            probe = probe_activations(fit[layer], y_fit, ev[layer], y_eval, max_fit=max_fit, C=C)
            probes[i][j] = probe
            acc[i, j] = probe.accuracy
            bal[i, j] = probe.balanced_accuracy
    result = ProbeLayersResult(
        concept=_concept_name(concept),
        layers=list(layers),
        accuracy=acc,
        balanced_accuracy=bal,
        prevalence=float(y_eval.float().mean()),
    )
    result._probes = probes
    result._models = model_list  # type: ignore[attr-defined]
    return result


def _train_subset(n: int, max_train: int | None, train_indices, seed: int) -> np.ndarray:
    if train_indices is not None:
        idx = np.asarray(torch.as_tensor(train_indices).long().reshape(-1).cpu())
        if idx.size == 0:
            raise ValueError("train_indices is empty.")
        if idx.min() < 0 or idx.max() >= n:
            raise IndexError(f"train_indices must lie in [0, {n}).")
        return idx
    if max_train is None or max_train >= n:
        return np.arange(n)
    if max_train < 1:
        raise ValueError(f"max_train must be a positive number of samples, got {max_train}.")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=int(max_train), replace=False))


def concept_attribution(
    sess,
    concept,
    layer: str | None = None,
    n_models: int = 4,
    proj_dim: int | None = 1024,
    *,
    models: Sequence[nn.Module] | None = None,
    seeds: Sequence[int] | None = None,
    layers: Sequence[str] | None = None,
    target_split: str = "test",
    targets: Sequence[int] | None = None,
    n_targets: int | None = 256,
    max_train: int | None = None,
    train_indices: Sequence[int] | None = None,
    reduce: str = "mean",
    lam: float = 1.0,
    lam_relative: bool = True,
    proj_kind: str = "rademacher",
    soft_threshold: float | None = None,
    grad_wrt=None,
    out_to_loss: str = "none",
    pool: str = "mean",
    fit_split: str | None = None,
    batch_size: int = 64,
    seed: int = 0,
    feature_dir: str | Path | None = None,
    progress: bool | None = None,
) -> ConceptAttributionResult:
    """Which training samples taught the network a concept at a layer (TRAK on a probe's logit).

    1. A linear probe for the concept is fitted at every probed layer for every model of
       the ensemble (:func:`probe_layers`); ``layer`` defaults to the layer where the
       concept is most linearly readable.
    2. TRAK with the probe's logit at ``layer`` as the model output (one probe per
       model): targets are samples of ``target_split`` that carry the concept; a
       training sample's score is its mean (or summed) score over the targets. A high
       score: training on that sample made the targets look more like the concept.

    Args:
        sess: the session; its model is the ensemble's first member.
        concept: a concept name (``sess.concept_names``) or a dict ``{split: indices or
            bool mask}`` with your own selection on every split used.
        layer: the layer whose probe is attributed; default the best probed layer.
        n_models: ensemble size (the session's model plus default models with other seeds).
        proj_dim: JL projection size; None for exact gradients.
        models: your own checkpoints instead of the default ensemble.
        layers: layers to probe (default: every conv/linear block after its activation).
        targets: indices (in ``target_split``) of the targets; default the samples that
            carry the concept, at most ``n_targets`` of them (seeded random choice).
        max_train / train_indices: attribute over a random subset (or given indices) of the
            training split instead of all of it (faster on a CPU).
        reduce: "mean" or "sum" over targets.
        lam, lam_relative, proj_kind, soft_threshold, grad_wrt: TRAK options (see :class:`TRAK`).
        out_to_loss: TRAK's per-sample weight Q of the training samples. ``"none"``
            (default): Q = 1, the scores are the kernel products alone. ``"probe"``:
            Q = 1 - the probe's probability of the sample's own concept label, TRAK's
            term for a model trained on that output. The network was never trained on
            the probe's loss, and where the concept is linearly separable the probe
            saturates: Q then spans orders of magnitude (1e-6..1e-2) set by the probe's
            margin, not by what the sample taught, and decides the ranking (on the demo
            model at ``pool``: precision@100 0.79 with Q against 1.00 without on 1,000
            training samples, 0.62 against 1.00 on all of them; see
            ``benchmarks/bench_truth.py``). The result's ``out_to_loss`` always holds the
            probe's Q and ``notes`` says when it is saturated.
        pool, fit_split: probe options (see :func:`probe_layers`).
        batch_size: samples per vectorised gradient pass.

    Returns:
        :class:`ConceptAttributionResult`: ``to_frame()``, ``top(k)``, ``plot()``,
        ``widget()``.

    Example:
        >>> r = concept_attribution(sess, "watermark", n_models=2, proj_dim=512)  # doctest: +SKIP
        >>> r.top(100)[:5], r.precision_at(100)                                   # doctest: +SKIP
    """
    progress = sess.progress if progress is None else progress
    if reduce not in ("mean", "sum"):
        raise ValueError(f"reduce must be 'mean' or 'sum', got {reduce!r}.")
    if out_to_loss not in ("none", "probe"):
        raise ValueError(f"out_to_loss must be 'none' or 'probe', got {out_to_loss!r}.")
    if layer is not None:
        sess.module(layer)
    probe_list = list(layers) if layers is not None else default_probe_layers(sess.model)
    if layer is not None and layer not in probe_list:
        probe_list.append(layer)
    check_layer_names(sess.model, probe_list)
    for name, value in (("proj_dim", proj_dim), ("max_train", max_train), ("n_targets", n_targets)):
        _checks.optional_positive_int(name, value)
    _checks.positive_int("batch_size", batch_size)
    _checks.split_size(sess, target_split)
    y_train_all = _labels(sess, concept, "train")
    y_target_all = _labels(sess, concept, target_split)
    if targets is None:
        positives = torch.nonzero(y_target_all).flatten().numpy()
        if positives.size == 0:
            raise ValueError(
                f"No sample of split {target_split!r} carries the concept "
                f"{_concept_name(concept)!r}: there is nothing to attribute. Choose another "
                "concept or target_split, or pass targets=[...]."
            )
        if n_targets is not None and positives.size > n_targets:
            rng = np.random.default_rng(seed)
            positives = np.sort(rng.choice(positives, size=int(n_targets), replace=False))
        target_idx = positives
    else:
        target_idx = np.asarray(torch.as_tensor(targets).long().reshape(-1))
        if target_idx.size == 0:
            raise ValueError("targets is empty: pass at least one target index.")
        n_t = sess.n(target_split)
        if target_idx.min() < 0 or target_idx.max() >= n_t:
            raise IndexError(f"targets must lie in [0, {n_t}) for split {target_split!r}.")
    probes = probe_layers(
        sess,
        concept,
        layers=probe_list,
        n_models=n_models,
        models=models,
        seeds=seeds,
        pool=pool,
        fit_split=fit_split,
        progress=progress,
    )
    model_list = probes._models  # type: ignore[attr-defined]
    if layer is None:
        layer = probes.best_layer()
    li = probes.layers.index(layer)
    output_fns = [
        ProbeLogit.from_probe(layer, probes._probes[li][j], pool=pool)
        for j in range(len(model_list))
    ]
    n_train = sess.n("train")
    idx = _train_subset(n_train, max_train, train_indices, seed)
    train = _Relabeled(sess.dataset("train"), y_train_all[idx].long(), indices=idx.tolist())
    target_ds = _Relabeled(
        sess.dataset(target_split), y_target_all[target_idx].long(), indices=target_idx.tolist()
    )
    trak = TRAK(
        model_list,
        output_fn=output_fns,
        proj_dim=proj_dim,
        proj_kind=proj_kind,
        lam=lam,
        lam_relative=lam_relative,
        grad_wrt=grad_wrt,
        seed=seed,
        device=sess.device,
        batch_size=batch_size,
        memory_budget_mb=min(sess.memory_budget / 2**20, 2048),
        feature_dir=feature_dir,
        preprocess=sess.preprocess,
        progress=progress,
    )
    try:
        trak.featurize(train)
        probe_q = _set_out_to_loss(trak, out_to_loss)
        res = trak.score(target_ds, reduce=reduce, soft_threshold=soft_threshold)
    finally:
        trak.close()
    idx_t = torch.as_tensor(idx, dtype=torch.long)
    try:
        all_concepts = sess.concepts("train")[idx_t].bool()
        names = list(sess.concept_names)
    except ValueError:  # data without concept labels
        all_concepts = torch.zeros(len(idx), 0, dtype=torch.bool)
        names = []
    result = ConceptAttributionResult(
        concept=_concept_name(concept),
        layer=layer,
        scores=res.scores.float(),
        train_indices=idx_t,
        classes=sess.targets("train")[idx_t].long(),
        concept_labels=y_train_all[idx_t].bool(),
        concepts=all_concepts,
        concept_names=names,
        class_names=list(sess.class_names),
        target_split=target_split,
        target_indices=torch.as_tensor(target_idx, dtype=torch.long),
        out_to_loss=probe_q.float(),
        probe_layers=list(probes.layers),
        probe_accuracy=probes.accuracy,
        probe_balanced_accuracy=probes.balanced_accuracy,
        n_models=len(model_list),
        proj_dim=proj_dim,
        lam=lam,
        reduce=reduce,
        grad_dims=res.grad_dims,
        out_to_loss_mode=out_to_loss,
        notes=_out_to_loss_notes(probe_q, out_to_loss),
    )
    result._session = sess
    return result


def _set_out_to_loss(trak: TRAK, mode: str) -> torch.Tensor:
    """Keep the probe's Q term ("probe") or replace it by 1 ("none"); return the probe's
    Q averaged over the checkpoints."""
    probe_q = torch.stack([ck.q for ck in trak._checkpoints]).mean(dim=0)
    if mode == "none":
        for ck in trak._checkpoints:
            ck.q = torch.ones_like(ck.q)
    return probe_q


def _out_to_loss_notes(probe_q: torch.Tensor, mode: str) -> list:
    """A note when the probe is saturated (its Q term would decide the ranking)."""
    q = probe_q.double().clamp(min=1e-30)
    median = float(q.median())
    spread = float(torch.quantile(q.log10(), 0.9) - torch.quantile(q.log10(), 0.1))
    if median >= 1e-2 and spread < 2:
        return []
    used = "kept (out_to_loss='probe')" if mode == "probe" else "left out (the default)"
    return [
        f"The probe is saturated: its Q term (1 - probability of the own label) has median "
        f"{median:.1e} and spans {spread:.1f} decades over the training samples, so it "
        f"would rank samples by the probe's confidence rather than by what they taught; "
        f"it is {used}."
    ]


@dataclass
class ConceptAttributionResult(Result):
    """Training samples ranked by how much they taught a concept at a layer.

    Attributes:
        scores: [n] score per attributed training sample (mean or sum over targets).
        train_indices: [n] their indices in the training split.
        classes: [n] class labels; concept_labels: [n] whether each carries the concept.
        concepts: [n, K] all concept labels of the data (``concept_names``).
        target_indices: indices (in ``target_split``) of the targets.
        out_to_loss: [n] the probe's Q term (1 - probe probability of the own label),
            whether or not the scores use it (``out_to_loss_mode``: "none" or "probe").
        notes: caveats about the ranking (e.g. a saturated probe), shown with the result.
        probe_layers, probe_accuracy, probe_balanced_accuracy: the probes per layer
            ([n_layers, n_models]).
    """

    concept: str
    layer: str
    scores: torch.Tensor
    train_indices: torch.Tensor
    classes: torch.Tensor
    concept_labels: torch.Tensor
    concepts: torch.Tensor
    concept_names: list
    class_names: list
    target_split: str
    target_indices: torch.Tensor
    out_to_loss: torch.Tensor
    probe_layers: list
    probe_accuracy: np.ndarray
    probe_balanced_accuracy: np.ndarray
    n_models: int = 1
    proj_dim: int | None = None
    lam: float = 0.0
    reduce: str = "mean"
    grad_dims: list = field(default_factory=list)
    out_to_loss_mode: str = "probe"
    notes: list = field(default_factory=list)

    def _order(self) -> np.ndarray:
        return np.argsort(-torch.as_tensor(self.scores).numpy(), kind="stable")

    def top(self, k: int = 100) -> np.ndarray:
        """Training-split indices of the k highest-scored samples (most concept-teaching)."""
        return torch.as_tensor(self.train_indices).numpy()[self._order()[: int(k)]]

    def bottom(self, k: int = 100) -> np.ndarray:
        """Training-split indices of the k lowest-scored samples (most concept-opposing)."""
        return torch.as_tensor(self.train_indices).numpy()[self._order()[::-1][: int(k)]]

    def _summary(self) -> str:
        """The plain-text display, with the notes (caveats about the ranking) below it."""
        return "\n".join([super()._summary(), *(f"Note: {n}" for n in self.notes)])

    def precision_at(self, k: int = 100) -> float:
        """Fraction of the top-k samples that carry the concept."""
        labels = torch.as_tensor(self.concept_labels).numpy()
        return float(labels[self._order()[: int(k)]].mean())

    def probes(self) -> ProbeLayersResult:
        """The probe accuracies per layer as a :class:`ProbeLayersResult`."""
        return ProbeLayersResult(
            concept=self.concept,
            layers=list(self.probe_layers),
            accuracy=np.asarray(self.probe_accuracy),
            balanced_accuracy=np.asarray(self.probe_balanced_accuracy),
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per attributed training sample, best first: sample (training-split
        index), score, rank, class, the concept's label, then every concept label."""
        order = self._order()
        idx = torch.as_tensor(self.train_indices).numpy()[order]
        classes = torch.as_tensor(self.classes).numpy()[order]
        names = list(self.class_names)
        df = pd.DataFrame(
            {
                "sample": idx,
                "score": torch.as_tensor(self.scores).numpy()[order],
                "rank": np.arange(1, len(order) + 1),
                "class": [names[c] if 0 <= c < len(names) else str(c) for c in classes],
                self.concept
                if self.concept not in ("sample", "score", "rank", "class")
                else "concept": torch.as_tensor(self.concept_labels).numpy()[order],
                "out_to_loss": torch.as_tensor(self.out_to_loss).numpy()[order],
            }
        )
        concepts = torch.as_tensor(self.concepts).numpy()[order]
        for k, name in enumerate(self.concept_names):
            if name not in df.columns:
                df[name] = concepts[:, k]
        return df

    def plot(self):
        """Bokeh layout: score distribution (with / without the concept), precision at k,
        and the probe accuracy per layer."""
        from bokeh.layouts import row
        from bokeh.plotting import figure

        s = torch.as_tensor(self.scores).numpy()
        lab = torch.as_tensor(self.concept_labels).numpy().astype(bool)
        hist = _histogram(
            {f"with {self.concept}": s[lab], f"without {self.concept}": s[~lab]},
            f"Attribution scores for '{self.concept}' at {self.layer}",
        )
        ks = np.unique(np.clip(np.round(np.geomspace(1, len(s), 40)).astype(int), 1, len(s)))
        hits = np.cumsum(lab[self._order()])
        prec = figure(
            height=280,
            width=380,
            x_axis_type="log",
            y_range=(0, 1.02),
            title="Precision at k (top-k carrying the concept)",
            toolbar_location="above",
        )
        prec.line(ks, hits[ks - 1] / ks, line_width=2)
        prec.line(
            [1, len(s)],
            [lab.mean()] * 2,
            line_dash="dashed",
            color="gray",
            legend_label="base rate",
        )
        prec.xaxis.axis_label = "k"
        prec.legend.location = "bottom_left"
        return row(hist, prec, self.probes().plot())

    def widget(self, k: int = 24, session=None):
        """Gallery of the top (and bottom) k attributed training samples, with a button
        that sends the selection (or the top k) to curation. ``session`` is needed for a
        result loaded from a file."""
        from repwidgets.widgets.attribution import attribution_gallery

        return attribution_gallery(self, k=k, session=session)


# ---------------------------------------------------------------------------------------
# Counterfactual check: retrain without the top-k attributed samples
# ---------------------------------------------------------------------------------------


def _default_train_fn(sess, progress: bool) -> Callable[[Dataset, int], nn.Module]:
    from repwidgets.models import DEMO_MODEL, DEMO_TRAIN, SmallCNN, train_model

    if not isinstance(sess.model, SmallCNN):
        raise ValueError(
            "removal_experiment retrains the model; it knows how to train the default SmallCNN "
            f"but the session's model is a {type(sess.model).__name__}. Pass "
            "train_fn=lambda dataset, seed: <your trained model>."
        )
    n_classes, channels = sess.model.n_classes, sess.model.in_channels

    def train_fn(dataset: Dataset, seed: int) -> nn.Module:
        torch.manual_seed(int(seed))
        model = SmallCNN(n_classes, in_channels=channels, **DEMO_MODEL)
        train_model(
            model, dataset, seed=int(seed), progress=progress, device=sess.device, **DEMO_TRAIN
        )
        return model.to("cpu").eval()

    return train_fn


def removal_experiment(
    sess,
    concept,
    k: int = 100,
    *,
    attribution: ConceptAttributionResult | None = None,
    layers: Sequence[str] | None = None,
    seeds: Sequence[int] = (0,),
    train_fn: Callable[[Dataset, int], nn.Module] | None = None,
    random_seed: int = 0,
    progress: bool | None = None,
    **attribution_kwargs,
) -> RemovalResult:
    """Retrain without the top-k attributed training samples, and without k random ones.

    The counterfactual check of concept attribution: if the top-k samples taught the
    concept, a model trained without them should hold the concept less well (lower
    probe accuracy, or at other layers) than one trained without k random samples.

    Args:
        sess: the session (default: retrains its SmallCNN architecture with the demo
            training configuration).
        concept: as in :func:`concept_attribution`.
        k: how many samples to remove.
        attribution: a :class:`ConceptAttributionResult` to use (else computed with
            ``attribution_kwargs``, e.g. ``n_models=1, max_train=...``). Removal is only
            among the attributed samples' indices.
        layers: layers to probe (default: every conv/linear block).
        seeds: one retraining per seed and condition.
        train_fn: ``train_fn(dataset, seed) -> trained model`` for your own architecture.

    Returns:
        :class:`RemovalResult`: probe accuracy per layer for the model trained on all
        data ("full"), without the top k ("minus_top") and without k random samples
        ("minus_random").

    Example:
        >>> rm = removal_experiment(sess, "watermark", k=500, n_models=1)   # doctest: +SKIP
        >>> rm.to_frame(); rm.plot()                                         # doctest: +SKIP
    """
    from torch.utils.data import Subset

    progress = sess.progress if progress is None else progress
    r = attribution
    if r is None:
        r = concept_attribution(sess, concept, progress=progress, **attribution_kwargs)
    n = sess.n("train")
    if not 1 <= int(k) < n:
        raise ValueError(f"k must lie in [1, {n}) (the training split's size), got {k}.")
    top = np.sort(r.top(int(k)))
    rng = np.random.default_rng(random_seed)
    rand = np.sort(rng.choice(n, size=int(k), replace=False))
    layers = list(layers) if layers is not None else default_probe_layers(sess.model)
    fn = train_fn or _default_train_fn(sess, progress)
    full_train = sess.dataset("train")
    keep = {
        "full": None,
        "minus_top": np.setdiff1d(np.arange(n), top),
        "minus_random": np.setdiff1d(np.arange(n), rand),
    }
    conditions = list(keep)
    bal = np.zeros((len(conditions), len(layers), len(seeds)))
    acc = np.zeros_like(bal)
    test_acc = np.zeros((len(conditions), len(seeds)))
    y_test = sess.targets("test")
    groups = sess.groups("test")
    group_names = list(getattr(sess.data, "group_names", []) or [])
    n_groups = int(groups.max()) + 1 if groups is not None and len(groups) else 0
    group_acc = np.full((len(conditions), n_groups, len(seeds)), np.nan)
    for ci, cond in enumerate(conditions):
        for si, seed in enumerate(seeds):
            if cond == "full" and train_fn is None:
                from repwidgets import models as zoo

                model = zoo.ensemble(sess.data, seeds=[int(seed)], progress=progress)[0]
            else:
                data = full_train if keep[cond] is None else Subset(full_train, keep[cond].tolist())
                model = fn(data, int(seed))
            p = probe_layers(sess, concept, layers=layers, models=[model], progress=False)
            bal[ci, :, si] = p.balanced_accuracy[:, 0]
            acc[ci, :, si] = p.accuracy[:, 0]
            s = _model_sessions(sess, [model])[0]
            correct = (s.predictions("test").cpu() == y_test).float()
            test_acc[ci, si] = float(correct.mean())
            for gi in range(n_groups):
                in_group = groups == gi
                if bool(in_group.any()):
                    group_acc[ci, gi, si] = float(correct[in_group].mean())
    labels = _labels(sess, concept, "train")
    result = RemovalResult(
        concept=_concept_name(concept),
        k=int(k),
        layers=layers,
        conditions=conditions,
        balanced_accuracy=bal,
        accuracy=acc,
        test_accuracy=test_acc,
        group_accuracy=group_acc,
        group_names=group_names or [str(g) for g in range(n_groups)],
        removed_top=torch.as_tensor(top),
        removed_random=torch.as_tensor(rand),
        top_concept_fraction=float(labels[torch.as_tensor(top)].float().mean()),
        random_concept_fraction=float(labels[torch.as_tensor(rand)].float().mean()),
        seeds=[int(s) for s in seeds],
    )
    result._session = sess
    return result


@dataclass
class RemovalResult(Result):
    """Probe accuracy per layer after removing the top-k attributed (or k random) samples.

    Attributes:
        conditions: ``["full", "minus_top", "minus_random"]``.
        balanced_accuracy, accuracy: [n_conditions, n_layers, n_seeds] probe accuracy.
        test_accuracy: [n_conditions, n_seeds] classification accuracy on the test split.
        group_accuracy: [n_conditions, n_groups, n_seeds] the same per (class x artifact)
            group of the test split (``group_names``; empty without groups). This shows
            whether the retrained model still relies on the concept: e.g. how well it
            classifies watermarked samples of other classes.
        removed_top, removed_random: training indices removed in each condition.
        top_concept_fraction, random_concept_fraction: share of removed samples carrying
            the concept.
    """

    concept: str
    k: int
    layers: list
    conditions: list
    balanced_accuracy: np.ndarray
    accuracy: np.ndarray
    test_accuracy: np.ndarray
    removed_top: torch.Tensor
    removed_random: torch.Tensor
    group_accuracy: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)))
    group_names: list = field(default_factory=list)
    top_concept_fraction: float = float("nan")
    random_concept_fraction: float = float("nan")
    seeds: list = field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        """One row per (condition, layer): probe balanced accuracy mean/std over seeds,
        the condition's test accuracy and whether the layer is the condition's best."""
        bal = np.asarray(self.balanced_accuracy, dtype=float)
        acc = np.asarray(self.accuracy, dtype=float)
        test = np.asarray(self.test_accuracy, dtype=float)
        rows = []
        for ci, cond in enumerate(self.conditions):
            best = int(np.argmax(bal[ci].mean(axis=1)))
            for li, layer in enumerate(self.layers):
                rows.append(
                    {
                        "condition": cond,
                        "layer": layer,
                        "balanced_accuracy": bal[ci, li].mean(),
                        "balanced_accuracy_std": bal[ci, li].std(),
                        "accuracy": acc[ci, li].mean(),
                        "test_accuracy": test[ci].mean(),
                        "best_layer": li == best,
                    }
                )
        return pd.DataFrame(rows)

    def groups_frame(self) -> pd.DataFrame:
        """Test accuracy per group (rows) and condition (columns), mean over seeds."""
        acc = np.asarray(self.group_accuracy, dtype=float)
        if acc.size == 0:
            return pd.DataFrame(columns=["group", *self.conditions])
        mean = acc.mean(axis=2)
        frame = pd.DataFrame({"group": list(self.group_names)})
        for ci, cond in enumerate(self.conditions):
            frame[cond] = mean[ci]
        return frame

    def change(self) -> pd.DataFrame:
        """Per layer: probe balanced accuracy drop after removing the top k vs k random."""
        bal = np.asarray(self.balanced_accuracy, dtype=float).mean(axis=2)
        full, top, rnd = (bal[self.conditions.index(c)] for c in self.conditions)
        return pd.DataFrame(
            {"layer": self.layers, "drop_top": full - top, "drop_random": full - rnd}
        )

    def plot(self):
        """Bokeh figure: probe balanced accuracy per layer, one line per condition (and,
        when the data has groups, the test accuracy per group and condition beside it)."""
        from bokeh.plotting import figure

        bal = np.asarray(self.balanced_accuracy, dtype=float).mean(axis=2)
        fig = figure(
            x_range=[str(x) for x in self.layers],
            height=280,
            width=520,
            title=f"'{self.concept}' probe accuracy after removing k={self.k} samples",
            toolbar_location="above",
        )
        names = {
            "full": "all data",
            "minus_top": f"without top {self.k}",
            "minus_random": f"without {self.k} random",
        }
        for ci, (cond, color) in enumerate(zip(self.conditions, _COLORS)):
            label = names.get(cond, cond)
            fig.line(
                [str(x) for x in self.layers],
                bal[ci],
                line_width=2,
                color=color,
                legend_label=label,
            )
            fig.scatter(
                [str(x) for x in self.layers], bal[ci], size=7, color=color, legend_label=label
            )
        fig.yaxis.axis_label = "balanced accuracy (held out)"
        fig.legend.location = "bottom_right"
        fig.xaxis.major_label_orientation = 0.6
        groups = self.groups_frame()
        if not len(groups):
            return fig
        from bokeh.layouts import row

        gfig = figure(
            x_range=[str(g) for g in groups["group"]],
            height=280,
            width=520,
            y_range=(0, 1.02),
            title="Test accuracy per group after retraining",
            toolbar_location="above",
        )
        for cond, color in zip(self.conditions, _COLORS):
            gfig.scatter(
                [str(g) for g in groups["group"]],
                groups[cond].to_numpy(),
                size=9,
                color=color,
                legend_label=names.get(cond, cond),
            )
        gfig.yaxis.axis_label = "accuracy"
        gfig.xaxis.major_label_orientation = 0.8
        gfig.legend.location = "bottom_left"
        return row(fig, gfig)

    def widget(self):
        import ipywidgets

        tables = self.to_frame().to_html(index=False, float_format="%.3f")
        if len(self.groups_frame()):
            tables += self.groups_frame().to_html(index=False, float_format="%.3f")
        return ipywidgets.HTML(tables)


# ---------------------------------------------------------------------------------------
# Report section
# ---------------------------------------------------------------------------------------


def _artifact_concept(sess) -> str:
    artifact = (getattr(sess.data, "config", {}) or {}).get("artifact")
    names = list(sess.concept_names)
    if artifact in names:
        return artifact
    if not names:
        raise ValueError("The session's data has no concept labels to attribute.")
    return names[-1]


def demo_section(sess, concept: str | None = None, max_train: int = 1000, k: int = 100) -> dict:
    """The attribution section of the demo report: where the artifact concept lives and
    which training samples taught it (one model, a training subset, to stay quick).

    Returns:
        ``{"title", "summary_lines", "figures"}``.
    """
    import time

    concept = concept or _artifact_concept(sess)
    start = time.perf_counter()
    r = concept_attribution(
        sess,
        concept,
        n_models=1,
        proj_dim=512,
        max_train=max_train,
        n_targets=64,
        progress=False,
    )
    seconds = time.perf_counter() - start
    probes = r.probes().to_frame()
    base = float(torch.as_tensor(r.concept_labels).float().mean())
    lines = [
        f"Concept '{concept}': probe balanced accuracy per layer "
        + ", ".join(f"{a} {b:.3f}" for a, b in zip(probes["layer"], probes["balanced_accuracy"])),
        f"TRAK on the probe's logit at {r.layer} (1 model, proj_dim 512, "
        f"{len(r.scores)} training samples, {len(r.target_indices)} targets): "
        f"precision at {k} = {r.precision_at(k):.2f} (base rate {base:.2f}), {seconds:.0f} s.",
    ]
    top = r._order()[:k]
    classes = torch.as_tensor(r.classes).numpy()[top]
    carriers = torch.as_tensor(r.concept_labels).numpy()[top].astype(bool)
    by_class = ", ".join(
        f"{int((classes[carriers] == c).sum())} of class {name}"
        for c, name in enumerate(r.class_names)
        if (classes[carriers] == c).any()
    )
    lines.append(f"Concept carriers among the top {k}: {by_class or 'none'}.")
    return {
        "title": "Training samples that taught a concept (TRAK)",
        "summary_lines": lines,
        "figures": [r.plot()],
        "result": r,
    }
