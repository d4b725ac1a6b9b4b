"""DORA: data-agnostic representation analysis.

DORA finds the neurons of a layer whose function is unlike the others, without looking
at any data. For each neuron it synthesises a few images that drive the neuron as
high as possible (synthetic activation-maximisation signals, s-AMS), feeds every s-AMS
back through the model, and compares neurons by how the whole layer responds to their
signals: neurons whose signals excite the layer in the same way do the same thing. The
resulting extreme-activation (EA) distance needs no data; local outlier factors on it
flag neurons that are far from everything else, which are often detectors of
artifacts or spurious features (watermarks, borders, text).

Pipeline (see METHODS.md, section 1):

1. :func:`generate_signals` - s-AMS for every (neuron, signal) pair of the layer,
   optimised together as one batch (or as few as memory allows), one objective per
   batch element: the neuron's spatially averaged activation on its own image.
2. :func:`analyze_signals` - feed the signals back: ``A[i, j]`` = activation of neuron
   ``j`` on the signals of neuron ``i`` (mean over the n signals), A is k x k.
3. :func:`ea_distance` - ``D = sqrt((1 - cos(r_i, r_j)) / 2)``, one matrix product, where
   ``r_i`` is neuron i's representation activation vector: by default its responses to
   all the s-AMS (column i of A, as in the DORA paper), or optionally the layer's
   response to its own signals (row i of A).
4. :func:`analyze_activations` - dead neurons are set aside, then LOF outlier scores and
   a 2-D map (UMAP, MDS for tiny layers) on the live neurons.

:func:`analyze` runs all of it on a :class:`~repwidgets.session.Session`;
:func:`validate` checks the data-free distances against what the neurons do on real
images (functional distance, artifact detectors).

Example:
    >>> import repwidgets as rw
    >>> sess = rw.demo_session()                                  # doctest: +SKIP
    >>> r = rw.dora.analyze(sess, "features.conv3", n_signals=2)  # doctest: +SKIP
    >>> r.to_frame().sort_values("lof_score", ascending=False).head()  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from repwidgets.engines import _checks, featurevis
from repwidgets.engines.embedding import embed_distances
from repwidgets.results import Result
from repwidgets.session import resolve_layer

__all__ = [
    "DoraResult",
    "analyze",
    "analyze_activations",
    "analyze_signals",
    "demo_section",
    "ea_distance",
    "find_dead",
    "functional_distance",
    "generate_signals",
    "validate",
]

LayerSpec = nn.Module | str | Callable[[Tensor], Tensor]


# ------------------------------------------------------------------------ EA distance
def ea_distance(A: Tensor | np.ndarray) -> Tensor | np.ndarray:
    """Extreme-activation distance between the rows of an activation matrix.

    ``D[i, j] = sqrt((1 - clamp(cos(A_i, A_j), -1, 1)) / 2)`` with the diagonal set to 0,
    NaN (rows of zeros) replaced by 0 and the result symmetrised as ``(D + D.T) / 2``.
    The cosines are one k x k matrix product of the row-normalised matrix.

    Args:
        A: activations [k, k] (or [k, m]): row i holds the layer's response to the
            signals of neuron i. A torch tensor (any device) or a NumPy array.

    Returns:
        D [k, k], same type, device and floating dtype as ``A``; values in [0, 1]
        ([0, 1/sqrt(2)] for non-negative activations). In float32, rows pointing the
        same way get distances up to ~3e-4 instead of 0 (rounding of the cosine under
        the square root); pass float64 for exact values.

    Example:
        >>> ea_distance(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        tensor([[0.0000, 0.7071],
                [0.7071, 0.0000]])
    """
    if isinstance(A, np.ndarray):
        return ea_distance(torch.from_numpy(A)).numpy()
    if not isinstance(A, Tensor):
        raise TypeError(f"A must be a torch.Tensor or numpy array, got {type(A).__name__}.")
    if A.ndim != 2:
        raise ValueError(f"A must be a 2-D matrix [k, k], got shape {tuple(A.shape)}.")
    if not A.is_floating_point():
        A = A.float()
    with torch.no_grad():
        norms = A.norm(dim=1, keepdim=True)
        unit = A / norms  # rows of zeros become NaN and end as distance 0
        cos = unit @ unit.T
        D = torch.sqrt((1 - cos.clamp(-1.0, 1.0)) / 2)
        D.fill_diagonal_(0.0)
        D = torch.nan_to_num(D, nan=0.0)
        return (D + D.T) / 2


def functional_distance(X: Tensor | np.ndarray) -> np.ndarray:
    """Distance between neurons' activation profiles over data: ``sqrt((1 - r) / 2)``.

    Args:
        X: activations [n_samples, k] (for example ``sess.activations(layer)``).

    Returns:
        NumPy array [k, k]; r is the Pearson correlation of two columns; constant
        columns get NaN rows.
    """
    x = X.detach().double().cpu().numpy() if isinstance(X, Tensor) else np.asarray(X, float)
    x = x - x.mean(axis=0, keepdims=True)
    norm = np.linalg.norm(x, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = x / norm
        r = np.clip(z.T @ z, -1.0, 1.0)
    D = np.sqrt((1.0 - r) / 2.0)
    np.fill_diagonal(D, 0.0)
    D[norm == 0, :] = np.nan
    D[:, norm == 0] = np.nan
    return D


# ------------------------------------------------------------------------- the result
@dataclass
class DoraResult(Result):
    """What DORA found for one layer.

    Attributes:
        layer: the layer's name (None when unknown).
        neurons: LongTensor [k], the analysed neurons (channel indices of the layer).
        activations: A [k, k]; ``A[i, j]`` = mean activation of neuron ``neurons[j]`` on
            the s-AMS of neuron ``neurons[i]``.
        distances: EA distances [k, k] (rows/columns follow ``neurons``);
            ``ea_distance(activations.T)`` for the default representation "responses",
            ``ea_distance(activations)`` for "signals" (see ``params``).
        lof_scores: LOF score [k] (about 1 for inliers, larger for outliers; NaN for
            dead neurons).
        is_outlier: BoolTensor [k], flagged by LOF at the chosen contamination.
        is_dead: BoolTensor [k], neurons set aside (not active on their own s-AMS, or
            constant).
        embedding: [k, 2] map of the live neurons (UMAP, or MDS for tiny k); NaN for dead.
        self_activation: [k], each neuron's activation on its own s-AMS (``diag(A)``).
        signals: s-AMS images [k, n, C, H, W] in [0, 1], or None when not generated here.
        params: the settings used (JSON-able).
    """

    layer: str | None
    neurons: Tensor
    activations: Tensor
    distances: Tensor
    lof_scores: Tensor
    is_outlier: Tensor
    is_dead: Tensor
    embedding: Tensor
    self_activation: Tensor
    signals: Tensor | None = None

    # --- tables ------------------------------------------------------------------------
    @property
    def k(self) -> int:
        return int(self.neurons.numel())

    def outliers(self) -> list[int]:
        """Neuron ids flagged as outliers, most outlying first."""
        order = self._outlier_order()
        flagged = self.is_outlier.cpu().numpy()
        ids = self.neurons.cpu().numpy()
        return [int(ids[i]) for i in order if flagged[i]]

    def dead(self) -> list[int]:
        """Neuron ids set aside as dead."""
        return [int(n) for n, d in zip(self.neurons.tolist(), self.is_dead.tolist()) if d]

    def _outlier_order(self) -> np.ndarray:
        scores = self.lof_scores.cpu().double().numpy()
        return np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")

    def nearest(self, n_nearest: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Nearest live neighbours of every neuron: (positions [k, m], distances [k, m])."""
        D = self.distances.detach().double().cpu().numpy().copy()
        dead = self.is_dead.cpu().numpy()
        D[:, dead] = np.inf
        np.fill_diagonal(D, np.inf)
        m = max(0, min(n_nearest, int((~dead).sum()) - 1))
        order = np.argsort(D, axis=1, kind="stable")[:, :m]
        return order, np.take_along_axis(D, order, axis=1)

    def to_frame(self, n_nearest: int = 5):
        """One row per neuron: outlier score and flag, dead flag, neighbours, map position.

        Columns: neuron, lof_score, outlier_rank (1 = most outlying live neuron),
        is_outlier, is_dead, self_activation, neighbours (nearest live neurons' ids),
        neighbour_distances, umap_x, umap_y.
        """
        import pandas as pd

        ids = self.neurons.cpu().numpy().astype(int)
        order, dist = self.nearest(n_nearest)
        rank = np.full(self.k, np.nan)
        scores = self.lof_scores.cpu().double().numpy()
        live_order = [i for i in self._outlier_order() if np.isfinite(scores[i])]
        rank[live_order] = np.arange(1, len(live_order) + 1)
        emb = self.embedding.cpu().double().numpy()
        return pd.DataFrame(
            {
                "neuron": ids,
                "lof_score": scores,
                "outlier_rank": pd.array(
                    [None if np.isnan(r) else int(r) for r in rank], dtype="Int64"
                ),
                "is_outlier": self.is_outlier.cpu().numpy().astype(bool),
                "is_dead": self.is_dead.cpu().numpy().astype(bool),
                "self_activation": self.self_activation.cpu().double().numpy(),
                "neighbours": [[int(ids[j]) for j in row] for row in order],
                "neighbour_distances": [[float(d) for d in row] for row in dist],
                "umap_x": emb[:, 0],
                "umap_y": emb[:, 1],
            }
        )

    # --- views -------------------------------------------------------------------------
    def signal_thumbnails(self, size: int | None = 48) -> list[bytes]:
        """PNG bytes per neuron: its s-AMS side by side (needs ``signals``)."""
        if self.signals is None:
            raise ValueError(
                "This result has no s-AMS images (it was made from activations only). "
                "Run dora.analyze(...) or dora.analyze_signals(...) to keep the signals."
            )
        from repwidgets.session import encode_image

        sig = self.signals.detach().float().cpu()
        k, n, c, h, w = sig.shape
        strips = sig.permute(0, 2, 3, 1, 4).reshape(k, c, h, n * w)
        return [encode_image(s, size=None if size is None else size * n) for s in strips]

    def plot(self, thumbnail_size: int = 48):
        """Bokeh map of the neurons (UMAP of the EA distances): outliers in red, dead
        neurons apart, each neuron's s-AMS in the hover tooltip."""
        from bokeh.models import ColumnDataSource, HoverTool
        from bokeh.plotting import figure

        frame = self.to_frame(n_nearest=3)
        thumbs = (
            self.signal_thumbnails(thumbnail_size) if self.signals is not None else [b""] * self.k
        )
        uris = [
            "data:image/png;base64," + base64.b64encode(t).decode("ascii") if t else ""
            for t in thumbs
        ]
        live = ~frame["is_dead"].to_numpy()
        x = frame["umap_x"].to_numpy(dtype=float).copy()
        y = frame["umap_y"].to_numpy(dtype=float).copy()
        no_map = not np.isfinite(x[live]).any()
        if no_map:  # made without a map (embedding=None): LOF score against neuron id
            x = frame["neuron"].to_numpy(dtype=float)
            y = np.nan_to_num(frame["lof_score"].to_numpy(dtype=float), nan=0.0)
        if live.any():
            x0, x1 = np.nanmin(x[live]), np.nanmax(x[live])
            y0, y1 = np.nanmin(y[live]), np.nanmax(y[live])
        else:
            x0, x1, y0, y1 = 0.0, 1.0, 0.0, 1.0
        span = max(x1 - x0, 1e-9)
        n_dead = int((~live).sum())
        if n_dead:  # a row of dead neurons below the map
            x[~live] = np.linspace(x0, x1, n_dead) if n_dead > 1 else [(x0 + x1) / 2]
            y[~live] = y0 - 0.12 * max(y1 - y0, span)
        kind = np.where(
            ~live, "dead", np.where(frame["is_outlier"].to_numpy(), "outlier", "inlier")
        )
        colour = {"inlier": "#4c78a8", "outlier": "#e45756", "dead": "#9d9d9d"}
        lof = frame["lof_score"].to_numpy(dtype=float)
        source_all = {
            "x": x,
            "y": y,
            "neuron": frame["neuron"].to_numpy(),
            "lof": [f"{v:.2f}" if np.isfinite(v) else "-" for v in lof],
            "kind": kind,
            "neighbours": [", ".join(map(str, v)) for v in frame["neighbours"]],
            "img": uris,
            "colour": [colour[k] for k in kind],
            "size": [12 if k == "outlier" else 8 for k in kind],
        }
        title = f"DORA: EA-distance map of {self.layer or 'the layer'}"
        title += f" ({int(frame['is_outlier'].sum())} outliers, {n_dead} dead)"
        fig = figure(
            title=title,
            width=640,
            height=520,
            tools="pan,wheel_zoom,box_zoom,reset,save",
            x_axis_label="neuron" if no_map else "map x",
            y_axis_label="LOF score" if no_map else "map y",
        )
        renderers = []
        for name in ("inlier", "outlier", "dead"):
            mask = kind == name
            if not mask.any():
                continue
            src = ColumnDataSource({key: np.asarray(v)[mask] for key, v in source_all.items()})
            marker = "x" if name == "dead" else "circle"
            r = fig.scatter(
                "x",
                "y",
                source=src,
                size="size",
                color="colour",
                marker=marker,
                alpha=0.85,
                legend_label=f"{name} ({int(mask.sum())})",
            )
            renderers.append(r)
        tooltip = """
        <div style="max-width: 420px">
          <div><b>neuron @neuron</b> (@kind) &middot; LOF @lof</div>
          <div>nearest: @neighbours</div>
          <img src="@img" style="image-rendering: pixelated; margin-top: 4px"/>
        </div>"""
        fig.add_tools(HoverTool(renderers=renderers, tooltips=tooltip))
        fig.legend.location = "top_left"
        fig.legend.click_policy = "hide"
        return fig

    def widget(self, **kwargs):
        """A DistanceHeatmap of the EA distances linked to a gallery of the s-AMS."""
        try:
            from repwidgets.widgets.heatmap import dora_widget
        except ImportError as exc:  # the widget module is optional at import time
            raise ImportError(
                "The DORA widget needs repwidgets.widgets.heatmap (DistanceHeatmap), which "
                f"is not available ({exc}). Use r.plot() or r.to_frame() instead."
            ) from exc
        return dora_widget(self, **kwargs)


# ----------------------------------------------------------------- layer plumbing
class _Stop(Exception):
    """Raised by a hook to end a forward pass once the target layer has run."""


def _resolve_layer(model: nn.Module, layer: LayerSpec) -> nn.Module | Callable:
    if isinstance(layer, str):
        return resolve_layer(model, layer)
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in model.modules()):
            raise ValueError(
                "The layer module is not part of the model. Pass a submodule of the model "
                "(for example dict(model.named_modules())['features.conv3']) or its name."
            )
        return layer
    if callable(layer):
        return layer
    raise TypeError(
        f"layer must be a module of the model, its name, or a function x -> activations; "
        f"got {type(layer).__name__}."
    )


