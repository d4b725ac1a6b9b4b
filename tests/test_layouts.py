"""Layer layouts: the session finds each layer's neuron axis and pools by it.

Activations must equal a plain forward hook reduced over the right axes, on a vision
transformer (tokens), a channels-last block and a convolution.
"""

from __future__ import annotations

import pytest
import torch
from own_models import ChannelsLast, hooked_output, tiny_vit
from torch import nn

import repwidgets as rw
from repwidgets.layouts import AmbiguousLayout, Layout, choose_axis


def data(n: int = 24, size: int = 32):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, size, size, generator=g), torch.randint(0, 4, (n,), generator=g)


def test_token_layers_pool_over_tokens_and_equal_a_plain_hook():
    model = tiny_vit()
    sess = rw.Session(model, data(), device="cpu", progress=False)
    block = "encoder.layers.encoder_layer_1"
    assert sess.layout(block).kind == "tokens"
    assert sess.layout("conv_proj").kind == "channels_first"
    images = sess.images(range(sess.n("test")), "test")
    raw = hooked_output(model, model.encoder.layers.encoder_layer_1, images)  # [n, T, C]
    assert torch.allclose(sess.activations(block, "test"), raw.mean(dim=1), atol=1e-5)
    assert torch.allclose(sess.activations(block, "test", pool="max"), raw.amax(dim=1))
    assert torch.allclose(sess.activations(block, "test", pool="cls"), raw[:, 0], atol=1e-6)
    assert sess.activations(block, "test", pool=None).shape == raw.shape


def test_channels_last_blocks_are_found_and_outputs_read_through_output():
    model = ChannelsLast().eval()
    with pytest.raises(
        TypeError, match=r"returned a dict with keys \['logits', 'features'\].*output='logits'"
    ):
        rw.Session(model, data(), device="cpu", progress=False).logits("test")
    sess = rw.Session(model, data(), device="cpu", progress=False, output="logits")
    assert sess.logits("test").shape == (24, 4)
    assert sess.layout("fc").kind == "channels_last" and sess.layout("conv").neuron_axis == 1
    raw = hooked_output(model, model.fc, sess.images(range(24), "test"))  # [n, H, W, C]
    assert torch.allclose(sess.activations("fc", "test"), raw.mean(dim=(1, 2)), atol=1e-5)


def test_an_override_wins_per_call_and_per_session():
    model = ChannelsLast().eval()
    sess = rw.Session(
        model, data(), device="cpu", progress=False, output="logits", neuron_axis={"fc": 1}
    )
    assert sess.layout("fc").neuron_axis == 1
    assert sess.activations("fc", "test").shape == (24, 32)  # rows of the 32 x 32 grid
    assert sess.activations("fc", "test", neuron_axis=-1).shape == (24, 10)
    with pytest.raises(ValueError, match="not a non-batch axis"):
        sess.activations("fc", "test", neuron_axis=4)


def test_an_output_that_does_not_say_gets_the_choices():
    with pytest.raises(
        AmbiguousLayout, match=r"neuron_axis=1 \(8 units\).*neuron_axis=2 \(5 units\)"
    ):
        choose_axis("mystery", (1, 8, 5), None)
    assert choose_axis("square", (1, 6, 6), (6, "last")) == 2
    assert choose_axis("square", (1, 6, 6), (6, "first")) == 1
    with pytest.raises(ValueError, match="pool='cls' takes the class token"):
        Layout(1, 4).pool(torch.zeros(2, 3, 4, 4), "cls")


def test_a_model_returning_an_object_with_logits_works_with_an_attribute_name():
    class Out:
        def __init__(self, logits):
            self.logits = logits

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4))

        def forward(self, x):
            return Out(self.body(x))

    sess = rw.Session(Wrapped(), data(), device="cpu", progress=False, output="logits")
    assert sess.logits("test").shape == (24, 4)
    bad = rw.Session(Wrapped(), data(), device="cpu", progress=False)
    with pytest.raises(TypeError, match=r"Out with tensor attributes \['logits'\]"):
        bad.logits("test")
