"""Small networks of other architectures than :class:`~repwidgets.models.cnn.SmallCNN`.

They exist so that every method can be checked on more than one kind of network (other
normalisation, activations and block structure). Each takes [0, 1] images, normalises
them inside (per-channel mean and std buffers), ends in ``pool`` (adaptive average to
1 x 1) and ``fc`` (the last Linear), and has readable layer names:

- :class:`NarrowResNet`: a ResNet with torchvision's ``BasicBlock``, batch norm and
  ReLU, narrow widths, a 3 x 3 stem without max pooling (``stem``, ``layer1..layer4``);
- :class:`PlainVGG`: a VGG-style stack of two 3 x 3 convolutions per block, no
  normalisation layers (optionally weight-standardised convolutions), GELU activations
  (``features.conv{b}_{i}``, ``features.act{b}_{i}``);
- :class:`GroupNormNet`: convolutions with GroupNorm and SiLU, max pooling between
  blocks (``blocks.{b}.conv``, ``blocks.{b}.norm``, ``blocks.{b}.act``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

__all__ = ["GroupNormNet", "NarrowResNet", "PlainVGG"]

#: Per-channel statistics of the generated shapes images (approximate).
_MEAN = (0.45, 0.45, 0.45)
_STD = (0.25, 0.25, 0.25)


class _Normalised(nn.Module):
    """Base: stores the input normalisation and checks the input's shape."""

    def __init__(self, in_channels: int, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.in_channels = int(in_channels)
        self.register_buffer("mean", _per_channel(mean, self.in_channels))
        self.register_buffer("std", _per_channel(std, self.in_channels))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images -> normalised network input."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects images [B, {self.in_channels}, H, W]; got "
                f"shape {tuple(x.shape)}."
            )
        return (x - self.mean) / self.std

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Last feature map -> logits (global average pool, then ``fc``)."""
        return self.fc(torch.flatten(self.pool(h), 1))


class NarrowResNet(_Normalised):
    """A narrow ResNet built from torchvision's ``BasicBlock`` (batch norm, ReLU).

    Layers: ``stem`` (3 x 3 conv with stride ``stem_stride``, BN, ReLU), ``layer1`` (stride 1),
    ``layer2..layer4`` (stride 2, 1 x 1 projection shortcuts), ``pool``, ``fc``. Each
    ``layer{i}`` holds ``blocks`` basic blocks; its output is the post-ReLU sum.

    Example:
        >>> NarrowResNet(4)(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 4])
    """

    def __init__(
        self,
        n_classes: int,
        in_channels: int = 3,
        widths: Sequence[int] = (16, 32, 64, 128),
        blocks: int = 1,
        stem_stride: int = 2,
        mean: Sequence[float] = _MEAN,
        std: Sequence[float] = _STD,
    ):
        super().__init__(in_channels, mean, std)
        widths = [int(w) for w in widths]
        self.stem = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(
                    in_channels, widths[0], 3, stride=int(stem_stride), padding=1, bias=False
                ),
                bn=nn.BatchNorm2d(widths[0]),
                relu=nn.ReLU(),
            )
        )
        prev = widths[0]
        for i, w in enumerate(widths, start=1):
            stride = 1 if i == 1 else 2
            stage = []
            for b in range(int(blocks)):
                down = None
                if b == 0 and (stride != 1 or prev != w):
                    down = nn.Sequential(
                        nn.Conv2d(prev, w, 1, stride=stride, bias=False), nn.BatchNorm2d(w)
                    )
                stage.append(BasicBlock(prev, w, stride if b == 0 else 1, down))
                prev = w
            setattr(self, f"layer{i}", nn.Sequential(*stage))
        self.n_stages = len(widths)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(prev, int(n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(self.normalize(x))
        for i in range(1, self.n_stages + 1):
            h = getattr(self, f"layer{i}")(h)
        return self.head(h)


class PlainVGG(_Normalised):
    """A VGG-style network without normalisation: two 3 x 3 convs per block, GELU.

    Blocks 1..3 end in a 2 x 2 max pool; block 4 is the last spatial map. ``stem_stride``
    is the stride of the first convolution (2 quarters the cost of the full-resolution
    layers, and the last map is S/16 instead of S/8). ``weight_standardise``: every
    convolution uses its weights standardised per output channel (zero mean, variance
    scaled to the fan-in), which keeps activations unnormalised but makes each filter
    blind to a flat background, as batch norm would; otherwise the network spends its
    first epochs on the artifact alone. Layer names:
    ``features.conv{b}_{i}``, ``features.act{b}_{i}`` (i = 1, 2), ``features.pool{b}``,
    then ``pool`` and ``fc``.

    Example:
        >>> PlainVGG(4)(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 4])
    """

    def __init__(
        self,
        n_classes: int,
        in_channels: int = 3,
        widths: Sequence[int] = (12, 24, 48, 96),
        init: str = "he",
        stem_stride: int = 1,
        weight_standardise: bool = False,
        mean: Sequence[float] = _MEAN,
        std: Sequence[float] = _STD,
    ):
        super().__init__(in_channels, mean, std)
        if init not in ("he", "default"):
            raise ValueError(f"init must be 'he' or 'default'; got {init!r}.")
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        prev = in_channels
        for b, w in enumerate(widths, start=1):
            for i in (1, 2):
                stride = int(stem_stride) if (b, i) == (1, 1) else 1
                conv = _WSConv2d if weight_standardise else nn.Conv2d
                layers[f"conv{b}_{i}"] = conv(prev, int(w), 3, stride=stride, padding=1)
                layers[f"act{b}_{i}"] = nn.GELU()
                prev = int(w)
            if b < len(widths):
                layers[f"pool{b}"] = nn.MaxPool2d(2)
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(prev, int(n_classes))
        if init == "he":
            self._init_weights()

    def _init_weights(self) -> None:
        """He-normal convolutions (fan out), zero biases: without normalisation layers,
        PyTorch's default initialisation shrinks the signal through eight convolutions
        and the network barely trains in a few epochs."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.normalize(x)))


