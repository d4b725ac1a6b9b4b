"""Concept maps: where in an image a concept vector responds (``v^T A[:, h, w]``).

A layer's output is laid out on its positions by its :class:`~repwidgets.layouts.Layout`:
a convolution's ``[b, C, H, W]`` as it is, a channels-last ``[b, H, W, C]`` with the
neurons moved first, and a token layer's ``[b, T, C]`` as its patch tokens on their
square grid (``T = 1 + h*w`` with a class token first, or ``T = h*w``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from repwidgets.hooks import Capture
from repwidgets.layouts import Layout
from repwidgets.results import notebook_plot

from .result import ConceptResult

if TYPE_CHECKING:  # pragma: no cover
    from repwidgets.session import Session

__all__ = ["concept_map", "concept_map_activations", "plot_concept_maps", "spatial_maps"]


def spatial_maps(output: Tensor, layout: Layout) -> Tensor:
    """A layer's batched output as maps ``[b, C, h, w]`` over its positions.

    Convolution and channels-last outputs keep their grid; a token layer's patch tokens
    are laid on a square grid, dropping a leading class token when ``T = 1 + h*w``.

    Example:
        >>> spatial_maps(torch.zeros(2, 17, 6), Layout(neuron_axis=2, ndim=3)).shape
        torch.Size([2, 6, 4, 4])
    """
    x = layout.neurons_first(output)
    if layout.kind == "flat" or x.ndim not in (3, 4):
        raise ValueError(
            f"Concept maps need a layer with positions ([b, C, H, W], [b, H, W, C] or tokens "
            f"[b, T, C]); this layer's output is {tuple(output.shape)} ({layout.kind}). Pick "
            "a convolutional block or a transformer block."
        )
    if x.ndim == 4:
        return x
    T = x.shape[2]
    for drop in (1, 0):
        side = math.isqrt(max(T - drop, 0))
        if side > 0 and side * side == T - drop:
            return x[:, :, drop:].reshape(x.shape[0], x.shape[1], side, side)
    raise ValueError(
        f"The token layer's {T} tokens cannot be laid on a square grid of patches "
        "(expected h*w tokens, or 1 class token + h*w). Models with extra tokens "
        "(registers, a distillation token) or non-square images need the maps made by "
        "hand: concept_map_activations(A, vector) on A [b, C, h, w]."
    )


def concept_map_activations(
    A: Tensor, vector: Tensor, size: tuple[int, int] | None = None
) -> Tensor:
    """Spatial concept maps ``v^T A[:, h, w]``, optionally upsampled (bilinear) to ``size``.

    Args:
        A: activation maps [b, C, H, W].
        vector: concept vector [C].
        size: output (height, width), e.g. the input image size.

    Returns:
        [b, H', W'] float32.

    Example:
        >>> concept_map_activations(torch.ones(2, 3, 4, 4), torch.ones(3), (8, 8)).shape
        torch.Size([2, 8, 8])
    """
    if A.ndim != 4:
        raise ValueError(
            f"Concept maps need spatial activations [b, C, H, W]; got shape {tuple(A.shape)}. "
            "Pick a convolutional layer."
        )
    vector = torch.as_tensor(vector, dtype=A.dtype, device=A.device).reshape(-1)
    if vector.shape[0] != A.shape[1]:
        raise ValueError(
            f"The vector has {vector.shape[0]} entries but A has {A.shape[1]} channels."
        )
    maps = torch.einsum("c,bchw->bhw", vector, A)
    if size is not None and tuple(size) != tuple(maps.shape[1:]):
        maps = F.interpolate(maps[:, None], size=tuple(size), mode="bilinear", align_corners=False)
        maps = maps[:, 0]
    return maps.float()


def concept_map(
    sess: Session,
    result: ConceptResult,
    concept: int,
    indices: Sequence[int] | Tensor | None = None,
    upsample: bool = True,
) -> Tensor:
    """Spatial concept maps of ``concept`` over samples of the result's split.

    Runs the model on the images of ``indices`` (default: the concept's 8 top samples),
    captures the layer's maps A [b, C, H, W] (tokens on their patch grid, see
    :func:`spatial_maps`) and returns ``v^T A[:, h, w]`` for the
    concept vector v, upsampled to the input size (CPU tensor [b, H, W]).

    Example:
        >>> maps = rw.concepts.concept_map(sess, r, 0)   # doctest: +SKIP
    """
    if result.layer is None or result.split is None:
        raise ValueError(
            "This result was computed from tensors, not from a session layer: use "
            "concept_map_activations(A, r.vectors[concept]) with the layer's maps."
        )
    j = result._check_concept(concept)
    if indices is None:
        indices = result.top_samples(j, 8)
    idx = [int(i) for i in torch.as_tensor(indices).reshape(-1).tolist()]
    images = sess.images(idx, split=result.split)
    size = tuple(images.shape[-2:]) if upsample else None
    vector = result.vectors[j]
    layout = sess.layout(result.layer, result.neuron_axis)
    outs = []
    capture = Capture(sess.module(result.layer), name=result.layer)
    with capture, torch.no_grad():
        for start in range(0, len(idx), sess.batch_size):
            A = capture.run(sess.forward, images[start : start + sess.batch_size])
            A = spatial_maps(A.detach().float(), layout)
            if result.centered:
                A = A - result.mean.to(A.device)[None, :, None, None]
            outs.append(concept_map_activations(A, vector.to(A.device), size).cpu())
    if not outs:
        return torch.zeros(0, *images.shape[-2:])
    return torch.cat(outs)


@notebook_plot
def plot_concept_maps(
    sess: Session,
    result: ConceptResult,
    concept: int,
    indices: Sequence[int] | Tensor | None = None,
    size: int = 120,
    alpha: float = 0.6,
):
    """Bokeh grid of samples with their concept map overlaid in red (see :func:`concept_map`).

    The maps of the shown samples are scaled together (0 to their common maximum), so a
    weak response looks weak; negative values are clipped.

    Example:
        >>> from bokeh.io import show
        >>> show(rw.concepts.plot_concept_maps(sess, r, 0))   # doctest: +SKIP
    """
    from bokeh.layouts import gridplot
    from bokeh.plotting import figure

    j = result._check_concept(concept)
    if indices is None:
        indices = result.top_samples(j, 8)
    idx = [int(i) for i in torch.as_tensor(indices).reshape(-1).tolist()]
    maps = concept_map(sess, result, j, idx).clamp_min(0)
    maps = maps / maps.max().clamp_min(1e-12)
    images = sess.images(idx, split=result.split).float().clamp(0, 1)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    red = torch.tensor([1.0, 0.0, 0.0])[:, None, None]
    figs = []
    for i, img, m in zip(idx, images[:, :3], maps):
        a = alpha * m[None]
        mix = (img * (1 - a) + red * a).clamp(0, 1)
        rgba = torch.cat([mix, torch.ones_like(mix[:1])]).mul(255).round().to(torch.uint8)
        arr = rgba.permute(1, 2, 0).flip(0).contiguous().numpy()  # bokeh's origin: bottom left
        H, W = arr.shape[:2]
        fig = figure(
            width=size,
            height=size,
            x_range=(0, W),
            y_range=(0, H),
            tools="",
            toolbar_location=None,
            title=f"#{i}",
        )
        fig.image_rgba(image=[arr.view(np.uint32).reshape(H, W)], x=0, y=0, dw=W, dh=H)
        fig.axis.visible = False
        fig.grid.visible = False
        figs.append(fig)
    return gridplot(figs, ncols=min(8, len(figs)), toolbar_location=None)
