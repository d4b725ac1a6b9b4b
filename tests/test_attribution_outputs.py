"""Tests of the output functions (repwidgets.engines.attribution.outputs)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from repwidgets.engines import attribution as A

pytestmark = pytest.mark.usefixtures("one_thread")


def test_probe_logit_output_stops_at_layer_and_matches_probe():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Conv2d(6, 2, 3), nn.Flatten(), nn.LazyLinear(2)
    )
    x = torch.rand(10, 3, 8, 8)
    model(x)
    w, b = torch.randn(6), 0.3
    fn = A.ProbeLogit("1", w, b, signed=False)
    values = A.model_outputs(model, (x, torch.ones(10, dtype=torch.long)), output_fn=fn)
    pooled = torch.relu(model[0](x)).mean(dim=(2, 3))
    torch.testing.assert_close(values, pooled @ w + b)
    # only parameters before the layer influence the probe: the later ones are skipped
    r = A.trak_scores(
        model,
        (x, (values > 0).long()),
        (x[:2], torch.ones(2, dtype=torch.long)),
        output_fn=fn,
        proj_dim=None,
        progress=False,
    )
    assert r.grad_params == ["0.weight", "0.bias"]


def test_probe_logit_hooks_come_off_and_stop_the_forward_pass():
    class NeverRuns(nn.Module):
        def forward(self, x):
            raise AssertionError("the forward pass went past the probed layer")

    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), NeverRuns())
    fn = A.ProbeLogit("1", torch.ones(4), 0.0, signed=False)
    with pytest.raises(RuntimeError, match="not attached"):
        fn(model, torch.ones(3), torch.tensor(1))
    with fn.attached(model, torch.device("cpu")):
        value = fn(model, torch.ones(3), torch.tensor(1))
    torch.testing.assert_close(value, torch.relu(model[0](torch.ones(1, 3)))[0].sum())
    assert not model[1]._forward_hooks
