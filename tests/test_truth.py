"""Truth across models: the methods' checks on architectures other than the demo CNN.

The quick tests check the registry and the architectures (forward shapes, layer names,
the cache key). The slow ones load the registry's trained models (trained once, then
cached, like the demo model) and assert the figures that held on every model in
``benchmarks/bench_truth.py``.
"""

from __future__ import annotations

import pytest
import torch

from repwidgets.models import zoo_extra
from repwidgets.models.architectures import GroupNormNet, NarrowResNet, PlainVGG

EXTRA = [name for name in zoo_extra.names() if name != "smallcnn"]


# ------------------------------------------------------------------ the registry
@pytest.mark.parametrize("cls", [NarrowResNet, PlainVGG, GroupNormNet])
def test_architectures_map_images_to_logits(cls):
    torch.manual_seed(0)
    model = cls(4).eval()
    x = torch.rand(3, 3, 64, 64)
    assert model(x).shape == (3, 4)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 4)  # any size: global pooling
    with pytest.raises(ValueError, match="expects images"):
        model(torch.rand(3, 64, 64))


@pytest.mark.parametrize("name", zoo_extra.names())
def test_registry_layers_exist(name):
    e = zoo_extra.entry(name)
    model = e.builder(4, 3, **e.model_config)
    modules = dict(model.named_modules())
    for key in ("dora", "concepts", "invert"):
        assert e.layers[key] in modules, (key, e.layers[key])
    assert all(layer in modules for layer in e.layers["probes"])
    assert isinstance(modules["fc"], torch.nn.Linear)


def test_registry_artifacts_and_classes_differ():
    entries = [zoo_extra.entry(n) for n in zoo_extra.names()]
    assert {e.artifact for e in entries} == {"watermark", "border", "patch"}
    pairs = {(e.artifact, e.data_config["spurious_class"]) for e in entries}
    assert len(pairs) == len(entries)
    with pytest.raises(ValueError, match="registered"):
        zoo_extra.entry("alexnet")


def test_registry_cache_reads_back_with_weights_only(tmp_path, monkeypatch):
    """A registry model is trained once, saved, and read back (weights only) equal."""
    monkeypatch.setenv("REPWIDGETS_CACHE", str(tmp_path))
    data = zoo_extra.data("groupnorm", n_train=64, n_test=16, n_val=0)
    monkeypatch.setitem(
        zoo_extra._REGISTRY,
        "groupnorm",
        zoo_extra.ZooEntry(
            "groupnorm",
            GroupNormNet,
            {"widths": [4, 8, 8, 8], "groups": 2},
            zoo_extra.entry("groupnorm").data_config,
            {"epochs": 1, "lr": 1e-3, "batch_size": 32},
            zoo_extra.entry("groupnorm").layers,
        ),
    )
    first, hist = zoo_extra.load_or_train("groupnorm", 0, data, device="cpu")
    files = list((tmp_path / "models").glob("groupnorm-*.pt"))
    assert len(files) == 1 and hist.epochs == 1
    again, _ = zoo_extra.load_or_train("groupnorm", 0, data, device="cpu")
    for (k, a), (_, b) in zip(first.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