class _WSConv2d(nn.Conv2d):
    """A convolution whose weights are standardised per output channel on every call:
    zero mean and variance ``gain**2 / fan_in`` (scaled weight standardisation; the
    gain suits GELU). The parameters are an ordinary ``Conv2d``'s."""

    gain = 1.7

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        w = (w - mean) * torch.rsqrt(var * w[0].numel() + 1e-4) * self.gain
        return self._conv_forward(x, w, self.bias)


class _GNBlock(nn.Module):
    """conv -> GroupNorm -> SiLU (-> 2 x 2 max pool), with readable names."""

    def __init__(self, c_in: int, c_out: int, groups: int, pool: bool, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=int(stride), padding=1)
        self.norm = nn.GroupNorm(min(groups, c_out), c_out)
        self.act = nn.SiLU()
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act(self.norm(self.conv(x))))


class GroupNormNet(_Normalised):
    """Convolutions with GroupNorm (batch-independent) and SiLU.

    Every block but the last ends in a 2 x 2 max pool; ``stem_stride`` is the stride of
    the first convolution (2: a quarter of the cost, last map S/16). Layer names: ``blocks.{b}.conv``,
    ``blocks.{b}.norm``, ``blocks.{b}.act``, ``blocks.{b}.pool``, ``pool``, ``fc``.

    Example:
        >>> GroupNormNet(4)(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 4])
    """

    def __init__(
        self,
        n_classes: int,
        in_channels: int = 3,
        widths: Sequence[int] = (16, 32, 64, 128),
        groups: int = 8,
        stem_stride: int = 1,
        mean: Sequence[float] = _MEAN,
        std: Sequence[float] = _STD,
    ):
        super().__init__(in_channels, mean, std)
        blocks, prev = [], in_channels
        for b, w in enumerate(widths):
            stride = int(stem_stride) if b == 0 else 1
            blocks.append(_GNBlock(prev, int(w), int(groups), b < len(widths) - 1, stride))
            prev = int(w)
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(prev, int(n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.normalize(x)))


def _per_channel(value: float | Sequence[float], channels: int) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float32).flatten()
    if t.numel() == 1:
        t = t.repeat(channels)
    if t.numel() != channels:
        raise ValueError(f"Expected 1 or {channels} normalisation values; got {t.numel()}.")
    return t.reshape(1, channels, 1, 1)
