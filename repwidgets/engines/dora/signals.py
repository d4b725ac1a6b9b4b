"""s-AMS: synthetic activation-maximisation signals, made and fed back through the model.

:func:`generate_signals` optimises every (neuron, signal) pair of a layer together, one
image per batch element; :func:`analyze_signals` runs the signals through the model
again and hands the activation matrix ``A`` [k, k] to
:func:`~repwidgets.engines.dora.analyze_activations`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from repwidgets.engines import featurevis
from repwidgets.engines.dora.config import DoraConfig
from repwidgets.engines.dora.layer import (
    FrozenParams,
    LayerSpec,
    check_neurons,
    layer_fn,
    model_device,
    probe_channels,
    unit_responses,
)
from repwidgets.engines.dora.outliers import analyze_activations
from repwidgets.engines.dora.result import DoraResult

__all__ = ["analyze_signals", "generate_signals", "layer_responses"]

#: The s-AMS size of the tensor-level call when neither the config nor a session gives one.
DEFAULT_INPUT_SHAPE = (3, 64, 64)


def generate_signals(
    model: nn.Module,
    layer: LayerSpec,
    neurons: Sequence[int] | Tensor | None = None,
    config: DoraConfig | dict | None = None,
    *,
    device: torch.device | str | None = None,
    preprocess: Callable[[Tensor], Tensor] | None = None,
    memory_budget_mb: float = 1024,
    progress: bool = True,
    **overrides,
) -> Tensor:
    """Synthetic activation-maximisation signals (s-AMS) for neurons of a layer.

    All (neuron, signal) pairs are optimised together, one image per batch element,
    element ``e`` maximising the spatially averaged activation of its own neuron (conv
    maps are averaged over space; linear layers are used directly). For an ``nn.ReLU``
    layer, a unit that is off everywhere on its image still gets a gradient (passed
    through as if the ReLU were the identity, see
    :class:`~repwidgets.engines.dora.layer.RedirectedReLU`), so neurons silent on the
    initial grey image get signals too. Batches are as large as ``memory_budget_mb``
    allows (or the config's ``batch_size``). See
    :func:`repwidgets.engines.featurevis.visualize` for the optimisation.

    Args:
        model: the network (its parameters are not changed; it is put in eval mode).
        layer: a module of ``model``, its name, or a function images -> activations.
        neurons: channel indices (default: all channels of the layer).
        config: a :class:`DoraConfig` (or a dict of its settings); ``overrides`` change
            single settings: ``n_signals``, ``steps``, ``input_shape`` (default
            (3, 64, 64)), ``signal_size``, ``minimize``, ``lr``, ``optimizer``,
            ``weight_decay``, ``grad_clip``, ``decay``, ``transforms``,
            ``render_scale``, ``batch_size``, ``seed``.
        device: where to optimise (default: the model's device).
        preprocess: the model's input transform, applied to [0, 1] images.
        memory_budget_mb: memory for one optimisation batch (when ``batch_size`` is None).
        progress: show a progress bar.

    Returns:
        Signals [k, n_signals, C, H, W] in [0, 1] on ``device``.

    Example:
        >>> sig = generate_signals(model, "features.conv3", [0, 5], n_signals=2,
        ...                        steps=64)  # doctest: +SKIP
    """
    cfg = DoraConfig.resolve(config, overrides)
    input_shape = cfg.signal_shape(DEFAULT_INPUT_SHAPE)
    device = torch.device(device) if device is not None else model_device(model)
    fn = layer_fn(model, layer, preprocess, redirect_relu=True)
    with FrozenParams(model):
        idx = check_neurons(neurons, probe_channels(fn, input_shape, device))
        k, n = idx.numel(), int(cfg.n_signals)
        objective = _objective(fn, idx.to(device).repeat_interleave(n), cfg.minimize)
        batch_size = cfg.batch_size
        if batch_size is None:
            batch_size = featurevis.estimate_batch_size(
                objective, input_shape, device, memory_budget_mb, cfg.render_scale
            )
        images = featurevis.visualize(
            objective,
            k * n,
            input_shape,
            steps=int(cfg.steps),
            lr=cfg.lr,
            optimizer=cfg.optimizer,
            weight_decay=cfg.weight_decay,
            grad_clip=cfg.grad_clip,
            decay=cfg.decay,
            transforms=cfg.transforms_spec(),
            render_scale=cfg.render_scale,
            batch_size=batch_size,
            seed=cfg.seed,
            device=device,
            progress=progress,
            desc=f"s-AMS ({k} neurons x {n})",
        )
    return images.view(k, n, *input_shape)


def _objective(fn: Callable[[Tensor], Tensor], unit_of: Tensor, minimize: bool) -> Callable:
    """The objective of batch elements ``elements``: each one's own neuron's spatially
    averaged activation (``unit_of[e]`` is element e's channel), negated to minimise."""
    sign = -1.0 if minimize else 1.0

    def objective(x: Tensor, elements: Tensor) -> Tensor:
        resp = unit_responses(fn(x))
        return sign * resp[torch.arange(len(elements), device=resp.device), unit_of[elements]]

    return objective


def layer_responses(
    model: nn.Module,
    layer: LayerSpec,
    images: Tensor,
    preprocess: Callable[[Tensor], Tensor] | None = None,
    batch_size: int = 256,
) -> tuple[Tensor, Tensor]:
    """Spatial mean and spatial max of every channel of ``layer`` on ``images`` [m, C_in, H, W].

    Returns (mean [m, C], peak [m, C]) as float32 on the images' device.
    """
    fn = layer_fn(model, layer, preprocess)
    means, peaks = [], []
    with FrozenParams(model), torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            out = fn(images[start : start + batch_size])
            means.append(unit_responses(out).float())
            peaks.append((out if out.ndim == 2 else out.flatten(2).amax(dim=2)).float())
    return torch.cat(means), torch.cat(peaks)


def analyze_signals(
    model: nn.Module,
    layer: LayerSpec,
    signals: Tensor,
    neurons: Sequence[int] | Tensor | None = None,
    config: DoraConfig | dict | None = None,
    *,
    preprocess: Callable[[Tensor], Tensor] | None = None,
    batch_size: int = 256,
    layer_name: str | None = None,
    **overrides,
) -> DoraResult:
    """Feed s-AMS back through the model and analyse the activation matrix.

    Args:
        model, layer, preprocess: as in :func:`generate_signals`.
        signals: [k, n, C, H, W] images of the k neurons (``signals[i]`` belongs to
            ``neurons[i]``).
        neurons: channel indices of the k neurons (default ``0..k-1``).
        config, overrides: the analysis settings (see :func:`analyze_activations`).
        batch_size: images per forward pass (not the config's optimisation batch).
        layer_name: stored in the result.

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
    cfg = DoraConfig.resolve(config, overrides)
    k, n = signals.shape[:2]
    fn = layer_fn(model, layer, preprocess)
    device = model_device(model)
    n_channels = probe_channels(fn, tuple(signals.shape[2:]), device)
    idx = check_neurons(list(range(k)) if neurons is None else neurons, n_channels)
    if idx.numel() != k:
        raise ValueError(f"signals has {k} neurons but neurons lists {idx.numel()}.")
    flat = signals.reshape(k * n, *signals.shape[2:]).to(device)
    mean, peak = layer_responses(model, layer, flat, preprocess, batch_size)
    cols = idx.to(mean.device)
    A = mean.view(k, n, -1)[:, :, cols].mean(dim=1)
    rows = torch.arange(k, device=mean.device)
    own_peak = peak.view(k, n, -1)[rows, :, cols].amax(dim=1)
    result = analyze_activations(A, idx, cfg, self_peak=own_peak, layer=layer_name)
    result.signals = signals.detach().float().cpu()
    return result
