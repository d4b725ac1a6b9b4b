"""Small models of the layouts users bring: a vision transformer (token layers) and a
ConvNeXt-like channels-last block that returns a dict. Shared by the layout, engine,
GPU and own-model tests."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

VIT_BLOCK = "encoder.layers.encoder_layer_1"


def tiny_vit() -> nn.Module:
    """A vision transformer with random weights: token layers [b, 17, 24] on 32-pixel images."""
    torch.manual_seed(0)
    return torchvision.models.VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=24,
        mlp_dim=48,
        num_classes=4,
    ).eval()


class ChannelsLast(nn.Module):
    """A ConvNeXt-like block: a convolution, then norm and linear layers on [b, H, W, C]
    (a GELU after the linear layer with ``gelu=True``); returns a dict of logits and
    features."""

    def __init__(self, gelu: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.norm = nn.LayerNorm(6)
        self.fc = nn.Linear(6, 10)
        self.act = nn.GELU() if gelu else nn.Identity()
        self.head = nn.Linear(10, 4)

    def forward(self, x):
        x = self.act(self.fc(self.norm(self.conv(x).permute(0, 2, 3, 1))))
        return {"logits": self.head(x.mean(dim=(1, 2))), "features": x}


def hooked_output(model: nn.Module, module: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``module``'s output on ``model(images)``, read with a plain forward hook: the
    reference that the session's and the engines' layer reads are compared with."""
    store: dict = {}
    handle = module.register_forward_hook(lambda _m, _i, out: store.setdefault("out", out))
    try:
        with torch.no_grad():
            model(images)
    finally:
        handle.remove()
    return store["out"].detach()
