"""The one hook module: captures what a layer sees, stops early, always cleans up."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from repwidgets.hooks import Capture, StopForward, first_tensor, hooked, layer_output


class Counting(nn.Module):
    """A layer that counts how often it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x * 2


def model_with_counter():
    counter = Counting()
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), counter), counter


def hook_count(module: nn.Module) -> int:
    return len(module._forward_hooks) + len(module._forward_pre_hooks)


def test_layer_output_equals_a_plain_forward_and_stops_there():
    model, counter = model_with_counter()
    x = torch.randn(5, 3)
    out = layer_output(model, model[1], x)
    assert torch.equal(out, torch.relu(model[0](x)))
    assert counter.calls == 0  # the layers after the hooked one did not run
    assert hook_count(model[1]) == 0


def test_capture_of_inputs_gives_what_enters_the_layer():
    model, _ = model_with_counter()
    x = torch.randn(2, 3)
    with Capture(model[2], inputs=True) as cap:
        got = cap.run(model, x)
    assert torch.equal(got, torch.relu(model[0](x)))
    assert hook_count(model[2]) == 0


def test_hooks_come_off_when_the_model_raises():
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    model = nn.Sequential(nn.Linear(3, 3), Broken())
    with pytest.raises(RuntimeError, match="boom"), Capture(model[0]) as cap:
        cap.run(model, torch.randn(1, 3))
    with pytest.raises(RuntimeError, match="boom"), hooked(model[0], lambda *a: None):
        model(torch.randn(1, 3))
    assert hook_count(model[0]) == 0


def test_tuple_outputs_give_their_first_tensor_and_non_tensors_a_clear_error():
    class Pair(nn.Module):
        def forward(self, x):
            return x + 1, "state"

    class Text(nn.Module):
        def forward(self, x):
            return "not a tensor"

    pair = nn.Sequential(Pair())
    assert torch.equal(layer_output(pair, pair[0], torch.zeros(2)), torch.ones(2))
    text = nn.Sequential(Text())
    with pytest.raises(TypeError, match="'head' returns str, not a tensor"):
        layer_output(text, text[0], torch.zeros(2), name="head")
    with pytest.raises(TypeError, match="returns dict"):
        first_tensor({"a": 1})


def test_a_layer_the_forward_pass_never_reaches_is_named():
    model, _ = model_with_counter()
    unused = nn.Linear(2, 2)
    with pytest.raises(RuntimeError, match="never reached layer 'unused'"):
        layer_output(model, unused, torch.randn(1, 3), name="unused")


def test_transform_applies_and_gradients_flow_through_the_captured_output():
    model, _ = model_with_counter()
    x = torch.randn(4, 3, requires_grad=True)
    out = layer_output(model, model[0], x, transform=lambda t: t.sum())
    out.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_attach_detach_keeps_one_hook_across_calls():
    model, counter = model_with_counter()
    cap = Capture(model[0], stop=True).attach().attach()
    assert hook_count(model[0]) == 1
    for _ in range(3):
        cap.run(model, torch.randn(1, 3))
    assert counter.calls == 0
    cap.detach()
    cap.detach()
    assert hook_count(model[0]) == 0
    # a stop outside Capture.run escapes a plain forward call
    with pytest.raises(StopForward), Capture(model[0], stop=True):
        model(torch.randn(1, 3))
