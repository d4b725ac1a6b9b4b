"""Layer layouts: which axis of a layer's output holds its neurons, and how to pool it.

A convolution's output is ``[b, C, H, W]`` (neurons at dim 1); a transformer block's is
``[b, T, C]`` (tokens, neurons last); a ConvNeXt or Swin block may work channels-last,
``[b, H, W, C]``. Every method reads a layer as ``[b, C]`` (pooled) or as
``[b, C, *positions]`` (neurons first), so the axis must be known. It is found from the
layer itself: the width of the last layer with parameters that ran up to it (a
convolution's ``out_channels``, a linear layer's ``out_features``, a norm's features)
names the axis of that size; when two axes have it, the kind of that layer decides
(convolutions and batch norms: dim 1; linear layers and layer norms: the last dim).
Where nothing tells, :class:`AmbiguousLayout` names the choices and the override.

Example:
    >>> layout = Layout(neuron_axis=2, ndim=3)            # [b, T, C] tokens
    >>> layout.pool(torch.ones(4, 5, 8), "mean").shape
    torch.Size([4, 8])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from torch import Tensor, nn

__all__ = [
    "POOLS",
    "AmbiguousLayout",
    "Layout",
    "choose_axis",
    "feature_width",
    "normalise_axis",
]

#: Pools over the positions of a layer: mean, max, the class token (token layers), or
#: None for the raw output.
POOLS = ("mean", "max", "cls", None)

_FIRST = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.GroupNorm)
_FIRST = (*_FIRST, nn.modules.instancenorm._InstanceNorm)
_LAST = (nn.Linear, nn.LayerNorm, nn.MultiheadAttention, nn.Embedding)


class AmbiguousLayout(ValueError):
    """The neuron axis of a layer cannot be told from the model; pass ``neuron_axis=``."""


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where a layer's neurons are in its batched output of ``ndim`` dims.

    Attributes:
        neuron_axis: the axis of the neurons, counted from 0 with the batch at 0
            (1 for ``[b, C, H, W]``, 2 for ``[b, T, C]``, 3 for ``[b, H, W, C]``).
        ndim: the number of dims of the batched output.
    """

    neuron_axis: int
    ndim: int

    def __post_init__(self) -> None:
        if self.ndim < 2 or not 1 <= self.neuron_axis < self.ndim:
            raise ValueError(
                f"neuron_axis {self.neuron_axis} is not a non-batch axis of a "
                f"{self.ndim}-dim output."
            )

    @property
    def kind(self) -> str:
        """ "flat" ([b, C]), "channels_first", "tokens" ([b, T, C]) or "channels_last"."""
        if self.ndim == 2:
            return "flat"
        if self.neuron_axis == 1:
            return "channels_first"
        return "tokens" if self.ndim == 3 else "channels_last"

    def neurons_first(self, output: Tensor) -> Tensor:
        """``output`` with the neurons at dim 1: ``[b, C, *positions]``."""
        self._check(output)
        return output if self.neuron_axis == 1 else output.movedim(self.neuron_axis, 1)

    def pool(self, output: Tensor, pool: str | None) -> Tensor:
        """``output`` reduced to ``[b, C]``: the mean or max over positions, or the class
        token (the first token of a token layer); ``pool=None`` keeps it as it is."""
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}.")
        if pool is None:
            return output
        x = self.neurons_first(output)
        if x.ndim == 2:
            return x
        if pool == "cls":
            if self.kind != "tokens":
                raise ValueError(
                    f"pool='cls' takes the class token of a token layer [b, T, C]; this layer "
                    f"is {self.kind} (shape {tuple(output.shape)}). Use pool='mean' or 'max'."
                )
            return x[:, :, 0]
        flat = x.flatten(2)
        return flat.mean(dim=2) if pool == "mean" else flat.amax(dim=2)

    def _check(self, output: Tensor) -> None:
        if output.ndim != self.ndim:
            raise ValueError(
                f"The layer's output has {output.ndim} dims {tuple(output.shape)}, but its "
                f"layout was found for {self.ndim} dims; the layer changes its output's "
                "shape between calls, so pass neuron_axis= explicitly."
            )


def normalise_axis(axis: int, ndim: int) -> int:
    """``axis`` as a non-negative non-batch axis of an ``ndim``-dim output."""
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise TypeError(f"neuron_axis must be an int (e.g. 1 or -1), got {axis!r}.")
    positive = axis + ndim if axis < 0 else axis
    if not 1 <= positive < ndim:
        raise ValueError(
            f"neuron_axis={axis} is not a non-batch axis of a {ndim}-dim output "
            f"(choose from 1..{ndim - 1} or -1..-{ndim - 1})."
        )
    return positive


def feature_width(module: nn.Module) -> tuple[int, str] | None:
    """The number of features a parametrised layer outputs and where it keeps them
    ("first": dim 1, "last": the last dim), or None for a layer that does not say."""
    if isinstance(module, nn.modules.conv._ConvNd):
        return module.out_channels, "first"
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return module.num_features, "first"
    if isinstance(module, nn.modules.instancenorm._InstanceNorm):
        return module.num_features, "first"
    if isinstance(module, nn.GroupNorm):
        return module.num_channels, "first"
    if isinstance(module, nn.Linear):
        return module.out_features, "last"
    if isinstance(module, nn.LayerNorm):
        return int(module.normalized_shape[-1]), "last"
    if isinstance(module, nn.MultiheadAttention):
        return module.embed_dim, "last"
    if isinstance(module, nn.Embedding):
        return module.embedding_dim, "last"
    return None


def choose_axis(name: str, shape: Sequence[int], last_width: tuple[int, str] | None) -> int:
    """The neuron axis of a batched output of ``shape`` (batch first).

    Args:
        name: the layer's name, for the error.
        shape: the batched output's shape, e.g. (1, 197, 768).
        last_width: :func:`feature_width` of the last parametrised layer that ran up to
            this layer's output (None when none did).

    Raises :class:`AmbiguousLayout` naming the candidate axes when nothing decides.
    """
    ndim = len(shape)
    if ndim == 2:
        return 1
    if ndim < 2:
        raise ValueError(
            f"Layer {name!r} outputs a tensor of shape {tuple(shape)}: it has no neuron axis "
            "beside the batch. Pick a layer with an output of at least [batch, features]."
        )
    if last_width is not None:
        width, side = last_width
        axes = [a for a in range(1, ndim) if shape[a] == width]
        if len(axes) == 1:
            return axes[0]
        preferred = 1 if side == "first" else ndim - 1
        if preferred in axes:
            return preferred
    choices = ", ".join(
        f"neuron_axis={a} ({shape[a]} units)" for a in range(1, ndim) if a in (1, ndim - 1)
    )
    raise AmbiguousLayout(
        f"Cannot tell which axis of layer {name!r} (output {tuple(shape)}) holds its neurons: "
        f"{choices}. Pass it: rw.Session(..., neuron_axis={{{name!r}: -1}}) or "
        "sess.activations(layer, neuron_axis=-1)."
    )
