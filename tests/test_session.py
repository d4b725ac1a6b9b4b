"""Session: extraction, pooling, caching, spilling to disk, thumbnails and bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

import repwidgets as rw
from repwidgets.session import Session, pool_activations


class TinyNet(nn.Module):
    def __init__(self, n_classes: int = 3):
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("conv1", nn.Conv2d(3, 4, 3, padding=1))
        self.features.add_module("relu1", nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, n_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


@pytest.fixture()
def tiny():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(37, 3, 8, 8, generator=g)
    y = torch.arange(37) % 3
    torch.manual_seed(0)
    model = TinyNet()
    return model, X, y, Session(model, (X, y), device="cpu", batch_size=10, progress=False)


def test_layers_and_shapes(tiny):
    _, _, _, sess = tiny
    assert sess.layers() == ["features", "features.conv1", "features.relu1", "pool", "fc"]
    shapes = sess.layer_shapes()
    assert shapes["features.conv1"] == (4, 8, 8)
    assert shapes["fc"] == (3,)
    assert sess.input_shape == (3, 8, 8)


def test_activations_match_a_direct_forward_pass(tiny):
    model, X, _, sess = tiny
    with torch.no_grad():
        maps = model.features(X)
    full = sess.activations("features.relu1", pool=None)
    assert full.shape == (37, 4, 8, 8)
    torch.testing.assert_close(full, maps)
    torch.testing.assert_close(sess.activations("features.relu1"), maps.mean(dim=(2, 3)))
    torch.testing.assert_close(
        sess.activations("features.relu1", pool="max"), maps.amax(dim=(2, 3))
    )
    torch.testing.assert_close(sess.logits(), model(X))
    torch.testing.assert_close(sess.penultimate(), model.pool(maps).flatten(1))


def test_activations_are_cached(tiny, monkeypatch):
    _, _, _, sess = tiny
    first = sess.activations("features.conv1")
    monkeypatch.setattr(sess, "_extract", lambda *a, **k: pytest.fail("extracted twice"))
    assert sess.activations("features.conv1") is first


def test_activations_many_in_one_pass(tiny):
    _, _, _, sess = tiny
    sess.layer_shapes()
    calls = []
    original = sess._forward
    sess._forward = lambda x: calls.append(x.shape[0]) or original(x)
    acts = sess.activations_many(["features.conv1", "features.relu1"])
    assert sum(calls) == 37
    assert set(acts) == {"features.conv1", "features.relu1"}
    assert (acts["features.relu1"] >= 0).all()


def test_large_extraction_spills_to_a_memory_mapped_file(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("REPWIDGETS_CACHE", str(tmp_path))
    model, X, y, _ = tiny
    sess = Session(model, (X, y), device="cpu", memory_budget_mb=0.001, progress=False)
    full = sess.activations("features.conv1", pool=None)
    assert list(tmp_path.rglob("*.npy")), "nothing was written to disk"
    with torch.no_grad():
        torch.testing.assert_close(full, model.features.conv1(X))


def test_budget_evicts_old_entries(tiny):
    model, X, y, _ = tiny
    one = 37 * 4 * 8 * 8 * 4
    sess = Session(model, (X, y), device="cpu", memory_budget_mb=1.5 * one / 2**20, progress=False)
    sess.activations("features.conv1", pool=None)
    sess.activations("features.relu1", pool=None)
    assert ("features.conv1", "test", None) not in sess._cache
    assert sess._cached_bytes() <= sess.memory_budget


def test_thumbnails_are_png_of_the_image(tiny):
    _, X, _, sess = tiny
    (png,) = sess.thumbnails([5], size=None)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (8, 8)
    expected = (X[5].permute(1, 2, 0) * 255).round().to(torch.uint8)
    assert torch.equal(torch.from_numpy(np.asarray(image).copy()), expected)
    big = sess.thumbnails([5, 5], size=32)
    assert Image.open(io.BytesIO(big[0])).size == (32, 32) and big[0] is big[1]


def test_unknown_layer_lists_the_available_ones(tiny):
    _, _, _, sess = tiny
    with pytest.raises(ValueError, match=r"Unknown layer 'conv9'.*features\.conv1"):
        sess.activations("conv9")


def test_bad_pool(tiny):
    with pytest.raises(ValueError, match="pool must be one of"):
        tiny[3].activations("fc", pool="median")


class _Pairs(Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_dataset_with_wrong_items_says_what_it_got():
    sess = Session(TinyNet(), {"test": _Pairs([("not an image", 1)])}, device="cpu")
    with pytest.raises(TypeError, match="image tensor; got str"):
        sess.logits()


def test_float_target_is_rejected():
    with pytest.raises(TypeError, match=r"Item 0 of split 'train' has target 0\.5 .*int class id"):
        Session(TinyNet(), {"test": _Pairs([(torch.rand(3, 8, 8), 0.5)])}, device="cpu")


def test_model_failure_reports_the_input_shape():
    data = {"test": _Pairs([(torch.rand(1, 8, 8), 0)] * 3)}
    sess = Session(TinyNet(), data, device="cpu", progress=False)
    with pytest.raises(RuntimeError, match=r"input batch of shape \(\d+, 1, 8, 8\).*3 channels"):
        sess.logits()


def test_empty_split_says_so():
    data = {"train": _Pairs([(torch.rand(3, 8, 8), 0)]), "test": _Pairs([])}
    sess = Session(TinyNet(), data, device="cpu")
    with pytest.raises(ValueError, match="Split 'test' is empty"):
        sess.activations("fc")


def test_not_a_model():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        Session("resnet", (torch.rand(2, 3, 8, 8), torch.tensor([0, 1])))


def test_pool_activations_keeps_vectors():
    v = torch.rand(5, 7)
    assert pool_activations(v, "mean") is v


def test_demo_session_is_exported():
    assert rw.Session is Session
    assert callable(rw.demo_session)


def test_prefetched_keeps_order_and_raises_loader_errors():
    from repwidgets.datasets.batches import prefetched

    assert list(prefetched(iter(range(50)), depth=2)) == list(range(50))

    def failing():
        yield 1
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for item in prefetched(failing()):
            got.append(item)
    assert got == [1]


def test_session_over_an_image_folder(tmp_path):
    from torchvision.datasets import ImageFolder

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog", "owl"):
        (tmp_path / cls).mkdir()
        for i in range(4):
            arr = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / cls / f"{i}.png")
    folder = ImageFolder(tmp_path)
    torch.manual_seed(0)
    model = TinyNet()
    sess = Session(model, folder, device="cpu", batch_size=5, progress=False)
    acts = sess.activations("features.conv1", "test")
    assert acts.shape == (12, 4)
    first = torch.from_numpy(np.array(Image.open(folder.samples[7][0]).convert("RGB")))
    first = first.permute(2, 0, 1).float().div(255).unsqueeze(0)
    with torch.no_grad():
        expected = model.features.conv1(first).mean(dim=(2, 3))[0]
    assert torch.allclose(acts[7], expected, atol=1e-5)
    assert sess.class_names == ["cat", "dog", "owl"]
    assert sess.logits("test").shape == (12, 3)


def test_unknown_layer_suggests_close_names():
    from repwidgets.session import resolve_layer

    model = TinyNet()
    with pytest.raises(ValueError, match=r"Did you mean 'features\.conv1'\?.*Available layers"):
        resolve_layer(model, "conv1")
    with pytest.raises(ValueError, match=r"Did you mean 'fc'\?"):
        resolve_layer(model, "fc2")
    with pytest.raises(ValueError) as info:
        resolve_layer(model, "zzz")
    assert "Did you mean" not in str(info.value)
    assert "features.conv1, features.relu1, pool, fc" in str(info.value)
    assert resolve_layer(model, "pool") is model.pool


def test_nan_images_are_reported_by_index_before_any_activation_is_kept():
    X = torch.rand(25, 3, 8, 8)
    X[[12, 14]] = float("nan")
    X[21, 0, 0, 0] = float("inf")
    sess = Session(TinyNet(), (X, torch.arange(25) % 3), device="cpu", batch_size=10)
    sess.progress = False
    with pytest.raises(ValueError, match=r"NaN or infinite values: sample\(s\) 12, 14 \("):
        sess.activations("features.conv1")
    assert not sess._cache
    X[[12, 14]] = 0.5
    with pytest.raises(ValueError, match=r"sample\(s\) 21 "):
        sess.logits()
    X[21] = 0.5
    assert torch.isfinite(sess.logits()).all()


def test_finite_checked_counts_indices_across_batches():
    from repwidgets.datasets.batches import finite_checked

    clean = torch.zeros(4, 2)
    dirty = torch.zeros(4, 2)
    dirty[3, 1] = float("nan")
    batches = [(clean, None), (clean, None), (dirty, None)]
    seen = []
    with pytest.raises(ValueError, match=r"sample\(s\) 11 "):
        for batch in finite_checked(batches, split="val"):
            seen.append(batch)
    assert len(seen) == 2


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def test_bf16_extraction_stays_within_the_stated_tolerance_and_stores_float32(tiny):
    from repwidgets.session import PRECISION_TOLERANCE

    model, X, y, exact = tiny
    assert exact.precision == "float32"  # "auto" on the CPU
    sess = Session(model, (X, y), device="cpu", batch_size=10, progress=False, precision="bf16")
    for got, want in [
        (sess.activations("features.conv1"), exact.activations("features.conv1")),
        (
            sess.activations("features.relu1", pool=None),
            exact.activations("features.relu1", pool=None),
        ),
        (sess.logits(), exact.logits()),
    ]:
        assert got.dtype == torch.float32
        error = relative_error(got, want)
        assert 0 < error < PRECISION_TOLERANCE["bf16"]  # bf16 did run, and stayed close


def test_autocast_follows_the_precision_and_restores_tf32(tiny):
    model, X, y, exact = tiny
    sess = Session(model, (X, y), device="cpu", progress=False, precision="bf16")
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    with sess.autocast():
        assert sess.forward(X[:2]).dtype == torch.bfloat16
    with sess.autocast(enabled=False):
        assert sess.forward(X[:2]).dtype == torch.float32
    with exact.autocast():
        assert exact.forward(X[:2]).dtype == torch.float32
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
    with pytest.raises(
        ValueError, match=r"precision must be one of \('auto', 'float32', 'tf32', 'bf16'\)"
    ):
        Session(model, (X, y), device="cpu", precision="fp8")


def test_auto_batch_size_fits_the_available_memory(tiny, monkeypatch):
    import repwidgets.session as session_module

    model, X, y, _ = tiny
    assert Session(model, (X, y), device="cpu").batch_size == 256  # the CPU default
    per_sample = 4 * (3 * 8 * 8 + 3 * 4 * 8 * 8 + 4 * 1 * 1 + 3)  # input + every layer
    monkeypatch.setattr(session_module, "available_memory", lambda device: 40 * per_sample)
    sess = Session(model, (X, y), device="cpu", progress=False)
    assert sess.batch_size == 10  # a quarter of the memory
    torch.testing.assert_close(sess.logits(), model(X))
    with pytest.raises(ValueError, match="batch_size must be 'auto' or an int >= 1, got 0"):
        Session(model, (X, y), device="cpu", batch_size=0)


def test_batch_size_for_rounds_to_a_multiple_and_keeps_at_least_one():
    from repwidgets.datasets.batches import batch_size_for

    assert batch_size_for(2**20, 2**30, cap=4096) == 512
    assert batch_size_for(2**20, 2**30, cap=100) == 96
    assert batch_size_for(2**30, 2**20, cap=4096) == 1
    assert batch_size_for(100, 1000, cap=4096, fraction=1.0, multiple=1) == 10
