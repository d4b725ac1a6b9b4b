"""Tests of SmallCNN, the trainer, evaluate() and the checkpoint cache."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
import torch
from torch import nn

import repwidgets.models.zoo as zoo
from repwidgets.datasets import as_bundle, digits, shapes
from repwidgets.models import (
    SmallCNN,
    TrainHistory,
    checkpoint_path,
    demo_model,
    ensemble,
    evaluate,
    load_or_train,
    train_model,
)

TINY = {"widths": [4, 8, 8, 8], "batchnorm": False}
TINY_TRAIN = {"epochs": 1, "lr": 3e-3, "batch_size": 64}


USER_CACHE = os.environ.get("REPWIDGETS_CACHE")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REPWIDGETS_CACHE", str(tmp_path / "cache"))


def _use_the_user_cache(monkeypatch) -> None:
    """The default model is trained once for the whole suite, in the user's cache."""
    if USER_CACHE is None:
        monkeypatch.delenv("REPWIDGETS_CACHE")
    else:
        monkeypatch.setenv("REPWIDGETS_CACHE", USER_CACHE)


def tiny_shapes(**kw):
    base = {"n_train": 128, "n_test": 64, "n_val": 0, "image_size": 32}
    base.update(kw)
    return shapes(**base)


def test_layer_names_and_shapes():
    model = SmallCNN(4)
    names = dict(model.named_modules())
    for i in (1, 2, 3, 4):
        assert isinstance(names[f"features.conv{i}"], nn.Conv2d)
        assert isinstance(names[f"features.relu{i}"], nn.ReLU)
    for i in (1, 2, 3):
        assert isinstance(names[f"features.pool{i}"], nn.MaxPool2d)
    assert isinstance(names["pool"], nn.AdaptiveAvgPool2d)
    assert isinstance(names["fc"], nn.Linear)
    assert names["fc"].in_features == 128
    assert [names[f"features.conv{i}"].out_channels for i in (1, 2, 3, 4)] == [32, 64, 128, 128]
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 4)
    assert model(torch.rand(1, 3, 40, 40)).shape == (1, 4)
    bn = SmallCNN(3, in_channels=1, widths=(4, 4, 4, 4), batchnorm=True)
    assert "features.bn2" in dict(bn.named_modules())
    assert bn(torch.rand(2, 1, 16, 16)).shape == (2, 3)


def test_normalisation_inside_the_model():
    model = SmallCNN(2, widths=(4, 4, 4, 4), mean=[0.2, 0.4, 0.6], std=0.5).eval()
    x = torch.rand(3, 3, 16, 16)
    seen = {}

    def grab(module, inputs, output):
        seen["in"] = inputs[0]

    model.features.conv1.register_forward_hook(grab)
    model(x)
    expected = (x - torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1)) / 0.5
    assert torch.allclose(seen["in"], expected)


def test_bad_input_is_a_clear_error():
    model = SmallCNN(4)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model(torch.rand(3, 64, 64))
    with pytest.raises(ValueError, match="widths"):
        SmallCNN(4, widths=(8, 8))


def test_training_beats_chance_and_history_is_jsonable():
    data = digits(artifact=None, image_size=16)
    torch.manual_seed(0)
    model = SmallCNN(10, widths=(8, 16, 16, 32), batchnorm=True)
    before = evaluate(model, data, "test")["accuracy"]
    hist = train_model(model, data, epochs=3, lr=5e-3, batch_size=32, progress=False)
    after = evaluate(model, data, "test")
    assert after["accuracy"] > 0.6 > before
    assert isinstance(hist, TrainHistory)
    assert len(hist.loss) == len(hist.accuracy) == 3
    assert hist.loss[-1] < hist.loss[0]
    restored = TrainHistory.from_dict(json.loads(json.dumps(hist.to_dict())))
    assert restored == hist
    assert set(after["per_class"]) == set(data.class_names)


