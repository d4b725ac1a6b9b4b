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
    NeuronAxis,
    check_neurons,
    layer_fn,
    model_device,
    probe_channels,
    probe_layout,
    unit_peaks,
    unit_responses,
)
from repwidgets.engines.dora.outliers import analyze_activations
from repwidgets.engines.dora.result import DoraResult
from repwidgets.layouts import Layout

__all__ = [
    "analyze_signals",
    "generate_signals",
    "layer_responses",
    "signal_memory_mb",
    "signal_objective",
]

#: The s-AMS size of the tensor-level call when neither the config nor a session gives one.
DEFAULT_INPUT_SHAPE = (3, 64, 64)

#: Memory (MiB) for one optimisation chunk on a CPU (or a device that does not say).
CPU_MEMORY_MB = 1024.0

#: Share of a GPU's free memory that one optimisation chunk may take.
GPU_MEMORY_SHARE = 0.5


def signal_memory_mb(device: torch.device | str, cap_mb: float | None = None) -> float:
    """Memory (MiB) for one chunk of s-AMS optimisation on ``device``.

    On a CUDA device: :data:`GPU_MEMORY_SHARE` of its free memory now; elsewhere
    :data:`CPU_MEMORY_MB`. ``cap_mb`` (when given) bounds it on a CPU.
    """
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info(device)
        return GPU_MEMORY_SHARE * free / 2**20
    return min(CPU_MEMORY_MB, cap_mb) if cap_mb is not None else CPU_MEMORY_MB


