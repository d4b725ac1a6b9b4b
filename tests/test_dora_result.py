"""DoraResult (repwidgets.engines.dora.result): tables, persistence, figure."""

from __future__ import annotations

import pytest
import torch
from dora_cases import planted_activations

from repwidgets.engines import dora


def test_result_save_load_roundtrip(tmp_path):
    r = dora.analyze_activations(planted_activations(), embedding=None, layer="conv")
    path = r.save(tmp_path / "dora.safetensors")
    back = dora.DoraResult.load(path)
    assert back.layer == "conv"
    assert torch.equal(back.distances, r.distances)
    assert torch.equal(back.is_dead, r.is_dead)
    assert back.params == r.params
    assert back.to_frame()["neuron"].tolist() == r.to_frame()["neuron"].tolist()
    # the saved settings are a config again
    assert dora.DoraConfig.from_dict(back.params) == dora.DoraConfig(embedding=None)


def test_result_without_signals_has_no_thumbnails_but_a_map():
    r = dora.analyze_activations(planted_activations(), embedding=None)
    with pytest.raises(ValueError, match="no s-AMS images"):
        r.signal_thumbnails()
    fig = r.plot()  # no map: LOF score against neuron id
    assert fig.xaxis[0].axis_label == "neuron"


def test_nearest_skips_dead_neurons_and_itself():
    r = dora.analyze_activations(planted_activations(), embedding=None)
    order, dist = r.nearest(3)
    assert order.shape == (32, 3) and dist.shape == (32, 3)
    assert not (order == 31).any()  # the dead neuron is nobody's neighbour
    assert all(i not in row for i, row in enumerate(order))
    assert (dist[:, :-1] <= dist[:, 1:]).all()
