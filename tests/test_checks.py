"""Session-level calls reject bad arguments before any activation is extracted."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import repwidgets as rw
from repwidgets.datasets import DataBundle
from repwidgets.engines import attribution, concepts, dora, invert


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("conv1", nn.Conv2d(3, 6, 3, padding=1))
        self.features.add_module("relu1", nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def _counted(model: nn.Module) -> list[int]:
    """Batch sizes of every forward pass through ``model``, appended as they happen."""
    calls: list[int] = []
    model.register_forward_pre_hook(lambda _m, inputs: calls.append(inputs[0].shape[0]))
    return calls


def _data(n: int = 40, with_concepts: bool = True):
    g = torch.Generator().manual_seed(0)
    X = torch.rand(n, 3, 8, 8, generator=g)
    y = torch.arange(n) % 3
    ds = TensorDataset(X, y)
    if not with_concepts:
        return {"train": ds, "test": ds}
    C = torch.stack([torch.arange(n) % 2 == 0, torch.arange(n) % 5 == 0], dim=1)
    return DataBundle(
        "tiny",
        {"train": ds, "test": ds},
        ["a", "b", "c"],
        concept_names=["even", "fifth"],
        concepts={"train": C, "test": C},
        targets={"train": y, "test": y},
    )


@pytest.fixture()
def counted():
    torch.manual_seed(0)
    model = Net()
    calls = _counted(model)
    sess = rw.Session(model, _data(), device="cpu", batch_size=16, progress=False)
    return sess, calls


@pytest.fixture()
def without_concepts():
    torch.manual_seed(0)
    model = Net()
    calls = _counted(model)
    sess = rw.Session(model, _data(with_concepts=False), device="cpu", progress=False)
    return sess, calls


def test_invert_max_length_zero_fails_before_any_forward_pass(counted):
    sess, calls = counted
    with pytest.raises(ValueError, match=r"max_length must be an integer >= 1, got 0"):
        invert.explain(sess, "features.conv1", max_length=0)
    with pytest.raises(ValueError, match=r"beam_size"):
        invert.explain(sess, "features.conv1", beam_size=-2)
    with pytest.raises(ValueError, match=r"min_fraction=0\.6, max_fraction=0\.5"):
        invert.explain(sess, "features.conv1", min_fraction=0.6)
    with pytest.raises(ValueError, match=r"mode must be one of"):
        invert.explain(sess, "features.conv1", mode="both")
    with pytest.raises(ValueError, match=r"top_k must be an integer >= 0"):
        invert.explain(sess, "features.conv1", top_k=-1)
    assert calls == [] and not sess._cache


def test_invert_without_concept_labels_says_how_to_pass_them(without_concepts):
    sess, calls = without_concepts
    with pytest.raises(ValueError) as info:
        invert.explain(sess, "features.conv1")
    message = str(info.value)
    assert message.startswith("INVERT needs concept labels.")
    assert "rw.datasets.DataBundle(" in message
    assert "concept_names=" in message and "concepts={'train'" in message
    assert calls == [] and not sess._cache


def test_invert_unknown_layer_suggests_the_close_name(counted):
    sess, calls = counted
    with pytest.raises(ValueError, match=r"Did you mean 'features\.conv1'\?.*Available layers"):
        invert.explain(sess, "conv1")
    assert calls == []


def test_invert_fraction_filter_and_neuron_range_fail_before_extraction(counted):
    sess, calls = counted
    with pytest.raises(ValueError, match=r"No concept .* covers a fraction"):
        invert.explain(sess, "features.conv1", min_fraction=0.01, max_fraction=0.02)
    assert calls == []
    with pytest.raises(ValueError, match=r"neurons \[6\] are out of range.*6 neurons"):
        invert.explain(sess, "features.conv1", neurons=[0, 6])
    assert all(size == 1 for size in calls)  # only the one-sample shape probe
    assert not sess._cache


def test_invert_still_runs_after_the_checks(counted):
    sess, calls = counted
    r = invert.explain(sess, "features.conv1", max_length=1, neurons=[0, 2])
    assert len(r.formulas) == 2 and sum(calls) >= sess.n("test")


def test_discover_checks_components_and_options_before_extraction(counted):
    sess, calls = counted
    with pytest.raises(ValueError, match=r"n_components=7 exceeds the C=6 channels of layer"):
        concepts.discover(sess, "features.relu1", n_components=7)
    with pytest.raises(ValueError, match=r"n_components=50 but layer .* has only n=40"):
        concepts.discover(sess, "pool", n_components=50)
    with pytest.raises(ValueError, match=r"objective must be one of"):
        concepts.discover(sess, "pool", n_components=2, objective="margin")
    with pytest.raises(ValueError, match=r"embedding must be one of"):
        concepts.discover(sess, "pool", n_components=2, embedding="tsne")
    with pytest.raises(ValueError, match=r"Did you mean 'pool'"):
        concepts.discover(sess, "pools", n_components=2)
    assert all(size == 1 for size in calls) and not sess._cache


def test_probes_without_concept_labels_fail_before_training_or_extraction(
    without_concepts, monkeypatch
):
    sess, calls = without_concepts
    from repwidgets import models as zoo

    def no_training(*_args, **_kwargs):
        raise AssertionError("an ensemble model was trained before the arguments were checked")

    monkeypatch.setattr(zoo, "ensemble", no_training)
    with pytest.raises(ValueError, match=r"cannot be looked up: .*DataBundle\(") as info:
        attribution.probe_layers(sess, "watermark", n_models=2)
    assert "list of sample indices" in str(info.value)
    assert calls == []


def test_probes_and_attribution_check_layers_and_sizes_first(counted, monkeypatch):
    sess, calls = counted
    from repwidgets import models as zoo

    def no_training(*_args, **_kwargs):
        raise AssertionError("an ensemble model was trained before the arguments were checked")

    monkeypatch.setattr(zoo, "ensemble", no_training)
    with pytest.raises(ValueError, match=r"Unknown layer 'features\.relu2'.*Did you mean"):
        attribution.probe_layers(sess, "even", layers=["features.relu2"], n_models=3)
    with pytest.raises(ValueError, match=r"proj_dim must be an integer >= 1, got 0"):
        attribution.concept_attribution(sess, "even", n_models=3, proj_dim=0)
    with pytest.raises(ValueError, match=r"batch_size must be an integer >= 1"):
        attribution.concept_attribution(sess, "even", n_models=3, batch_size=0)
    with pytest.raises(ValueError, match=r"Unknown layer 'fc2'"):
        attribution.concept_attribution(sess, "even", layers=["fc2"], n_models=3)
    assert calls == [] and not sess._cache


def test_dora_checks_settings_before_generating_signals(counted):
    sess, calls = counted
    with pytest.raises(ValueError, match=r"steps must be an integer >= 1, got 0"):
        dora.analyze(sess, "features.conv1", steps=0)
    with pytest.raises(ValueError, match=r"embedding must be one of"):
        dora.analyze(sess, "features.conv1", embedding="tsne")
    with pytest.raises(ValueError, match=r"contamination must be in"):
        dora.analyze(sess, "features.conv1", contamination=0.9)
    assert calls == []
    with pytest.raises(ValueError, match=r"neurons lists 1 neuron\(s\); at least 2"):
        dora.analyze(sess, "features.conv1", neurons=[3])
    assert all(size == 1 for size in calls)


def test_training_on_nan_images_names_them_instead_of_blaming_the_learning_rate():
    from repwidgets.models.train import train_model

    X = torch.rand(20, 3, 4, 4)
    X[5, 1] = float("nan")
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    with pytest.raises(
        ValueError, match=r"split 'train' hold NaN or infinite values: sample\(s\) 5 "
    ):
        train_model(model, TensorDataset(X, torch.arange(20) % 2), epochs=1, progress=False)
