"""Models with other layer layouts, and plain hooks to check the engines against.

A tiny torchvision vision transformer (token layers [b, T, C], T = 1 + 4*4) and a
channels-last block that returns a dict; data with concept labels; forward hooks
registered by hand (not through the package) that give the raw layer output and
the gradient of the predicted logit with respect to it.
"""

from __future__ import annotations

import torch
from own_models import ChannelsLast, tiny_vit
from torch import nn
from torch.utils.data import TensorDataset

import repwidgets as rw
from repwidgets.datasets.bundle import DataBundle


class Unwrapped(nn.Module):
    """A dict-returning model with its logits taken out by hand."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["logits"]


def bundle(n: int = 24, size: int = 32, seed: int = 1) -> DataBundle:
    """Random images, classes and three concepts (each on about a third of the samples)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 3, size, size, generator=g)
    y = torch.randint(0, 4, (n,), generator=g)
    C = torch.rand(n, 3, generator=g) < 0.35
    C[0], C[1] = True, False  # every concept has both values
    split = TensorDataset(X, y)
    return DataBundle(
        "layouts",
        {"train": split, "test": split},
        class_names=["a", "b", "c", "d"],
        concept_names=["red", "round", "big"],
        targets={"train": y, "test": y},
        concepts={"train": C, "test": C},
    )


def vit_session(**kw) -> rw.Session:
    return rw.Session(tiny_vit(), bundle(), device="cpu", progress=False, **kw)


def channels_last_session(**kw) -> rw.Session:
    model = ChannelsLast().eval()
    return rw.Session(model, bundle(), device="cpu", progress=False, output="logits", **kw)


def output_and_gradient(model, module, images, select=lambda out: out):
    """(A, dA): the module's output and the gradient of the summed predicted logits
    with respect to it, from a plain hook that makes the output a leaf."""
    store = {}

    def leaf(_m, _i, out):
        store["a"] = out.detach().requires_grad_(True)
        return store["a"].clone()

    handle = module.register_forward_hook(leaf)
    try:
        logits = select(model(images))
        score = logits.gather(1, logits.argmax(dim=1, keepdim=True)).sum()
        (grad,) = torch.autograd.grad(score, store["a"])
    finally:
        handle.remove()
    return store["a"].detach(), grad, logits.argmax(dim=1)
