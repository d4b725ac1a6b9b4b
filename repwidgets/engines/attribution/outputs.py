"""Model output functions: the scalar f(z) whose parameter gradients TRAK attributes.

An output function turns one sample z = (x, y) into one differentiable number: the
class margin for classification, any function of the model's output, a linear
probe's logit on an inner layer (concept attribution) or one neuron's pooled
activation (per-neuron attribution); the last two share :class:`LayerOutput`. :func:`as_output_fn` turns
what a user passes (a name, a callable, an :class:`OutputFunction`) into one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from repwidgets.hooks import Capture
from repwidgets.layouts import Layout, normalise_axis
from repwidgets.session import resolve_layer

if TYPE_CHECKING:  # pragma: no cover
    from repwidgets.engines.attribution.probes import LinearProbe

__all__ = [
    "ClassMargin",
    "LayerOutput",
    "LogitOutput",
    "NeuronActivation",
    "OutputFunction",
    "ProbeLogit",
    "as_output_fn",
]


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
        """Prepare for ``model`` (e.g. hook a layer); undone by :meth:`detach`."""

    def detach(self) -> None:
        """Undo :meth:`attach`."""

    @contextlib.contextmanager
    def attached(self, model: nn.Module, device: torch.device) -> Iterator[OutputFunction]:
        """:meth:`attach` for the length of a ``with`` block."""
        self.attach(model, device)
        try:
            yield self
        finally:
            self.detach()

    def __call__(self, forward: Callable, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def out_to_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """TRAK's Q term [B] (1 - probability of the correct label) from output values [B]."""
        return torch.sigmoid(-out)


