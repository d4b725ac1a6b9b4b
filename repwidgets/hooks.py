"""The one way repwidgets reaches inside a model: forward hooks that always come off.

Every module that needs a layer's output (or input) uses this module: the session's
extraction, DORA's signal optimisation, concept relevance and concept maps, probe
output functions for TRAK. A hook is registered for the length of a ``with`` block
and removed in ``finally``, so an exception in the model (or a stopped forward pass)
never leaves a hook behind.

Example:
    >>> model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    >>> layer_output(model, model[1], torch.ones(5, 4)).shape
    torch.Size([5, 3])
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["Capture", "StopForward", "first_tensor", "hooked", "layer_output", "no_grad_if"]


class StopForward(Exception):
    """Raised by a hook to end a forward pass once the layer of interest has run."""


def first_tensor(output: Any, layer: str = "") -> Tensor:
    """The activation tensor in a module's output: the output itself, or the first item
    of a tuple or list (as attention blocks and RNNs return).

    Raises a TypeError naming the layer when there is no tensor to take.
    """
    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    if not isinstance(output, Tensor):
        where = f"Layer {layer!r}" if layer else "The layer"
        raise TypeError(
            f"{where} returns {type(output).__name__}, not a tensor; pick a layer whose "
            "output is an activation tensor."
        )
    return output


@contextlib.contextmanager
def hooked(module: nn.Module, hook: Callable, *, pre: bool = False) -> Iterator[Any]:
    """Register ``hook`` on ``module`` for the block (a pre-hook with ``pre=True``).

    ``hook`` has PyTorch's signature: ``hook(module, inputs, output)`` (it may return a
    replacement output) or, as a pre-hook, ``hook(module, inputs)``. It is removed when
    the block ends, however it ends.
    """
    handle = module.register_forward_pre_hook(hook) if pre else module.register_forward_hook(hook)
    try:
        yield handle
    finally:
        handle.remove()


class Capture:
    """Keep what a layer sees during forward passes: its output, or its first input.

    Args:
        module: the layer.
        inputs: capture the layer's first input instead of its output (for example the
            features that enter a classification head).
        stop: end the forward pass right after the layer (later layers do not run).
        transform: applied to the captured tensor before it is kept (pooling, detach,
            a dtype change); its result is :attr:`value`.
        name: the layer's name, for error messages.

    Use it as a context manager (the hook comes off at the end of the block), or call
    :meth:`attach` and :meth:`detach` for a hook that lives across many calls.

    Example:
        >>> with Capture(model[0], stop=True) as cap:  # doctest: +SKIP
        ...     acts = cap.run(model, x)                # the forward pass stops at model[0]
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        inputs: bool = False,
        stop: bool = False,
        transform: Callable[[Tensor], Any] | None = None,
        name: str = "",
    ) -> None:
        self.module = module
        self.inputs = inputs
        self.stop = stop
        self.transform = transform
        self.name = name
        self.value: Any = None
        self._handle = None

    def _keep(self, tensor: Tensor) -> None:
        self.value = self.transform(tensor) if self.transform is not None else tensor
        if self.stop:
            raise StopForward

    def _output_hook(self, _module, _inputs, output) -> None:
        self._keep(first_tensor(output, self.name))

    def _input_hook(self, _module, inputs) -> None:
        self._keep(first_tensor(inputs, self.name))

    def attach(self) -> Capture:
        """Register the hook (once); :meth:`detach` removes it."""
        if self._handle is None:
            if self.inputs:
                self._handle = self.module.register_forward_pre_hook(self._input_hook)
            else:
                self._handle = self.module.register_forward_hook(self._output_hook)
        return self

    def detach(self) -> None:
        """Remove the hook (a no-op when it is not attached)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __enter__(self) -> Capture:
        return self.attach()

    def __exit__(self, *exc_info) -> None:
        self.detach()

    def run(self, forward: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``forward(*args, **kwargs)`` and return what the layer saw.

        With ``stop=True`` the forward pass ends at the layer. Raises a RuntimeError
        when the forward pass never reached the layer.
        """
        self.value = None
        try:
            forward(*args, **kwargs)
        except StopForward:
            if not self.stop:  # pragma: no cover - another Capture's stop
                raise
        if self.value is None:
            where = f"layer {self.name!r}" if self.name else "the hooked layer"
            raise RuntimeError(
                f"The forward pass never reached {where}: is it used in the model's forward()?"
            )
        return self.value


def layer_output(
    model: Callable[[Tensor], Any],
    module: nn.Module,
    x: Tensor,
    *,
    inputs: bool = False,
    transform: Callable[[Tensor], Any] | None = None,
    name: str = "",
) -> Any:
    """Run ``model(x)`` up to ``module`` and return its output (or first input).

    Later layers do not run. Gradients flow as usual unless the caller turns them off.
    """
    with Capture(module, inputs=inputs, stop=True, transform=transform, name=name) as cap:
        return cap.run(model, x)


@contextlib.contextmanager
def no_grad_if(flag: bool) -> Iterator[None]:
    """``torch.no_grad()`` when ``flag`` is true, else nothing."""
    if flag:
        with torch.no_grad():
            yield
    else:
        yield