class _RedirectedReLU(torch.autograd.Function):
    """ReLU whose gradient does not vanish on a channel that is off everywhere.

    Forward: ``relu(z)``. Backward: the ReLU's gradient, except for (sample, channel)
    maps with no active position, where the gradient passes through as for the identity
    (only where it pushes ``z`` up). An optimiser can then switch on a unit that is
    silent on its initial image; once the unit is on, this is the plain ReLU gradient.
    """

    @staticmethod
    def forward(ctx, z: Tensor) -> Tensor:
        ctx.save_for_backward(z)
        return z.clamp(min=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (z,) = ctx.saved_tensors
        on = z > 0
        if z.ndim > 2:
            off = ~on.flatten(2).any(dim=2)  # [B, C] maps without any active position
            off = off.view(*off.shape, *([1] * (z.ndim - 2)))
        else:
            off = ~on
        # the objective is maximised, so the loss gradient is negative where it pushes up
        return torch.where(on | (off & (grad < 0)), grad, torch.zeros_like(grad))


def _layer_fn(
    model: nn.Module,
    layer: LayerSpec,
    preprocess: Callable[[Tensor], Tensor] | None = None,
    redirect_relu: bool = False,
) -> Callable[[Tensor], Tensor]:
    """A function images -> the layer's output; the forward pass stops at the layer.

    With ``redirect_relu`` and an ``nn.ReLU`` layer, the output is computed from the
    layer's input by :class:`_RedirectedReLU`: same values, but a gradient also for
    units that are off everywhere (optimising such a unit would not move at all). A
    block that ends in a ReLU module (a ResNet stage) gets the same for every
    ``nn.ReLU`` inside it.
    """
    target = _resolve_layer(model, layer)
    use_input = redirect_relu and isinstance(target, nn.ReLU)
    inner = _inner_relus(target) if redirect_relu and not use_input else []
    pre = preprocess or (lambda x: x)
    if not isinstance(target, nn.Module):
        return lambda x: target(pre(x))

    def run(x: Tensor) -> Tensor:
        store: dict[str, Tensor] = {}

        def hook(_module, inputs, output):
            if use_input:
                output = _RedirectedReLU.apply(inputs[0])
            if isinstance(output, (tuple, list)):
                output = output[0]
            store["out"] = output
            raise _Stop

        handles = [target.register_forward_hook(hook)]
        saved: dict[int, Tensor] = {}
        for m in inner:
            handles.append(m.register_forward_pre_hook(_keep_input(saved)))
            handles.append(m.register_forward_hook(_redirect_output(saved)))
        try:
            model(pre(x))
        except _Stop:
            pass
        finally:
            for handle in handles:
                handle.remove()
        if "out" not in store:
            raise ValueError(
                "The layer did not run during the model's forward pass; pick a module the "
                "forward pass uses."
            )
        return store["out"]

    return run


def _inner_relus(target) -> list[nn.Module]:
    """The ``nn.ReLU`` modules inside a block (none for a plain layer or a function)."""
    if not isinstance(target, nn.Module):
        return []
    return [m for m in target.modules() if m is not target and isinstance(m, nn.ReLU)]


def _keep_input(saved: dict[int, Tensor]) -> Callable:
    """Forward pre-hook: keep a ReLU's input and hand it a copy (an in-place ReLU would
    overwrite the input that the redirected gradient needs)."""

    def hook(module, inputs):
        saved[id(module)] = inputs[0]
        return (inputs[0].clone(), *inputs[1:])

    return hook


def _redirect_output(saved: dict[int, Tensor]) -> Callable:
    """Forward hook: the ReLU's output again, with :class:`_RedirectedReLU`'s gradient."""

    def hook(module, _inputs, _output):
        return _RedirectedReLU.apply(saved.pop(id(module)))

    return hook


def _unit_responses(out: Tensor) -> Tensor:
    """[B, C, *spatial] -> spatial mean [B, C]; [B, C] stays."""
    if not isinstance(out, Tensor):
        raise TypeError(f"The layer returned {type(out).__name__}, not a tensor.")
    if out.ndim < 2:
        raise ValueError(
            f"The layer's output has shape {tuple(out.shape)}: it has no channel dimension, "
            "so there are no neurons to analyse. Pick a convolutional or linear layer."
        )
    return out if out.ndim == 2 else out.flatten(2).mean(dim=2)


def _probe_channels(fn: Callable[[Tensor], Tensor], input_shape, device) -> int:
    with torch.no_grad():
        out = fn(torch.full((1, *input_shape), 0.5, device=device))
    return int(_unit_responses(out).shape[1])


def _check_neurons(neurons, n_channels: int) -> Tensor:
    if neurons is None:
        idx = torch.arange(n_channels)
    else:
        idx = torch.as_tensor(
            list(neurons) if not isinstance(neurons, Tensor) else neurons
        ).flatten()
        if idx.is_floating_point() or idx.dtype == torch.bool:
            raise TypeError("neurons must be integer channel indices.")
        idx = idx.long().cpu()
        bad = idx[(idx < 0) | (idx >= n_channels)]
        if bad.numel():
            raise ValueError(
                f"Neurons {bad[:5].tolist()} are out of range: the layer has {n_channels} "
                f"channels (0..{n_channels - 1})."
            )
        if idx.unique().numel() != idx.numel():
            raise ValueError("neurons contains duplicates; pass each neuron once.")
    if idx.numel() < 2:
        raise ValueError(
            f"DORA compares neurons with each other and needs at least 2; got {idx.numel()}. "
            "Pass more neurons (or neurons=None for the whole layer)."
        )
    return idx


class _FrozenParams:
    """Turn off parameter gradients (only input gradients are needed) and eval mode."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __enter__(self):
        self.flags = [(p, p.requires_grad) for p in self.model.parameters()]
        self.training = self.model.training
        for p, _ in self.flags:
            p.requires_grad_(False)
        self.model.eval()
        return self

    def __exit__(self, *exc):
        for p, flag in self.flags:
            p.requires_grad_(flag)
        self.model.train(self.training)


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


# ----------------------------------------------------------------- s-AMS generation
def generate_signals(
    model: nn.Module,
    layer: LayerSpec,
    neurons: Sequence[int] | Tensor | None = None,
    n_signals: int = 3,
    steps: int = 192,
    input_shape: Sequence[int] = (3, 64, 64),
    device: torch.device | str | None = None,
    *,
    preprocess: Callable[[Tensor], Tensor] | None = None,
    minimize: bool = False,
    lr: float = 0.2,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    grad_clip: float | None = 1.0,
    decay: float = 0.75,
    transforms: featurevis.Transforms | dict | bool = True,
    render_scale: float = 1.0,
    batch_size: int | None = None,
    memory_budget_mb: float = 1024,
    seed: int = 0,
    progress: bool = True,
) -> Tensor:
    """Synthetic activation-maximisation signals (s-AMS) for neurons of a layer.

    All (neuron, signal) pairs are optimised together, one image per batch element,
    element ``e`` maximising the spatially averaged activation of its own neuron (conv
    maps are averaged over space; linear layers are used directly). For an ``nn.ReLU``
    layer, a unit that is off everywhere on its image still gets a gradient (passed
    through as if the ReLU were the identity, see ``_RedirectedReLU``), so neurons
    silent on the initial grey image get signals too. Batches are as
    large as ``memory_budget_mb`` allows (or ``batch_size``). See
    :func:`repwidgets.engines.featurevis.visualize` for the optimisation.

    Args:
        model: the network (its parameters are not changed; it is put in eval mode).
        layer: a module of ``model``, its name, or a function images -> activations.
        neurons: channel indices (default: all channels of the layer).
        n_signals: images per neuron.
        steps: optimisation steps.
        input_shape: (C, H, W) of the model's input.
        device: where to optimise (default: the model's device).
        preprocess: the model's input transform, applied to [0, 1] images.
        minimize: optimise for the lowest activation instead.
        lr, optimizer, weight_decay, grad_clip, decay, transforms, render_scale: see
            :func:`~repwidgets.engines.featurevis.visualize`.
        seed: fixes the initial images and the random transforms (reproducible).
        progress: show a progress bar.

    Returns:
        Signals [k, n_signals, C, H, W] in [0, 1] on ``device``.

    Example:
        >>> sig = generate_signals(model, "features.conv3", [0, 5], n_signals=2,
        ...                        steps=64)  # doctest: +SKIP
    """
    if int(n_signals) < 1:
        raise ValueError(f"n_signals must be at least 1, got {n_signals}.")
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape!r}.")
    device = torch.device(device) if device is not None else _model_device(model)
    fn = _layer_fn(model, layer, preprocess, redirect_relu=True)
    with _FrozenParams(model):
        n_channels = _probe_channels(fn, input_shape, device)
        idx = _check_neurons(neurons, n_channels)
        k, n = idx.numel(), int(n_signals)
        unit_of = idx.to(device).repeat_interleave(n)  # element e -> its neuron
        sign = -1.0 if minimize else 1.0

        def objective(x: Tensor, elements: Tensor) -> Tensor:
            resp = _unit_responses(fn(x))
            return sign * resp[torch.arange(len(elements), device=resp.device), unit_of[elements]]

        if batch_size is None:
            batch_size = featurevis.estimate_batch_size(
                objective, input_shape, device, memory_budget_mb, render_scale
            )
        images = featurevis.visualize(
            objective,
            k * n,
            input_shape,
            steps=int(steps),
            lr=lr,
            optimizer=optimizer,
            weight_decay=weight_decay,
            grad_clip=grad_clip,
            decay=decay,
            transforms=transforms,
            render_scale=render_scale,
            batch_size=batch_size,
            seed=seed,
            device=device,
            progress=progress,
            desc=f"s-AMS ({k} neurons x {n})",
        )
    return images.view(k, n, *input_shape)


# ---------------------------------------------------------------- activation matrix
def _layer_responses(
    model: nn.Module,
    layer: LayerSpec,
    images: Tensor,
    preprocess: Callable[[Tensor], Tensor] | None = None,
    batch_size: int = 256,
) -> tuple[Tensor, Tensor]:
    """Spatial mean and spatial max of every channel of ``layer`` on ``images`` [m, C_in, H, W].

    Returns (mean [m, C], peak [m, C]) as float32 on the images' device.
    """
    fn = _layer_fn(model, layer, preprocess)
    means, peaks = [], []
    with _FrozenParams(model), torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            out = fn(images[start : start + batch_size])
            means.append(_unit_responses(out).float())
            peaks.append((out if out.ndim == 2 else out.flatten(2).amax(dim=2)).float())
    return torch.cat(means), torch.cat(peaks)


def analyze_signals(
    model: nn.Module,
    layer: LayerSpec,
    signals: Tensor,
    neurons: Sequence[int] | Tensor | None = None,
    *,
    preprocess: Callable[[Tensor], Tensor] | None = None,
    batch_size: int = 256,
    layer_name: str | None = None,
    **kwargs,
) -> DoraResult:
    """Feed s-AMS back through the model and analyse the activation matrix.

    Args:
        model, layer, preprocess: as in :func:`generate_signals`.
        signals: [k, n, C, H, W] images of the k neurons (``signals[i]`` belongs to
            ``neurons[i]``).
        neurons: channel indices of the k neurons (default ``0..k-1``).
        batch_size: images per forward pass.
        layer_name: stored in the result.
        **kwargs: passed to :func:`analyze_activations`.

    Returns:
        DoraResult with ``A[i, j]`` = mean over the n signals of neuron i of the spatially
        averaged activation of neuron j. A neuron is also dead when its activation never
        exceeds 0 anywhere on its own signals.
    """
    if not isinstance(signals, Tensor) or signals.ndim != 5:
        raise ValueError(
            "signals must be a tensor [k, n, C, H, W] (neurons x signals x image); got "
            f"{tuple(signals.shape) if isinstance(signals, Tensor) else type(signals).__name__}."
        )
    k, n = signals.shape[:2]
    fn = _layer_fn(model, layer, preprocess)
    device = _model_device(model)
    n_channels = _probe_channels(fn, tuple(signals.shape[2:]), device)
    idx = _check_neurons(list(range(k)) if neurons is None else neurons, n_channels)
    if idx.numel() != k:
        raise ValueError(f"signals has {k} neurons but neurons lists {idx.numel()}.")
    flat = signals.reshape(k * n, *signals.shape[2:]).to(device)
    mean, peak = _layer_responses(model, layer, flat, preprocess, batch_size)
    cols = idx.to(mean.device)
    A = mean.view(k, n, -1)[:, :, cols].mean(dim=1)
    rows = torch.arange(k, device=mean.device)
    own_peak = peak.view(k, n, -1)[rows, :, cols].amax(dim=1)
    result = analyze_activations(A, neurons=idx, self_peak=own_peak, layer=layer_name, **kwargs)
    result.signals = signals.detach().float().cpu()
    return result


def find_dead(A: Tensor, self_peak: Tensor | None = None, tol: float = 1e-3) -> Tensor:
    """Neurons that DORA cannot compare: BoolTensor [k].

    A neuron is dead when it is not active on its own s-AMS (``A[i, i] <= 0`` or
    ``self_peak[i] <= 0``), when its activation there is negligible (below ``tol`` x the
    median of the live neurons' own activations), or when it is constant (its column
    of A varies by less than ``tol`` x the typical variation).
    """
    A = A.detach().double().cpu()
    diag = A.diagonal()
    dead = ~(diag > 0)
    if self_peak is not None:
        dead |= ~(self_peak.detach().double().cpu() > 0)
    if (~dead).any():
        dead |= diag <= tol * diag[~dead].median()
    spread = A.amax(dim=0) - A.amin(dim=0)
    if (spread > 0).any():
        dead |= spread <= tol * spread[spread > 0].median()
    return dead


def analyze_activations(
    A: Tensor | np.ndarray,
    neurons: Sequence[int] | Tensor | None = None,
    *,
    contamination: float | str = 0.01,
    n_neighbors: int = 20,
    self_peak: Tensor | None = None,
    dead: Tensor | Sequence[bool] | None = None,
    dead_tol: float = 1e-3,
    embedding: str | None = "umap",
    umap_neighbors: int = 15,
    representation: str = "responses",
    center: bool = False,
    seed: int = 0,
    layer: str | None = None,
) -> DoraResult:
    """DORA on a given activation matrix: dead neurons, EA distances, LOF, 2-D map.

    Args:
        A: [k, k], ``A[i, j]`` = activation of neuron j on the signals of neuron i.
        neurons: ids of the k neurons (default ``0..k-1``).
        contamination: expected outlier fraction for LOF's flags (the reference uses
            0.01; "auto" uses LOF's own threshold). The raw scores are always kept.
        n_neighbors: LOF neighbourhood size (capped at the number of live neurons - 1).
        self_peak: optional [k] peak activation of each neuron on its own signals.
        dead: a given dead mask [k] (default: :func:`find_dead`).
        dead_tol: relative tolerance of :func:`find_dead`.
        embedding: the 2-D map: "umap" (UMAP on the precomputed distances; MDS below 8
            live neurons), "mds" (metric MDS, quick), or None (no map). UMAP compiles
            its kernels on first use in a process (tens of seconds on a small CPU).
        umap_neighbors: UMAP's neighbourhood size.
        representation: what is compared between neurons i and j:

            - "responses" (default): their responses to all the s-AMS, i.e. columns i
              and j of A (``distances = ea_distance(A.T)``). This is the representation
              activation vector of the DORA paper, and it mirrors how neurons are
              compared on data (by their responses over the same inputs); on our
              shapes CNNs it agrees far better with the neurons' functional distance
              on real images (Spearman about 0.85 versus 0.6 for "signals").
            - "signals": the layer's response to their signals, rows i and j of A
              (``distances = ea_distance(A)``).
        center: subtract each neuron's mean response over all the s-AMS (the mean of
            its column of A) before comparing, so that the cosine becomes a Pearson
            correlation, as in the functional distance on data; a neuron's offset (a
            bias, the floor of GELU or SiLU) then no longer counts. On the demo CNN, a
            ResNet, a GELU VGG and a GroupNorm net (``benchmarks/bench_truth.py``) it
            raises the agreement with functional distance (Spearman +0.00..+0.07) and
            the artifact detectors' grouping, but ranks them lower among the LOF
            outliers (AUC -0.01..-0.07), so the default stays the plain cosine of the
            DORA paper (False).
        seed: seed of the map.
        layer: layer name stored in the result.

    Returns:
        DoraResult (without signals). Dead neurons get NaN scores and map positions and
        are never outliers; the distance matrix covers all k neurons.

    Example:
        >>> r = analyze_activations(torch.rand(30, 30), embedding=None)
        >>> r.distances.shape
        torch.Size([30, 30])
    """
    if isinstance(A, np.ndarray):
        A = torch.from_numpy(A)
    if not isinstance(A, Tensor):
        raise TypeError(f"A must be a tensor or numpy array, got {type(A).__name__}.")
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be a square matrix [k, k], got shape {tuple(A.shape)}.")
    k = A.shape[0]
    if k < 2:
        raise ValueError(f"DORA compares neurons with each other and needs k >= 2; got k = {k}.")
    A = A.detach().float()
    bad = torch.nonzero(~torch.isfinite(A).all(dim=1)).flatten()
    if bad.numel():
        raise ValueError(
            f"A has NaN or infinite values in the rows of neurons {bad[:10].tolist()}; "
            "check the model's outputs for these signals."
        )
    idx = torch.arange(k) if neurons is None else torch.as_tensor(neurons).long().cpu().flatten()
    if idx.numel() != k:
        raise ValueError(f"A has {k} rows but neurons lists {idx.numel()}.")
    if isinstance(contamination, str):
        if contamination != "auto":
            raise ValueError(
                f"contamination must be a float in (0, 0.5] or 'auto'; got {contamination!r}."
            )
    elif not 0 < float(contamination) <= 0.5:
        raise ValueError(f"contamination must be in (0, 0.5] or 'auto'; got {contamination}.")

    if representation not in ("responses", "signals"):
        raise ValueError(
            f"representation must be 'responses' or 'signals'; got {representation!r}."
        )
    D = ea_distance(_compared(A, representation, center))
    if dead is None:
        is_dead = find_dead(A, self_peak, dead_tol)
    else:
        is_dead = torch.as_tensor(dead, dtype=torch.bool).cpu().flatten()
        if is_dead.numel() != k:
            raise ValueError(f"dead has {is_dead.numel()} entries; expected {k}.")
    live = torch.nonzero(~is_dead).flatten().numpy()
    lof = np.full(k, np.nan)
    flags = np.zeros(k, dtype=bool)
    emb = np.full((k, 2), np.nan)
    method = "none"
    Dl = D.detach().double().cpu().numpy()[np.ix_(live, live)]
    if live.size >= 3:
        from sklearn.neighbors import LocalOutlierFactor

        nn_ = max(1, min(int(n_neighbors), live.size - 1))
        cont = contamination if isinstance(contamination, str) else float(contamination)
        est = LocalOutlierFactor(n_neighbors=nn_, metric="precomputed", contamination=cont)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # duplicate points: LOF warns, scores stay valid
            pred = est.fit_predict(Dl)
        lof[live] = -est.negative_outlier_factor_
        flags[live] = pred == -1
    elif live.size:
        warnings.warn(f"Only {live.size} live neurons: too few for outlier scores.", stacklevel=2)
    if embedding not in ("umap", "mds", None):
        raise ValueError(f"embedding must be 'umap', 'mds' or None; got {embedding!r}.")
    if embedding is not None and live.size:
        coords, method = embed_distances(Dl, embedding, seed, umap_neighbors)
        emb[live] = coords
    return DoraResult(
        layer=layer,
        neurons=idx,
        activations=A.cpu(),
        distances=D.cpu(),
        lof_scores=torch.from_numpy(lof).float(),
        is_outlier=torch.from_numpy(flags),
        is_dead=is_dead,
        embedding=torch.from_numpy(emb).float(),
        self_activation=A.diagonal().cpu().clone(),
        signals=None,
        params={
            "contamination": contamination,
            "n_neighbors": int(n_neighbors),
            "dead_tol": float(dead_tol),
            "embedding": method,
            "representation": representation,
            "center": bool(center),
            "seed": int(seed),
        },
    )


def _compared(A: Tensor, representation: str, center: bool) -> Tensor:
    """The vectors whose EA distance is taken: columns (responses) or rows (signals) of
    A, optionally with each neuron's mean response over the signals removed."""
    B = A - A.mean(dim=0, keepdim=True) if center else A
    return B.T.contiguous() if representation == "responses" else B


