"""DORA on the user's own models: token layers, channels-last blocks, models returning
dicts, normalised inputs, and big layers optimised in chunks.

The s-AMS objective and the activation matrix must equal a plain forward hook reduced
over the right axes; normalising the input must equal folding the normalisation into
the first layer; chunked generation must equal generation in one batch.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torchvision
from dora_cases import (
    ChannelsLastNet,
    SmallConvNet,
    fold_normalisation,
    image_data,
)
from own_models import hooked_output, tiny_vit
from torch import nn

import repwidgets as rw
from repwidgets.engines import dora, featurevis
from repwidgets.engines.dora.layer import layer_fn, probe_layout
from repwidgets.engines.dora.signals import _whole_neurons, signal_memory_mb, signal_objective
from repwidgets.layouts import Layout

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FAST = dict(n_signals=1, steps=6, embedding=None, progress=False)


def hand_matrix(model, module, signals, preprocess=lambda x: x, dims=(1,)) -> torch.Tensor:
    """A[i, j]: neuron j's mean over ``dims`` on neuron i's signals, from a plain hook."""
    k, n = signals.shape[:2]
    out = hooked_output(model, module, preprocess(signals.flatten(0, 1)))
    return out.mean(dim=dims).view(k, n, -1).mean(dim=1)


@pytest.fixture(scope="module")
def vit_result():
    model = tiny_vit()
    sess = rw.Session(model, image_data(), device="cpu", progress=False)
    block = "encoder.layers.encoder_layer_1"
    return model, sess, block, rw.dora.analyze(sess, block, **FAST)


def test_vit_block_neurons_are_its_hidden_units_averaged_over_tokens(vit_result):
    model, sess, block, r = vit_result
    assert sess.layout(block).kind == "tokens"
    assert r.neurons.tolist() == list(range(24))  # hidden_dim, not the 17 tokens
    assert r.signals.shape == (24, 1, 3, 32, 32)
    assert r.params["neuron_axis"] == 2
    module = model.encoder.layers.encoder_layer_1
    A = hand_matrix(model, module, r.signals, dims=(1,))  # [n, T, C] -> mean over tokens
    assert torch.allclose(r.activations, A, atol=1e-5)


def test_vit_objective_is_the_token_mean_of_each_elements_own_neuron(vit_result):
    model, _sess, block, _r = vit_result
    layout = probe_layout(model, block, (3, 32, 32), "cpu")
    assert layout == Layout(2, 3)
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    units = torch.tensor([4, 0, 23, 7, 11])
    values = signal_objective(layer_fn(model, block), units, False, layout)(x, torch.arange(5))
    raw = hooked_output(model, model.encoder.layers.encoder_layer_1, x)  # [5, 17, 24]
    assert torch.allclose(values, raw.mean(dim=1)[torch.arange(5), units], atol=1e-5)


def test_vit_signals_drive_their_own_neurons_up(vit_result):
    model, _sess, _block, r = vit_result
    grey = hooked_output(
        model, model.encoder.layers.encoder_layer_1, torch.full((1, 3, 32, 32), 0.5)
    )
    start = grey.mean(dim=1)[0]  # every neuron's token mean on the grey start
    assert (r.activations.diagonal() > start).float().mean() >= 0.9


def test_neuron_axis_override_reaches_the_objective_and_the_matrix():
    model = tiny_vit()
    sess = rw.Session(model, image_data(), device="cpu", progress=False)
    block = "encoder.layers.encoder_layer_0"
    r = rw.dora.analyze(sess, block, neuron_axis=1, **FAST)  # the 17 tokens as "neurons"
    assert r.neurons.numel() == 17 and r.params["neuron_axis"] == 1
    A = hand_matrix(model, model.encoder.layers.encoder_layer_0, r.signals, dims=(2,))
    assert torch.allclose(r.activations, A, atol=1e-5)


@pytest.mark.parametrize(("layer", "width"), [("fc", 10), ("norm", 6), ("conv", 6)])
def test_channels_last_block_of_a_model_returning_a_dict(layer, width):
    model = ChannelsLastNet().eval()
    sess = rw.Session(model, image_data(), device="cpu", progress=False, output="logits")
    r = rw.dora.analyze(sess, layer, **{**FAST, "n_signals": 2})
    module = getattr(model, layer)
    dims = (2, 3) if layer == "conv" else (1, 2)  # the conv is channels-first
    assert r.neurons.numel() == width
    assert torch.allclose(
        r.activations, hand_matrix(model, module, r.signals, dims=dims), atol=1e-5
    )
    assert r.distances.shape == (width, width)


def test_tensor_level_call_finds_the_layout_from_the_model():
    model = ChannelsLastNet().eval()
    sig = dora.generate_signals(
        model, model.fc, None, n_signals=1, steps=3, input_shape=(3, 16, 16), progress=False
    )
    assert sig.shape[0] == 10  # fc's 10 units on [b, H, W, 10], not H = 16
    same = dora.generate_signals(
        model,
        "fc",
        None,
        n_signals=1,
        steps=3,
        input_shape=(3, 16, 16),
        progress=False,
        neuron_axis=-1,
    )
    assert torch.equal(sig, same)
    r = dora.analyze_signals(model, "fc", sig, embedding=None)
    A = hand_matrix(model, model.fc, sig, dims=(1, 2))
    assert torch.allclose(r.activations, A, atol=1e-5)
    fn = lambda x: model(x)["features"]  # noqa: E731 - a function: neurons at dim 1 unless told
    assert probe_layout(model, fn, (3, 16, 16), "cpu") == Layout(1, 4)
    assert probe_layout(model, fn, (3, 16, 16), "cpu", neuron_axis=-1) == Layout(3, 4)


def test_normalised_inputs_equal_the_normalisation_folded_into_the_first_layer():
    model = SmallConvNet().eval()
    folded = fold_normalisation(model, MEAN, STD).eval()
    norm = torchvision.transforms.Normalize(MEAN, STD)
    x = torch.rand(4, 3, 16, 16)
    assert torch.allclose(model(norm(x)), folded(x), atol=1e-5)  # the fold is exact
    kwargs = dict(n_signals=2, steps=25, input_shape=(3, 16, 16), progress=False, seed=2)
    with_pre = dora.generate_signals(model, "relu2", None, preprocess=norm, **kwargs)
    with_fold = dora.generate_signals(folded, "relu2", None, **kwargs)
    plain = dora.generate_signals(model, "relu2", None, **kwargs)
    assert with_pre.min() >= 0 and with_pre.max() <= 1
    assert torch.allclose(with_pre, with_fold, atol=2e-4)
    assert (with_pre - plain).abs().max() > 0.05  # the normalisation does change them


def test_session_preprocess_is_honoured_and_thumbnails_show_the_signals():
    model = SmallConvNet().eval()
    norm = torchvision.transforms.Normalize(MEAN, STD)
    sess = rw.Session(model, image_data(size=16), device="cpu", progress=False, preprocess=norm)
    r = rw.dora.analyze(sess, "conv2", **{**FAST, "n_signals": 2})
    assert r.signals.min() >= 0 and r.signals.max() <= 1
    A = hand_matrix(model, model.conv2, r.signals, preprocess=norm, dims=(2, 3))
    assert torch.allclose(r.activations, A, atol=1e-5)
    from PIL import Image

    from repwidgets.session import encode_image

    png = encode_image(r.signals[0, 0], size=None)
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)
    expected = r.signals[0, 0].permute(1, 2, 0).numpy() * 255
    assert np.abs(pixels - expected).max() <= 1.0  # pixel space in, the same picture out


@pytest.mark.parametrize("batch_size", [2, 3, 8])
def test_chunked_generation_equals_one_batch(batch_size):
    model = SmallConvNet().eval()
    kwargs = dict(n_signals=2, steps=12, input_shape=(3, 16, 16), progress=False, seed=1)
    whole = dora.generate_signals(model, "relu2", None, batch_size=1000, **kwargs)
    chunked = dora.generate_signals(model, "relu2", None, batch_size=batch_size, **kwargs)
    assert torch.allclose(whole, chunked, atol=1e-5)


def test_a_big_layer_is_split_by_its_memory_budget_into_equal_results(monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2048), nn.ReLU())
    kwargs = dict(n_signals=1, steps=2, input_shape=(3, 8, 8), progress=False)
    whole = dora.generate_signals(model, "2", None, batch_size=2048, **kwargs)
    sizes = []
    visualize = featurevis.visualize

    def spy(*args, **kw):
        sizes.append(kw["batch_size"])
        return visualize(*args, **kw)

    monkeypatch.setattr(featurevis, "visualize", spy)
    chunked = dora.generate_signals(model, "2", None, memory_budget_mb=8, **kwargs)
    assert whole.shape == (2048, 1, 3, 8, 8)
    assert 64 <= sizes[0] < 1024  # a few chunks: 8 MiB holds hundreds of such images
    assert torch.allclose(whole, chunked, atol=1e-5)


def test_chunks_hold_whole_neurons_and_the_cpu_budget_is_bounded():
    assert _whole_neurons(7, 3) == 6 and _whole_neurons(2, 3) == 2 and _whole_neurons(9, 3) == 9
    assert signal_memory_mb("cpu") == 1024
    assert signal_memory_mb("cpu", cap_mb=256) == 256
    assert signal_memory_mb("cpu", cap_mb=10**6) == 1024


def test_redirected_relu_on_a_channels_last_layer_wakes_silent_units():
    # A unit off at every position of its [b, H, W, C] map gets a gradient; one that is
    # on somewhere keeps the plain ReLU gradient.
    z = -torch.ones(1, 2, 2, 3)
    z[0, 1, 1, 0] = 1.0  # unit 0 is on at one position
    z.requires_grad_(True)
    out = dora.layer.RedirectedReLU.apply(z, Layout(3, 4))
    out.sum().mul(-1).backward()  # a loss that pushes every unit up
    g = z.grad
    assert g[0, :, :, 1:].ne(0).all()  # units 1 and 2: off everywhere -> woken up
    assert g[0, 1, 1, 0] != 0 and g[0, 0, 0, 0] == 0  # unit 0: plain ReLU gradient