class ClassMargin(OutputFunction):
    """The class margin ``logit_y - logsumexp_{k != y} logit_k`` (TRAK's classification output).

    ``sigmoid(margin)`` equals the softmax probability of class y, so
    ``out_to_loss = 1 - p(y)``.
    """

    name = "margin"

    def __call__(self, forward: Callable, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
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

    def __init__(
        self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], name: str = ""
    ) -> None:
        if not callable(fn):
            raise TypeError(f"output_fn must be callable, got {type(fn).__name__}.")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "output")

    def __call__(self, forward: Callable, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.fn(forward(x.unsqueeze(0))[0], y)


class LayerOutput(OutputFunction):
    """Base of the outputs read at an inner layer: the forward pass stops there.

    ``attach`` hooks the layer with a stopping :class:`Capture` (later layers cannot
    change the output, so they are not run); :meth:`layer_output` runs one sample up to
    the layer and :meth:`pooled` pools a batched output to ``[b, C]`` on its neuron axis
    (1 for convolutions, -1 for token and channels-last layers: a session's
    ``sess.layout(layer).neuron_axis``) as the session pools it.
    """

    def __init__(self, layer: str, pool: str = "mean", neuron_axis: int = 1) -> None:
        if pool not in ("mean", "max", "cls"):
            raise ValueError(f"pool must be 'mean', 'max' or 'cls', got {pool!r}.")
        self.layer = layer
        self.pool = pool
        self.neuron_axis = int(neuron_axis)
        self._capture: Capture | None = None

    def attach(self, model: nn.Module, device: torch.device) -> None:
        """Hook the layer so that forward passes stop there (see :class:`Capture`)."""
        module = resolve_layer(model, self.layer)
        self.detach()
        self._capture = Capture(module, stop=True, name=self.layer).attach()

    def detach(self) -> None:
        if self._capture is not None:
            self._capture.detach()
            self._capture = None

    def layer_output(self, forward: Callable, x: torch.Tensor) -> torch.Tensor:
        """The layer's pooled output ``[C]`` for one sample ``x`` (no batch dimension)."""
        if self._capture is None:
            raise RuntimeError(
                f"{type(self).__name__} for layer {self.layer!r} is not attached to a model: "
                "call attach(model, device) (or use it inside attached(model, device))."
            )
        out = self._capture.run(forward, x.unsqueeze(0))
        return self.pooled(out)[0]

    def pooled(self, output: torch.Tensor) -> torch.Tensor:
        """The layer's batched output [b, ...] pooled to [b, C] on its neuron axis."""
        if output.ndim < 2:
            raise ValueError(
                f"Layer {self.layer!r} outputs shape {tuple(output.shape)}: no neuron axis."
            )
        layout = Layout(normalise_axis(self.neuron_axis, output.ndim), output.ndim)
        return layout.pool(output, self.pool)


class ProbeLogit(LayerOutput):
    """A linear probe's logit on a layer's pooled activations, composed with the network.

    ``f(x, y) = s(y) * (pool(a_layer(x)) @ weight + bias)`` with ``s(y) = 2y - 1`` when
    ``signed`` (y = 1: the sample carries the concept), so that ``sigmoid(f)`` is the
    probability the probe gives to the sample's own concept label. The forward pass
    stops at the layer (later layers cannot change the output).

    Args:
        layer: module name, as in ``model.named_modules()``.
        weight: [C] probe direction; bias: scalar.
        pool: ``"mean"`` or ``"max"`` over positions (or tokens), or ``"cls"`` (a token
            layer's class token), as the probe was fitted.
        signed: sign the logit by the label (True for TRAK's training features).
        neuron_axis: the axis of the layer's batched output that holds the neurons (1
            for convolutions, -1 for token and channels-last layers: a session's
            ``sess.layout(layer).neuron_axis``); pooled as the session pools it.
    """

    name = "probe"

    def __init__(
        self,
        layer: str,
        weight: torch.Tensor,
        bias: float,
        pool: str = "mean",
        signed: bool = True,
        neuron_axis: int = 1,
    ) -> None:
        super().__init__(layer, pool=pool, neuron_axis=neuron_axis)
        self.weight = torch.as_tensor(weight, dtype=torch.float32).reshape(-1)
        self.bias = float(bias)
        self.signed = signed
        self._w = self.weight

    @classmethod
    def from_probe(
        cls, layer: str, probe: LinearProbe, pool: str = "mean", neuron_axis: int = 1
    ) -> ProbeLogit:
        """The (label-signed) logit of a fitted probe at ``layer``."""
        return cls(layer, probe.weight, probe.bias, pool=pool, neuron_axis=neuron_axis)

    def attach(self, model: nn.Module, device: torch.device) -> None:
        super().attach(model, device)
        self._w = self.weight.to(device)

    def __call__(self, forward: Callable, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        act = self.layer_output(forward, x)
        if act.shape[0] != self._w.shape[0]:
            raise ValueError(
                f"The probe has {self._w.shape[0]} weights but layer {self.layer!r} has "
                f"{act.shape[0]} channels: fit the probe on this layer's activations."
            )
        logit = act @ self._w + self.bias
        if self.signed:
            logit = logit * (2.0 * y.to(logit.dtype) - 1.0)
        return logit


class NeuronActivation(LayerOutput):
    """One neuron's pooled activation at a layer: ``f(x) = pool(a_layer(x))[unit]``.

    The output of per-neuron attribution: TRAK with it scores the training samples by
    how much they pushed this neuron's activation up on the targets. The label ``y`` is
    not used, and the Q term is 1 (the network was never trained on this output, so
    there is no loss to weight by).

    Args:
        layer: module name, as in ``model.named_modules()``.
        unit: the neuron (index on the layer's neuron axis).
        pool: ``"mean"`` or ``"max"`` over positions (or tokens), or ``"cls"``.
        neuron_axis: the axis of the layer's batched output that holds the neurons (see
            :class:`LayerOutput`).

    Example:
        >>> f = NeuronActivation("features.conv4", unit=12, pool="mean")
    """

    name = "neuron"

    def __init__(self, layer: str, unit: int, pool: str = "mean", neuron_axis: int = 1) -> None:
        super().__init__(layer, pool=pool, neuron_axis=neuron_axis)
        self.unit = int(unit)

    def __call__(self, forward: Callable, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        act = self.layer_output(forward, x)
        if not -act.shape[0] <= self.unit < act.shape[0]:
            raise ValueError(
                f"unit {self.unit} is out of range: layer {self.layer!r} has {act.shape[0]} "
                "neurons on its neuron axis."
            )
        return act[self.unit]

    def out_to_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Q = 1 for every sample (no loss belongs to a neuron's activation)."""
        return torch.ones_like(out)


def as_output_fn(output_fn: Any) -> OutputFunction:
    """An :class:`OutputFunction` from ``"margin"`` (or None), an instance, or a callable
    ``fn(model_output, y) -> scalar``."""
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