# ------------------------------------------------------------------ session level
def analyze(
    sess,
    layer: str,
    n_signals: int = 3,
    steps: int = 192,
    neurons: Sequence[int] | Tensor | None = None,
    *,
    contamination: float | str = 0.01,
    n_neighbors: int = 20,
    embedding: str | None = "umap",
    representation: str = "responses",
    center: bool = False,
    seed: int = 0,
    progress: bool | None = None,
    batch_size: int | None = None,
    signal_size: int | None = None,
    **signal_kwargs,
) -> DoraResult:
    """DORA on a layer of a session's model: s-AMS, EA distances, outliers, map.

    Args:
        sess: a :class:`~repwidgets.session.Session` (its model, device and
            ``preprocess`` are used; its data is not).
        layer: name of the layer (``sess.layers()`` lists them).
        n_signals: s-AMS per neuron.
        steps: optimisation steps per s-AMS.
        neurons: channel indices to analyse (default: all).
        contamination, n_neighbors, embedding, representation, center: LOF, map and
            distance settings (see :func:`analyze_activations`).
        seed: makes the result reproducible.
        progress: progress bars (default: the session's setting).
        batch_size: images per optimisation batch (default: as many as the session's
            memory budget allows).
        signal_size: side in pixels of the s-AMS (default: the session's input size).
            Models that pool globally accept smaller images; half the side is about
            four times faster, and on the demo model gives distances as faithful as
            full-size signals.
        **signal_kwargs: more settings of :func:`generate_signals` (lr, transforms,
            render_scale, decay, optimizer, grad_clip, ...).

    Returns:
        :class:`DoraResult` with ``signals`` [k, n, C, H, W], ``distances`` [k, k] and
        per-neuron scores (``to_frame()``).

    Example:
        >>> r = rw.dora.analyze(sess, "features.conv3", n_signals=2, steps=128)  # doctest: +SKIP
        >>> r.outliers()[:5]                                                      # doctest: +SKIP
    """
    module = sess.module(layer)
    _checks.dora_params(n_signals, steps, contamination, n_neighbors, embedding, representation)
    _checks.neuron_indices(neurons, _checks.layer_width(sess, layer), layer, minimum=2)
    show = sess.progress if progress is None else bool(progress)
    input_shape = tuple(signal_kwargs.pop("input_shape", sess.input_shape))
    if signal_size is not None:
        if int(signal_size) < 8:
            raise ValueError(f"signal_size must be at least 8 pixels; got {signal_size}.")
        input_shape = (input_shape[0], int(signal_size), int(signal_size))
    budget = getattr(sess, "memory_budget", 2**31) / 2**20
    signals = generate_signals(
        sess.model,
        module,
        neurons,
        n_signals=n_signals,
        steps=steps,
        input_shape=input_shape,
        device=sess.device,
        preprocess=sess.preprocess,
        batch_size=batch_size,
        memory_budget_mb=budget / 2,
        seed=seed,
        progress=show,
        **signal_kwargs,
    )
    k = signals.shape[0]
    idx = _check_neurons(neurons, 10**9) if neurons is not None else torch.arange(k)
    result = analyze_signals(
        sess.model,
        module,
        signals,
        idx,
        preprocess=sess.preprocess,
        batch_size=getattr(sess, "batch_size", 256),
        layer_name=layer,
        contamination=contamination,
        n_neighbors=n_neighbors,
        embedding=embedding,
        representation=representation,
        center=center,
        seed=seed,
    )
    params = {
        "n_signals": int(n_signals),
        "steps": int(steps),
        "signal_shape": [int(v) for v in input_shape],
        **{
            key: (featurevis.config_dict(v) if key == "transforms" else v)
            for key, v in signal_kwargs.items()
            if isinstance(v, (int, float, str, bool, dict, type(None), featurevis.Transforms))
        },
    }
    result.params.update(params)
    result._session = sess
    return result


