"""How DORA reaches a layer: images in, the layer's output out, the forward pass
stopped there, and ReLUs whose gradient switches silent units on.

All hooks go through :mod:`repwidgets.hooks` and come off when the call ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from repwidgets.config import Config
from repwidgets.hooks import hooked, layer_output
from repwidgets.layouts import AmbiguousLayout, Layout, choose_axis, feature_width, normalise_axis
from repwidgets.session import resolve_layer

__all__ = [
    "FrozenParams",
    "LayerSpec",
    "NeuronAxis",
    "RedirectedReLU",
    "check_neurons",
    "layer_fn",
    "model_device",
    "probe_channels",
    "probe_layout",
    "resolve",
    "unit_peaks",
    "unit_responses",
]

#: A layer's neuron axis as the tensor-level calls take it: an int (1 for ``[b, C, H, W]``,
#: -1 for ``[b, T, C]`` and ``[b, H, W, C]``), a :class:`~repwidgets.layouts.Layout`, or
#: None (found from the model, see :func:`probe_layout`).
NeuronAxis = int | Layout | None

#: A layer: a module of the model, its name, or a function images -> activations.
LayerSpec = nn.Module | str | Callable[[Tensor], Tensor]


def resolve(model: nn.Module, layer: LayerSpec) -> nn.Module | Callable:
    """The module (or function) that ``layer`` names; clear errors for anything else."""
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


class RedirectedReLU(torch.autograd.Function):
    """ReLU whose gradient does not vanish on a unit that is off everywhere.

    Forward: ``relu(z)``. Backward: the ReLU's gradient, except for (sample, neuron)
    maps with no active position, where the gradient passes through as for the identity
    (only where it pushes ``z`` up). An optimiser can then switch on a unit that is
    silent on its initial image; once the unit is on, this is the plain ReLU gradient.
    ``layout`` says where the neurons are (default: dim 1); ``apply(z, layout)``.
    """

    @staticmethod
    def forward(ctx, z: Tensor, layout: Layout | None = None) -> Tensor:
        ctx.save_for_backward(z)
        ctx.layout = layout
        return z.clamp(min=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (z,) = ctx.saved_tensors
        layout = ctx.layout if ctx.layout is not None else Layout(1, max(z.ndim, 2))
        z1, g1 = layout.neurons_first(z), layout.neurons_first(grad)  # [B, C, *positions]
        on = z1 > 0
        if z1.ndim > 2:
            off = ~on.flatten(2).any(dim=2)  # [B, C] maps without any active position
            off = off.view(*off.shape, *([1] * (z1.ndim - 2)))
        else:
            off = ~on
        # the objective is maximised, so the loss gradient is negative where it pushes up
        out = torch.where(on | (off & (g1 < 0)), g1, torch.zeros_like(g1))
        return out.movedim(1, layout.neuron_axis), None


def layer_fn(
    model: nn.Module,
    layer: LayerSpec,
    preprocess: Callable[[Tensor], Tensor] | None = None,
    redirect_relu: bool = False,
    layout: Layout | None = None,
) -> Callable[[Tensor], Tensor]:
    """A function images [B, C, H, W] -> the layer's output; the forward pass stops there.

    The images are in [0, 1]; the model sees ``preprocess(images)``. With
    ``redirect_relu`` and an ``nn.ReLU`` layer, the output is computed from the
    layer's input by :class:`RedirectedReLU`: same values, but a gradient also for
    units that are off everywhere (optimising such a unit would not move at all). A
    block with ``nn.ReLU`` modules inside (a ResNet stage) gets the same for each of
    them. ``layout`` (the layer's) tells the redirected ReLUs where the neurons are;
    an inner ReLU whose output has other dims keeps its neurons at dim 1.
    """
    target = resolve(model, layer)
    pre = preprocess or (lambda x: x)
    if not isinstance(target, nn.Module):
        return lambda x: target(pre(x))
    name = layer if isinstance(layer, str) else ""
    use_input = redirect_relu and isinstance(target, nn.ReLU)
    inner = _inner_relus(target) if redirect_relu and not use_input else []

    def run(x: Tensor) -> Tensor:
        with contextlib.ExitStack() as hooks:
            saved: dict[int, Tensor] = {}
            for relu in inner:
                hooks.enter_context(hooked(relu, _keep_input(saved), pre=True))
                hooks.enter_context(hooked(relu, _redirect_output(saved, layout)))
            if use_input:  # the ReLU's input, passed through the redirected ReLU
                redirect = lambda z: RedirectedReLU.apply(z, layout)  # noqa: E731
                return layer_output(
                    model, target, pre(x), inputs=True, transform=redirect, name=name
                )
            return layer_output(model, target, pre(x), name=name)

    return run


def _inner_relus(target: nn.Module) -> list[nn.Module]:
    """The ``nn.ReLU`` modules inside a block (none for a plain layer)."""
    return [m for m in target.modules() if m is not target and isinstance(m, nn.ReLU)]


def _keep_input(saved: dict[int, Tensor]) -> Callable:
    """Forward pre-hook: keep a ReLU's input and hand it a copy (an in-place ReLU would
    overwrite the input that the redirected gradient needs)."""

    def hook(module, inputs):
        saved[id(module)] = inputs[0]
        return (inputs[0].clone(), *inputs[1:])

    return hook


def _redirect_output(saved: dict[int, Tensor], layout: Layout | None) -> Callable:
    """Forward hook: the ReLU's output again, with :class:`RedirectedReLU`'s gradient."""

    def hook(module, _inputs, _output):
        z = saved.pop(id(module))
        return RedirectedReLU.apply(z, layout if layout and layout.ndim == z.ndim else None)

    return hook


def unit_responses(out: Tensor, layout: Layout | None = None) -> Tensor:
    """A layer's output -> each neuron's mean over positions or tokens [B, C].

    ``layout`` says where the neurons are (default: dim 1, ``[B, C, *spatial]``); a
    ``[B, C]`` output stays as it is. This is DORA's s-AMS objective.
    """
    return _checked_layout(out, layout).pool(out, "mean")


def unit_peaks(out: Tensor, layout: Layout | None = None) -> Tensor:
    """Each neuron's largest activation over positions or tokens [B, C] (see
    :func:`unit_responses`)."""
    return _checked_layout(out, layout).pool(out, "max")


def _checked_layout(out: Tensor, layout: Layout | None) -> Layout:
    """``layout``, or neurons at dim 1; clear errors for outputs without neurons."""
    if not isinstance(out, Tensor):
        raise TypeError(f"The layer returned {type(out).__name__}, not a tensor.")
    if out.ndim < 2:
        raise ValueError(
            f"The layer's output has shape {tuple(out.shape)}: it has no channel dimension, "
            "so there are no neurons to analyse. Pick a convolutional or linear layer."
        )
    return layout if layout is not None else Layout(1, out.ndim)


def probe_channels(
    fn: Callable[[Tensor], Tensor],
    input_shape: Sequence[int],
    device,
    layout: Layout | None = None,
) -> int:
    """Neurons of the layer behind ``fn``, from one grey image of ``input_shape``."""
    with torch.no_grad():
        out = fn(torch.full((1, *input_shape), 0.5, device=device))
    return int(unit_responses(out, layout).shape[1])


def probe_layout(
    model: nn.Module,
    layer: LayerSpec,
    input_shape: Sequence[int],
    device,
    preprocess: Callable[[Tensor], Tensor] | None = None,
    neuron_axis: NeuronAxis = None,
) -> Layout:
    """Where ``layer``'s neurons are, from one grey image of ``input_shape`` [C, H, W].

    ``neuron_axis`` decides when given (an int such as 1 or -1, or a Layout). Otherwise
    the rule of :meth:`repwidgets.session.Session.layout` applies: the width of the last
    parametrised layer that ran up to the layer's output (the layer itself included)
    names the axis (:func:`repwidgets.layouts.choose_axis`). Where nothing tells (a
    function, or no such layer ran), the neurons are at dim 1.
    """
    if isinstance(neuron_axis, Layout):
        return neuron_axis
    target = resolve(model, layer)
    last: list = [None]
    with contextlib.ExitStack() as hooks, torch.no_grad():
        if isinstance(target, nn.Module) and neuron_axis is None:
            for module in model.modules():
                if module is not target and feature_width(module) is not None:
                    hooks.enter_context(hooked(module, _width_recorder(last)))
        out = layer_fn(model, layer, preprocess)(torch.full((1, *input_shape), 0.5, device=device))
    _checked_layout(out, None)
    if neuron_axis is not None:
        return Layout(normalise_axis(neuron_axis, out.ndim), out.ndim)
    if out.ndim == 2 or not isinstance(target, nn.Module):
        return Layout(1, out.ndim)
    width = feature_width(target) or last[0]
    name = layer if isinstance(layer, str) else type(target).__name__
    try:
        return Layout(choose_axis(name, tuple(out.shape), width), out.ndim)
    except AmbiguousLayout:
        return Layout(1, out.ndim)


def _width_recorder(last: list) -> Callable:
    """Forward hook noting the feature width of the parametrised layer that just ran."""

    def record(module, _inputs, _output):
        last[0] = feature_width(module)

    return record


def check_neurons(neurons: Sequence[int] | Tensor | None, n_channels: int) -> Tensor:
    """Channel ids as a LongTensor [k] (all channels for None); clear errors for ids out
    of range, duplicates, non-integers and fewer than two neurons."""
    if neurons is None:
        idx = torch.arange(n_channels)
    elif isinstance(neurons, (Config, dict)):
        raise TypeError("neurons must be channel indices; pass the settings as config=...")
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


class FrozenParams:
    """Turn off parameter gradients (only input gradients are needed) and eval mode;
    both are restored at the end of the block."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __enter__(self) -> FrozenParams:
        self.flags = [(p, p.requires_grad) for p in self.model.parameters()]
        self.training = self.model.training
        for p, _ in self.flags:
            p.requires_grad_(False)
        self.model.eval()
        return self

    def __exit__(self, *exc) -> None:
        for p, flag in self.flags:
            p.requires_grad_(flag)
        self.model.train(self.training)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); CPU for neither."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")
