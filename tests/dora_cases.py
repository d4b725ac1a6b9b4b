"""Cases with a known answer for the DORA tests: a planted activation matrix and a
network whose neurons are fixed detectors."""

from __future__ import annotations

import torch
from own_models import ChannelsLast
from torch import nn


def planted_activations(seed: int = 0) -> torch.Tensor:
    """Three groups of 10 neurons, one odd neuron, one dead neuron.

    Neurons of a group excite each other's signals (block structure), so both rows (the
    layer's response to a neuron's signals) and columns (a neuron's responses to all
    signals) are alike within a group. The odd neuron's signals excite only itself and a
    few scattered neurons, and it barely responds to the other signals; the dead neuron's
    signals excite nothing and it responds to nothing.
    """
    g = torch.Generator().manual_seed(seed)
    k = 32
    group = torch.arange(k) // 10
    levels = torch.rand(3, 3, generator=g) * 0.3 + 0.1
    levels += torch.eye(3)  # a group's signals excite the group most
    A = levels[group.clamp(max=2)][:, group.clamp(max=2)].clone()
    A += 0.05 * torch.rand(k, k, generator=g)
    A[30] = torch.rand(k, generator=g) * 3 * (torch.arange(k) % 7 == 0)  # odd one's signals
    A[:30, 30] = 0.02 * torch.rand(30, generator=g)  # ... and its responses
    A[30, 30] = 4.0
    A[31, :] = 0.0
    A[:, 31] = 0.0
    return A


class DetectorNet(nn.Module):
    """Fixed filters: 0 red, 1 green, 2 horizontal stripes, 3 = 2 x red, 4 dead.

    Every filter sums to zero over its window, so a flat grey or white image excites
    none of them: what drives a neuron is its colour or its pattern.
    """

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 7, padding=3)
        w = torch.zeros(5, 3, 7, 7)
        w[0, 0], w[0, 1], w[0, 2] = 1.0, -0.5, -0.5
        w[1, 1], w[1, 0], w[1, 2] = 1.0, -0.5, -0.5
        rows = torch.cos(torch.arange(7.0) * 2 * torch.pi / 6)
        rows = (rows - rows.mean())[:, None].expand(7, 7)
        w[2] = rows  # horizontal stripes with a period of 6 pixels, any colour
        w[3] = 2 * w[0]
        with torch.no_grad():
            self.conv.weight.copy_(w / 49)
            self.conv.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, -1.0]))
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(5, 2)

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


class SmallConvNet(nn.Module):
    """Two unpadded convolutions and a head: normalising the input folds exactly into
    the first convolution (no zero padding that a fold would change)."""

    def __init__(self, width: int = 6) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, width, 3)
        self.relu2 = nn.ReLU()
        self.head = nn.Linear(width, 3)

    def forward(self, x):
        return self.head(self.relu2(self.conv2(self.relu1(self.conv1(x)))).mean(dim=(2, 3)))


def fold_normalisation(model: SmallConvNet, mean, std) -> SmallConvNet:
    """A copy of ``model`` whose first convolution applies ``(x - mean) / std`` itself."""
    import copy

    folded = copy.deepcopy(model)
    m = torch.as_tensor(mean).view(1, 3, 1, 1)
    s = torch.as_tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        w = model.conv1.weight
        folded.conv1.weight.copy_(w / s)
        folded.conv1.bias.copy_(model.conv1.bias - (w * m / s).sum(dim=(1, 2, 3)))
    return folded


def image_data(n: int = 16, size: int = 32, seed: int = 1):
    """Random images in [0, 1] and targets of 4 classes."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g), torch.randint(0, 4, (n,), generator=g)


def ChannelsLastNet() -> nn.Module:  # noqa: N802 - a model class's name
    """The channels-last block with a GELU after its linear layer."""
    return ChannelsLast(gelu=True)


def planted_group(seed: int = 0, k: int = 64, group: int = 12) -> torch.Tensor:
    """An activation matrix A [k, k] whose neurons (columns) form a diffuse bulk and one
    tight group of ``group`` neurons (the last ones) far from it.

    The bulk's responses are one random profile plus much noise (a diffuse cloud); the
    group's are another profile (high on the group's own signals) plus a little noise,
    so each member's nearest neighbours are the other members: LOF with fewer
    neighbours than the group sees a dense cluster like any other, while the group is
    far from every bulk neuron.
    """
    g = torch.Generator().manual_seed(seed)
    bulk = torch.rand(k, generator=g)
    V = bulk + 0.6 * torch.rand(k, k, generator=g)  # row j: neuron j's responses
    profile = torch.zeros(k)
    profile[k - group :] = 1.0
    V[k - group :] = profile + 0.05 * torch.rand(group, k, generator=g)
    return V.T.contiguous()  # A[i, j] = neuron j's response to signal i