def generate_signals(
    model: nn.Module,
    layer: LayerSpec,
    neurons: Sequence[int] | Tensor | None = None,
    config: DoraConfig | dict | None = None,
    *,
    device: torch.device | str | None = None,
    preprocess: Callable[[Tensor], Tensor] | None = None,
    neuron_axis: NeuronAxis = None,
    memory_budget_mb: float | None = None,
    progress: bool = True,
    **overrides,
) -> Tensor:
    """Synthetic activation-maximisation signals (s-AMS) for neurons of a layer.

    All (neuron, signal) pairs are optimised together, one image per batch element,
    element ``e`` maximising the mean of its own neuron's activation over the layer's
    positions or tokens (the axis of the neurons is the layer's layout: dim 1 for
    convolutions, the last dim for token layers ``[b, T, C]`` and channels-last blocks
    ``[b, H, W, C]``; ``[b, C]`` layers are used directly). For an ``nn.ReLU``
    layer, a unit that is off everywhere on its image still gets a gradient (passed
    through as if the ReLU were the identity, see
    :class:`~repwidgets.engines.dora.layer.RedirectedReLU`), so neurons silent on the
    initial grey image get signals too. See
    :func:`repwidgets.engines.featurevis.visualize` for the optimisation.

    Big layers are optimised in chunks of whole neurons, each as large as
    ``memory_budget_mb`` allows (measured from one probe step) or the config's
    ``batch_size``; the progress bar counts the steps of all chunks. Every image's
    start and random transforms depend on its index only, so the chunk size does not
    change the signals.

    Args:
        model: the network (its parameters are not changed; it is put in eval mode).
        layer: a module of ``model``, its name, or a function images -> activations.
        neurons: neuron indices (default: all neurons of the layer).
        config: a :class:`DoraConfig` (or a dict of its settings); ``overrides`` change
            single settings: ``n_signals``, ``steps``, ``input_shape`` (default
            (3, 64, 64)), ``signal_size``, ``minimize``, ``lr``, ``optimizer``,
            ``weight_decay``, ``grad_clip``, ``decay``, ``transforms``,
            ``render_scale``, ``batch_size``, ``objective``, ``seed``.
        device: where to optimise (default: the model's device).
        preprocess: the model's input transform (for example
            ``torchvision.transforms.Normalize(mean, std)``): the signals are optimised
            and returned in [0, 1] pixel space and the model sees ``preprocess(signal)``.
        neuron_axis: the axis of the layer's neurons (1, -1, or a
            :class:`~repwidgets.layouts.Layout`); None: found from the model
            (:func:`~repwidgets.engines.dora.layer.probe_layout`), dim 1 where nothing
            tells.
        memory_budget_mb: memory for one optimisation chunk (when ``batch_size`` is
            None); None: :func:`signal_memory_mb` of the device (half the free memory
            of a GPU, 1 GiB on a CPU).
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
    with FrozenParams(model):
        layout = probe_layout(model, layer, input_shape, device, preprocess, neuron_axis)
        fn = layer_fn(model, layer, preprocess, redirect_relu=True, layout=layout)
        idx = check_neurons(neurons, probe_channels(fn, input_shape, device, layout))
        k, n = idx.numel(), int(cfg.n_signals)
        objective = signal_objective(
            fn, idx.to(device).repeat_interleave(n), cfg.minimize, layout, cfg.objective
        )
        budget = memory_budget_mb if memory_budget_mb is not None else signal_memory_mb(device)
        batch_size = chunk_size(cfg, objective, input_shape, device, budget)
        n_chunks = -(-k * n // batch_size)
        chunks = f", {n_chunks} chunks of {batch_size // n} neurons" if n_chunks > 1 else ""
        images = optimise_signals(
            cfg,
            objective,
            k * n,
            input_shape,
            device,
            batch_size,
            progress=progress,
            desc=f"s-AMS ({k} neurons x {n}{chunks})",
        )
    return images.view(k, n, *input_shape)


def chunk_size(
    cfg: DoraConfig,
    objective: Callable,
    input_shape: tuple[int, ...],
    device: torch.device,
    budget_mb: float,
) -> int:
    """Images optimised at once: ``cfg.batch_size``, else what fits ``budget_mb``,
    rounded down to whole neurons (all ``cfg.n_signals`` images of a neuron together)."""
    batch_size = cfg.batch_size
    if batch_size is None:
        batch_size = featurevis.estimate_batch_size(
            objective, input_shape, device, budget_mb, cfg.render_scale
        )
    return _whole_neurons(batch_size, int(cfg.n_signals))


def optimise_signals(
    cfg: DoraConfig,
    objective: Callable,
    n_images: int,
    input_shape: tuple[int, ...],
    device: torch.device,
    batch_size: int,
    *,
    progress: bool,
    desc: str,
) -> torch.Tensor:
    """The s-AMS optimisation of ``n_images`` images [n_images, C, H, W] with ``cfg``'s
    optimiser, parametrisation and transforms; ``objective(x, elements)`` scores each."""
    return featurevis.visualize(
        objective,
        n_images,
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
        desc=desc,
    )


def _whole_neurons(batch_size: int, n_signals: int) -> int:
    """``batch_size`` rounded down to whole neurons (all ``n_signals`` images of a
    neuron in one chunk) where it holds at least one neuron."""
    return max(1, batch_size // n_signals) * n_signals if batch_size >= n_signals else batch_size


def signal_objective(
    fn: Callable[[Tensor], Tensor],
    unit_of: Tensor,
    minimize: bool,
    layout: Layout | None = None,
    objective: str = "mean",
) -> Callable:
    """The objective of batch elements ``elements``: each one's own neuron's mean
    activation over positions or tokens (``unit_of[e]`` is element e's neuron, ``layout``
    says where the neurons are), negated to minimise.

    ``objective="contrast"`` subtracts the mean over all the layer's neurons of their
    own means: the image is pushed to drive its neuron above the rest of the layer,
    not the whole layer with it.
    """
    sign = -1.0 if minimize else 1.0
    contrast = objective == "contrast"

    def values(x: Tensor, elements: Tensor) -> Tensor:
        resp = unit_responses(fn(x), layout)
        own = resp[torch.arange(len(elements), device=resp.device), unit_of[elements]]
        return sign * (own - resp.mean(dim=1) if contrast else own)

    return values


def layer_responses(
    model: nn.Module,
    layer: LayerSpec,
    images: Tensor,
    preprocess: Callable[[Tensor], Tensor] | None = None,
    batch_size: int = 256,
    layout: Layout | None = None,
) -> tuple[Tensor, Tensor]:
    """Mean and max over positions or tokens of every neuron of ``layer`` on ``images``
    [m, C_in, H, W] (``layout``: where the neurons are, default dim 1).

    Returns (mean [m, C], peak [m, C]) as float32 on the images' device.
    """
    fn = layer_fn(model, layer, preprocess)
    means, peaks = [], []
    with FrozenParams(model), torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            out = fn(images[start : start + batch_size])
            means.append(unit_responses(out, layout).float())
            peaks.append(unit_peaks(out, layout).float())
    return torch.cat(means), torch.cat(peaks)


def analyze_signals(
    model: nn.Module,
    layer: LayerSpec,
    signals: Tensor,
    neurons: Sequence[int] | Tensor | None = None,
    config: DoraConfig | dict | None = None,
    *,
    preprocess: Callable[[Tensor], Tensor] | None = None,
    neuron_axis: NeuronAxis = None,
    batch_size: int = 256,
    layer_name: str | None = None,
    **overrides,
) -> DoraResult:
    """Feed s-AMS back through the model and analyse the activation matrix.

    Args:
        model, layer, preprocess, neuron_axis: as in :func:`generate_signals`.
        signals: [k, n, C, H, W] images of the k neurons (``signals[i]`` belongs to
            ``neurons[i]``).
        neurons: channel indices of the k neurons (default ``0..k-1``).
        config, overrides: the analysis settings (see :func:`analyze_activations`).
        batch_size: images per forward pass (not the config's optimisation batch).
        layer_name: stored in the result.

    Returns:
        DoraResult with ``A[i, j]`` = mean over the n signals of neuron i of neuron j's
        mean activation over positions or tokens (the axis of :func:`generate_signals`).
        A neuron is also dead when its activation never exceeds 0 anywhere on its own
        signals.
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
    shape = tuple(signals.shape[2:])
    with FrozenParams(model):
        layout = probe_layout(model, layer, shape, device, preprocess, neuron_axis)
    n_channels = probe_channels(fn, shape, device, layout)
    idx = check_neurons(list(range(k)) if neurons is None else neurons, n_channels)
    if idx.numel() != k:
        raise ValueError(f"signals has {k} neurons but neurons lists {idx.numel()}.")
    flat = signals.reshape(k * n, *signals.shape[2:]).to(device)
    mean, peak = layer_responses(model, layer, flat, preprocess, batch_size, layout)
    cols = idx.to(mean.device)
    A = mean.view(k, n, -1)[:, :, cols].mean(dim=1)
    rows = torch.arange(k, device=mean.device)
    own_peak = peak.view(k, n, -1)[rows, :, cols].amax(dim=1)
    result = analyze_activations(A, idx, cfg, self_peak=own_peak, layer=layer_name)
    result.signals = signals.detach().float().cpu()
    return result
