"""SmallCNN: the default model, a four-block convolutional network with readable layer names.

Layer names (what ``Session.layers()`` lists and hooks use)::

    features.conv1 -> features.relu1 -> features.pool1     (S   -> S/2)
    features.conv2 -> features.relu2 -> features.pool2     (S/2 -> S/4)
    features.conv3 -> features.relu3 -> features.pool3     (S/4 -> S/8)
    features.conv4 -> features.relu4                       (S/8, the last spatial map)
    pool (adaptive average to 1 x 1) -> fc (the last Linear; its input is the
    penultimate representation)

The model takes images in [0, 1]; the input normalisation (``(x - mean) / std``, stored as
buffers) happens inside, so every method can feed it plain images.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["SmallCNN"]


class SmallCNN(nn.Module):
    """A small CNN for [0, 1] images of any size >= 8 pixels.

    Args:
        n_classes: number of outputs of ``fc``.
        in_channels: image channels (3 for RGB).
        widths: output channels of conv1..conv4.
        mean, std: per-channel input normalisation (a number or one per channel).
        batchnorm: insert ``features.bn1..bn4`` after each convolution.

    Input [B, in_channels, H, W] in [0, 1] -> logits [B, n_classes].

    Example:
        >>> model = SmallCNN(4)
        >>> model(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 4])
    """

    def __init__(
        self,
        n_classes: int,
        in_channels: int = 3,
        widths: Sequence[int] = (32, 64, 128, 128),
        mean: float | Sequence[float] = 0.5,
        std: float | Sequence[float] = 0.25,
        batchnorm: bool = False,
    ):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) != 4 or min(widths) < 1:
            raise ValueError(f"widths must be 4 positive channel counts; got {widths}.")
        if int(n_classes) < 1:
            raise ValueError(f"n_classes must be >= 1; got {n_classes}.")
        self.n_classes = int(n_classes)
        self.in_channels = int(in_channels)
        self.widths = widths
        self.batchnorm = bool(batchnorm)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        prev = self.in_channels
        for i, w in enumerate(widths, start=1):
            layers[f"conv{i}"] = nn.Conv2d(prev, w, kernel_size=3, padding=1)
            if batchnorm:
                layers[f"bn{i}"] = nn.BatchNorm2d(w)
            layers[f"relu{i}"] = nn.ReLU()
            if i < 4:
                layers[f"pool{i}"] = nn.MaxPool2d(2)
            prev = w
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(prev, self.n_classes)
        self.register_buffer("mean", _per_channel(mean, self.in_channels))
        self.register_buffer("std", _per_channel(std, self.in_channels))

    def config(self) -> dict:
        """JSON-able constructor arguments (used in checkpoint cache keys)."""
        return {
            "arch": "SmallCNN",
            "n_classes": self.n_classes,
            "in_channels": self.in_channels,
            "widths": list(self.widths),
            "mean": self.mean.flatten().tolist(),
            "std": self.std.flatten().tolist(),
            "batchnorm": self.batchnorm,
        }

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images -> normalised network input."""
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"SmallCNN expects images [B, {self.in_channels}, H, W]; got shape "
                f"{tuple(x.shape)}."
            )
        h = self.features(self.normalize(x))
        return self.fc(torch.flatten(self.pool(h), 1))


def _per_channel(value: float | Sequence[float], channels: int) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float32).flatten()
    if t.numel() == 1:
        t = t.repeat(channels)
    if t.numel() != channels:
        raise ValueError(f"Expected 1 or {channels} normalisation values; got {t.numel()}.")
    return t.reshape(1, channels, 1, 1)
