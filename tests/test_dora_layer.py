"""How DORA reaches a layer (repwidgets.engines.dora.layer): the forward pass stopped at
the layer, hooks that always come off, and the redirected ReLU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from repwidgets.engines import dora
from repwidgets.engines.dora.layer import RedirectedReLU, layer_fn


class _Block(nn.Module):
    """conv -> in-place ReLU, as the last op of a block (a ResNet stage)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.conv(x))


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_units_off_at_the_start_still_get_signals_inside_a_block():
    """Channels of a block that ends in an (in-place) ReLU and are off everywhere on the
    initial grey image are switched on by their s-AMS."""
    torch.manual_seed(0)
    model = nn.Sequential(_Block())
    with torch.no_grad():
        model[0].conv.bias.fill_(-0.2)  # all units but one start off on grey images
        start = model(torch.full((1, 3, 16, 16), 0.5)).flatten(2).amax(dim=2)
    assert int((start > 0).sum()) <= 1
    sig = dora.generate_signals(
        model, "0", None, n_signals=1, steps=40, input_shape=(3, 16, 16), progress=False
    )
    with torch.no_grad():
        out = model(sig.flatten(0, 1)).flatten(2).amax(dim=2)  # [6 signals, 6 channels]
    assert int((out.diagonal() > 0).sum()) >= 4
    assert _hook_count(model) == 0


def test_redirected_relu_lets_the_gradient_switch_a_silent_map_on():
    z = torch.tensor([[[-1.0, -2.0]], [[-1.0, 3.0]]], requires_grad=True)  # [2 maps, 1, 2]
    out = RedirectedReLU.apply(z)
    assert torch.equal(out, z.clamp(min=0))
    grad = torch.tensor([[[-1.0, 1.0]], [[-1.0, -1.0]]])
    out.backward(grad)
    # map 0 is off everywhere: the gradient that pushes z up (negative) passes through;
    # map 1 has an active position: the plain ReLU gradient
    assert z.grad.tolist() == [[[-1.0, 0.0]], [[0.0, -1.0]]]


@pytest.mark.parametrize("inplace", [False, True])
def test_a_relu_layer_gives_its_values_and_a_redirected_gradient(inplace):
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU(inplace=inplace), nn.Flatten())
    with torch.no_grad():
        model[0].bias.copy_(torch.tensor([-10.0, 10.0]))  # channel 0 is off everywhere
    x = torch.rand(1, 3, 4, 4, requires_grad=True)
    fn = layer_fn(model, "1", redirect_relu=True)
    out = fn(x)
    torch.testing.assert_close(out, model[:2](x.detach()))
    # a loss whose descent pushes the silent channel further down: no gradient
    out[:, 0].mean().backward()
    assert x.grad.abs().sum() == 0
    x.grad = None
    # a loss whose descent pushes it up (maximising the channel): the gradient passes
    fn(x)[:, 0].mean().neg().backward()
    assert x.grad.abs().sum() > 0
    assert _hook_count(model) == 0


def test_the_forward_pass_stops_at_the_layer_and_hooks_come_off_after_errors():
    calls = []

    class Later(nn.Module):
        def forward(self, x):
            calls.append(1)
            return x

    model = nn.Sequential(nn.Conv2d(3, 2, 1), Later())
    out = layer_fn(model, "0")(torch.rand(2, 3, 4, 4))
    assert out.shape == (2, 2, 4, 4) and calls == []
    with pytest.raises(RuntimeError):
        layer_fn(model, "0", preprocess=lambda x: x.view(-1))(torch.rand(2, 3, 4, 4))
    assert _hook_count(model) == 0