# ---------------------------------------------------------------------- validation
def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC with ties counted half (Mann-Whitney); NaN without both classes."""
    from scipy.stats import rankdata

    labels = labels.astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _concept_column(sess, concept: str | int, split: str) -> np.ndarray:
    names = list(sess.concept_names)
    if isinstance(concept, str):
        if concept not in names:
            raise ValueError(
                f"Unknown concept {concept!r}. The data's concepts are: {', '.join(names)}."
            )
        j = names.index(concept)
    else:
        j = int(concept)
    return sess.concepts(split)[:, j].cpu().numpy().astype(bool)


def validate(
    sess,
    result: DoraResult,
    concept: str | int = "watermark",
    split: str = "test",
    detector_auc: float = 0.95,
) -> dict:
    """Check DORA's data-free distances against what the neurons do on real images.

    Three figures, on the live neurons (not dead for DORA, not constant on the data):

    1. ``spearman``: Spearman correlation, over all pairs, between the EA distance and
       the functional distance ``sqrt((1 - r) / 2)`` of the neurons' spatially averaged
       activations over the split (r: Pearson). Target >= 0.3.
    2. ``within_between_auc``: the concept's detectors (neurons whose activation has
       ROC AUC >= ``detector_auc`` for the concept) should be close to each other: AUC of
       "between" distances (detector to other neuron) exceeding "within" distances
       (detector to detector). Target >= 0.8.
    3. Outlier figures: ``outlier_auc`` (AUC of the LOF score for detectors vs the
       other live neurons), ``detectors_in_top`` (how many detectors are among the
       top-m LOF scores, m = number of detectors), ``detectors_flagged`` (detectors
       flagged by LOF) and ``map_within_between_auc`` (figure 2 on the 2-D map: do they
       form their own cluster).

    Returns:
        A dict of these figures plus counts, the detector ids and ``passes`` (bools).
    """
    from scipy.stats import spearmanr

    if result.layer is None:
        raise ValueError("The result has no layer name; validate needs it to read activations.")
    ids = result.neurons.cpu().numpy()
    X = sess.activations(result.layer, split=split, pool="mean")[:, torch.as_tensor(ids)]
    X = X.detach().double().cpu().numpy()
    data_live = X.std(axis=0) > 1e-8 * max(1.0, float(np.abs(X).max()))
    live = data_live & ~result.is_dead.cpu().numpy()
    li = np.nonzero(live)[0]
    D_ea = result.distances.detach().double().cpu().numpy()[np.ix_(li, li)]
    D_fun = functional_distance(X[:, li])
    iu = np.triu_indices(li.size, 1)
    rho = float(spearmanr(D_ea[iu], D_fun[iu]).statistic) if li.size >= 3 else float("nan")

    mask = _concept_column(sess, concept, split)
    aucs = np.array([_auc(X[:, j], mask) for j in range(X.shape[1])])
    det = live & (aucs >= detector_auc)
    det_l = det[li]
    within = D_ea[np.ix_(det_l, det_l)][np.triu_indices(int(det_l.sum()), 1)]
    between = D_ea[np.ix_(det_l, ~det_l)].ravel()
    wb = (
        _auc(np.concatenate([within, between]), np.r_[np.zeros(within.size), np.ones(between.size)])
        if within.size and between.size
        else float("nan")
    )
    lof = result.lof_scores.cpu().double().numpy()[li]
    out_auc = _auc(lof, det_l) if det_l.any() else float("nan")
    m = int(det_l.sum())
    top = np.argsort(-lof, kind="stable")[:m]
    in_top = int(det_l[top].sum())
    flagged = int((result.is_outlier.cpu().numpy()[li] & det_l).sum())
    emb = result.embedding.cpu().double().numpy()[li]
    if within.size and between.size and np.isfinite(emb).all():
        E = np.sqrt(((emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1))
        w_e = E[np.ix_(det_l, det_l)][np.triu_indices(m, 1)]
        b_e = E[np.ix_(det_l, ~det_l)].ravel()
        map_wb = _auc(np.concatenate([w_e, b_e]), np.r_[np.zeros(w_e.size), np.ones(b_e.size)])
    else:
        map_wb = float("nan")
    return {
        "layer": result.layer,
        "concept": concept if isinstance(concept, str) else sess.concept_names[int(concept)],
        "n_neurons": int(ids.size),
        "n_live": int(li.size),
        "n_dead": int(result.is_dead.sum()),
        "n_data_dead": int((~data_live).sum()),
        "spearman": rho,
        "n_detectors": m,
        "detectors": [int(i) for i in ids[det]],
        "detector_concept_auc": [float(a) for a in aucs[det]],
        "within_between_auc": wb,
        "outlier_auc": out_auc,
        "detectors_in_top": in_top,
        "detectors_flagged": flagged,
        "n_flagged": int(result.is_outlier.sum()),
        "map_within_between_auc": map_wb,
        "passes": {
            "spearman": bool(rho >= 0.3),
            "within_between": bool(wb >= 0.8),
            "outliers": bool(
                (m > 0 and in_top >= max(1, m // 2)) or map_wb >= 0.8 or out_auc >= 0.8
            ),
        },
    }


def _invert_labels(sess, layer: str, neurons: list[int]) -> dict[int, str]:
    """INVERT formulas (with AUC) of a few neurons, to say what the outliers detect."""
    from . import invert

    if not neurons or not sess.concept_names:
        return {}
    r = invert.explain(
        sess, layer, neurons=neurons, max_length=3, beam_size=5, min_fraction=0.01, progress=False
    )
    frame = r.to_frame()
    return {
        int(n): f"{text} (AUC {auc:.2f})"
        for n, text, auc in zip(frame["neuron"], frame["formula"], frame["auc"])
    }


# ------------------------------------------------------------------------ report
def demo_section(sess, layer: str = "features.conv4", **kwargs) -> dict:
    """DORA on the demo session for the report: the three checks, top outliers, the map.

    Runs :func:`analyze` with a small budget (one 32-pixel s-AMS per neuron, 64 steps;
    override with keyword arguments) and :func:`validate` against the data's artifact.

    Returns ``{"title", "summary_lines", "figures", "result", "validation"}``.
    """
    kwargs.setdefault("n_signals", 1)
    kwargs.setdefault("steps", 64)
    kwargs.setdefault("signal_size", 32)
    kwargs.setdefault("embedding", "mds")
    kwargs.setdefault("progress", False)
    result = analyze(sess, layer, **kwargs)
    concept = sess.data.config.get("artifact") if hasattr(sess.data, "config") else None
    frame = result.to_frame()
    top = frame.dropna(subset=["lof_score"]).sort_values("lof_score", ascending=False).head(8)
    labels = _invert_labels(sess, layer, [int(n) for n in top["neuron"]])
    lines = [
        f"Layer {layer}: {result.k} neurons, {len(result.dead())} dead (set aside), "
        f"{len(result.outliers())} flagged as outliers by LOF.",
        "Top outliers (neuron, LOF score, INVERT label on test images):",
        *(
            f"    {int(n):4d}  {v:5.2f}  {labels.get(int(n), '-')}"
            for n, v in zip(top["neuron"], top["lof_score"])
        ),
    ]
    report = None
    if concept and concept in sess.concept_names:
        report = validate(sess, result, concept=concept)
        ok = report["passes"]
        det = set(report["detectors"])
        lines += [
            f"(1) EA distance vs functional distance on test images: Spearman "
            f"{report['spearman']:.2f} over {report['n_live']} live neurons (target >= 0.3: "
            f"{'pass' if ok['spearman'] else 'FAIL'}).",
            f"(2) {report['n_detectors']} neurons detect the '{concept}' artifact "
            f"(AUC >= 0.95): within- vs between-distance AUC "
            f"{report['within_between_auc']:.2f} (target >= 0.8: "
            f"{'pass' if ok['within_between'] else 'FAIL'}).",
            f"(3) Detectors as outliers: LOF-score AUC {report['outlier_auc']:.2f}, "
            f"{report['detectors_in_top']} of them among the top {report['n_detectors']} "
            f"LOF scores, {sum(int(n) in det for n in top['neuron'])} in the top 8 above "
            f"({'pass' if ok['outliers'] else 'FAIL'}).",
        ]
    return {
        "title": "DORA: data-agnostic outlier neurons",
        "summary_lines": lines,
        "figures": [result.plot()],
        "result": result,
        "validation": report,
        "labels": labels,
    }