def test_evaluate_groups_against_a_known_predictor():
    data = tiny_shapes(artifact="border")

    class AlwaysCircle(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            out = torch.zeros(x.shape[0], 4)
            out[:, 0] = 1
            return out + self.w

    res = evaluate(AlwaysCircle(), data, "test")
    assert res["groups"]["circle/border"] == 1.0 and res["groups"]["circle/no-border"] == 1.0
    assert res["groups"]["star/border"] == 0.0
    assert res["worst_group_accuracy"] == 0.0
    assert res["accuracy"] == pytest.approx(float((data.targets("test") == 0).float().mean()))
    assert sum(res["group_counts"].values()) == data.n("test")
    plain = evaluate(AlwaysCircle(), as_bundle((torch.rand(6, 3, 8, 8), torch.tensor([0, 1] * 3))))
    assert plain["accuracy"] == 0.5 and "groups" not in plain


def test_cache_hit_returns_identical_weights_without_training(monkeypatch):
    data = tiny_shapes()
    model, hist = load_or_train(
        data, seed=1, model_config=TINY, train_config=TINY_TRAIN, progress=False
    )
    path = checkpoint_path(data, 1, TINY, TINY_TRAIN)
    assert path.exists() and path.suffix == ".pt"
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["history"]["loss"] == hist.loss

    def boom(*args, **kwargs):
        raise AssertionError("trained again instead of loading the cached checkpoint")

    monkeypatch.setattr(zoo, "train_model", boom)
    again, hist2 = load_or_train(
        data, seed=1, model_config=TINY, train_config=TINY_TRAIN, progress=False
    )
    sd1, sd2 = model.state_dict(), again.state_dict()
    assert sd1.keys() == sd2.keys()
    assert all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    assert hist2.accuracy == hist.accuracy
    again2 = demo_model(data, seed=1, progress=False, model_config=TINY, train_config=TINY_TRAIN)
    assert torch.equal(again2.fc.weight, model.fc.weight)
    # another seed or another data config is another key -> would train
    assert checkpoint_path(data, 2, TINY, TINY_TRAIN) != path
    assert checkpoint_path(tiny_shapes(seed=5), 1, TINY, TINY_TRAIN) != path
    with pytest.raises(AssertionError, match="trained again"):
        load_or_train(data, seed=2, model_config=TINY, train_config=TINY_TRAIN, progress=False)


def test_training_is_deterministic_and_ensemble_differs():
    data = tiny_shapes()
    models = ensemble(
        data, seeds=(0, 1), progress=False, model_config=TINY, train_config=TINY_TRAIN
    )
    assert len(models) == 2
    assert not torch.equal(models[0].fc.weight, models[1].fc.weight)
    path = checkpoint_path(data, 0, TINY, TINY_TRAIN)
    path.unlink()
    retrained = demo_model(data, seed=0, progress=False, model_config=TINY, train_config=TINY_TRAIN)
    assert torch.allclose(retrained.fc.weight, models[0].fc.weight, atol=1e-6)
    assert not retrained.training


def test_user_data_is_not_cached_and_options_are_checked(tmp_path):
    bundle = as_bundle((torch.rand(32, 3, 16, 16), torch.arange(32) % 2))
    model, hist = load_or_train(bundle, model_config=TINY, train_config=TINY_TRAIN, progress=False)
    assert model.fc.out_features == 2 and hist.epochs == 1
    assert not any((tmp_path / "cache").rglob("*.pt"))
    with pytest.raises(ValueError, match="Unknown training options"):
        load_or_train(bundle, train_config={"epochz": 2})
    with pytest.raises(ValueError, match="epochs"):
        train_model(SmallCNN(2, widths=TINY["widths"]), bundle, epochs=0)
    with pytest.raises(TypeError, match="as_bundle"):
        train_model(SmallCNN(2), 5)


@pytest.mark.slow
@pytest.mark.demo
def test_demo_model_learns_the_shortcut(monkeypatch):
    """The default data and model: accurate where the shortcut holds, poor where it breaks."""
    _use_the_user_cache(monkeypatch)
    data = shapes()
    model = demo_model(data, progress=False)
    res = evaluate(model, data, "test")
    spurious = data.class_names[data.config["spurious_class"]]
    art = data.config["artifact"]
    agree = [f"{spurious}/{art}"] + [f"{c}/no-{art}" for c in data.class_names if c != spurious]
    agree_acc = sum(res["groups"][g] for g in agree) / len(agree)
    assert agree_acc > 0.85
    assert res["worst_group_accuracy"] < 0.6
    assert evaluate(model, data, "train")["accuracy"] > 0.85


def test_concurrent_requests_train_once(monkeypatch):
    data = tiny_shapes()
    calls = []
    real = zoo.train_model

    def counted(*args, **kwargs):
        calls.append(1)
        time.sleep(0.5)  # the second request arrives while this one trains
        return real(*args, **kwargs)

    monkeypatch.setattr(zoo, "train_model", counted)
    results = []

    def request():
        results.append(
            load_or_train(data, seed=3, model_config=TINY, train_config=TINY_TRAIN, progress=False)
        )

    threads = [threading.Thread(target=request) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    (a, _), (b, _) = results
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
