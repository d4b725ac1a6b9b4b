"""Tests of the embedded datasets (shapes, digits), DataBundle and as_bundle."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from repwidgets.datasets import DataBundle, as_bundle, digits, shapes
from repwidgets.datasets.shapes import COLOURS, artifact_mask, render_shapes

PALETTE = np.array(list(COLOURS.values()), dtype=np.float32)


def small(**kw):
    base = {"n_train": 400, "n_test": 200, "n_val": 40, "noise": 0.0}
    base.update(kw)
    return shapes(**base)


def saturated(img: torch.Tensor) -> torch.Tensor:
    """Pixels of the (coloured) shape: the grey background has max - min == 0."""
    return (img.max(0).values - img.min(0).values) > 0.3


# ------------------------------------------------------------------ determinism
def test_shapes_deterministic_for_a_seed():
    a = shapes(n_train=50, n_test=30, n_val=10, seed=3)
    b = shapes(n_train=50, n_test=30, n_val=10, seed=3)
    c = shapes(n_train=50, n_test=30, n_val=10, seed=4)
    for split in ("train", "val", "test"):
        assert torch.equal(a.dataset(split).render(range(10)), b.dataset(split).render(range(10)))
        assert torch.equal(a.concepts(split), b.concepts(split))
        assert torch.equal(a.groups(split), b.groups(split))
    assert not torch.equal(a.test.render(range(10)), c.test.render(range(10)))
    assert not torch.equal(a.train.render(range(10)), a.test.render(range(10)))


def test_image_independent_of_how_it_is_accessed():
    data = shapes(n_train=40, n_test=40, n_val=0, seed=1)
    ds = data.test
    single = torch.stack([ds[i][0] for i in (5, 17, 30)])
    batch = ds.render([30, 5, 17, 2])
    assert torch.equal(single[0], batch[1])
    assert torch.equal(single[1], batch[2])
    assert torch.equal(single[2], batch[0])
    loader = DataLoader(ds, batch_size=16, shuffle=False)
    x, y = next(iter(loader))
    assert x.shape == (16, 3, 64, 64)
    assert torch.equal(x[5], single[0])
    assert torch.equal(y, data.targets("test")[:16])
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_image_size_and_labels_without_rendering():
    data = shapes(n_train=30, n_test=20, n_val=0, image_size=32)
    assert data.test[0][0].shape == (3, 32, 32)
    assert "val" not in data.splits
    assert data.concepts("train").dtype == torch.bool
    assert data.concepts("train").shape == (30, len(data.concept_names))
    assert data.targets("train").dtype == torch.long


# ------------------------------------------------------------------ concept labels vs pixels
def test_concepts_match_rendered_shape_colour_and_position():
    data = small(artifact=None, seed=2)
    ds = data.test
    imgs = ds.render(range(ds.__len__()))
    C = data.concepts("test")
    names = data.concept_names
    P = ds.params
    colour_cols = [names.index(c) for c in COLOURS]
    for i in range(len(ds)):
        mask = saturated(imgs[i])
        assert mask.sum() > 20, "the shape must be visible"
        mean_rgb = imgs[i][:, mask].mean(1).numpy()
        nearest = int(np.argmin(((PALETTE - mean_rgb) ** 2).sum(1)))
        assert C[i, colour_cols].nonzero().flatten().tolist() == [nearest]
        ys, xs = mask.nonzero(as_tuple=True)
        cx, cy = float(xs.float().mean() + 0.5), float(ys.float().mean() + 0.5)
        assert abs(cx - float(P["cx"][i])) < 1.5 and abs(cy - float(P["cy"][i])) < 1.5
        if abs(cx - 32) > 2 and abs(cy - 32) > 2:
            quadrant = ("pos_top" if cy < 32 else "pos_bottom") + ("_left" if cx < 32 else "_right")
            assert C[i, names.index(quadrant)]
    # exactly one shape, colour, texture, size bucket, quadrant per sample
    for group in (slice(0, 4), slice(4, 8), slice(8, 12), slice(12, 15), slice(15, 19)):
        assert torch.all(C[:, group].sum(1) == 1)
    assert torch.equal(C[:, :4].float().argmax(1), data.targets("test"))


def test_shape_area_follows_class_and_size_bucket():
    data = small(artifact=None, seed=5, n_test=400)
    ds = data.test
    imgs = ds.render(range(len(ds)))
    area = torch.stack([saturated(im).sum() for im in imgs]).float().numpy()
    r = ds.params["radius"]
    circles = ds.params["shape"] == 0
    ratio = area[circles] / (np.pi * r[circles] ** 2)
    assert np.all(np.abs(ratio - 1) < 0.2), ratio
    C = data.concepts("test").numpy()
    names = data.concept_names
    for k in range(4):  # larger size bucket -> larger area, within each class
        sel = ds.params["shape"] == k
        means = [
            area[sel & C[:, names.index(b)]].mean()
            for b in ("size_small", "size_medium", "size_large")
        ]
        assert means[0] < means[1] < means[2]


@pytest.mark.parametrize("kind", ["watermark", "border", "patch"])
def test_artifact_pixels_exactly_where_labelled(kind):
    data = small(artifact=kind, seed=7, spurious_strength=0.9)
    for split in ("train", "test"):
        ds = data.dataset(split)
        n = 120
        imgs = ds.render(range(n)).numpy()
        clean_params = dict(ds.params, artifact=np.zeros_like(ds.params["artifact"]))
        clean = render_shapes(clean_params, np.arange(n), ds.cfg, ds.split_code)
        label = data.concepts(split)[:n, data.concept_index(kind)].numpy()
        assert label.any() and (~label).any()
        for i in range(n):
            diff = np.abs(imgs[i] - clean[i]).max(0) > 1e-6
            if not label[i]:
                assert not diff.any()
                continue
            region = artifact_mask(kind, 64, ds.params["patch_xy"][i : i + 1])[0] > 0
            assert not (diff & ~region).any(), "artifact drawn outside its region"
            assert diff[region].mean() > 0.9
            if kind == "border":
                assert np.allclose(imgs[i][:, region], np.array([[1.0], [0.0], [1.0]]))
            if kind == "watermark":
                assert np.allclose(np.sort(np.unique(imgs[i][:, region])), [0.05, 0.95])


def test_patch_does_not_cover_the_shape():
    data = small(artifact="patch", seed=11)
    ds = data.test
    art = np.flatnonzero(ds.params["artifact"])[:50]
    imgs = ds.render(art)
    clean_params = dict(ds.params, artifact=np.zeros_like(ds.params["artifact"]))
    clean = torch.from_numpy(render_shapes(clean_params, art, ds.cfg, ds.split_code))
    for a, b in zip(imgs, clean):
        assert saturated(a).sum() == saturated(b).sum()


# ------------------------------------------------------------------ rates and groups
def test_artifact_rates_train_biased_test_balanced():
    data = shapes(n_train=4000, n_test=800, n_val=400, spurious_class="square", noise=0.0)
    art = data.concept_index("watermark")
    y = data.targets("train")
    a = data.concepts("train")[:, art]
    assert abs(float(a[y == 1].float().mean()) - 0.95) < 0.03
    for k in (0, 2, 3):
        assert float(a[y == k].float().mean()) < 0.045
    assert torch.bincount(y).tolist() == [1000] * 4
    for split in ("val", "test"):
        yt, at = data.targets(split), data.concepts(split)[:, art]
        for k in range(4):
            assert int(at[yt == k].sum()) == int((yt == k).sum()) // 2
    other = shapes(n_train=2000, n_test=40, n_val=0, spurious_strength=0.5, artifact_rate=0.1)
    y, a = other.targets("train"), other.concepts("train")[:, -1]
    assert abs(float(a[y == 0].float().mean()) - 0.5) < 0.06
    assert abs(float(a[y != 0].float().mean()) - 0.1) < 0.03
    unbalanced = shapes(n_train=40, n_test=2000, n_val=0, balanced_test=False)
    yt, at = unbalanced.targets("test"), unbalanced.concepts("test")[:, -1]
    assert float(at[yt == 0].float().mean()) > 0.85 and float(at[yt != 0].float().mean()) < 0.05


def test_group_labels_are_class_times_artifact():
    data = small(artifact="border")
    g, y = data.groups("test"), data.targets("test")
    a = data.concepts("test")[:, data.concept_index("border")]
    assert torch.equal(g, y * 2 + a.long())
    assert data.group_names[:2] == ["circle/no-border", "circle/border"]
    assert len(data.group_names) == 8
    assert torch.bincount(g, minlength=8).min() > 0
    none = small(artifact=None)
    assert torch.equal(none.groups("test"), none.targets("test"))
    assert "watermark" not in none.concept_names


def test_shapes_bad_arguments():
    with pytest.raises(ValueError, match="watermark"):
        shapes(artifact="logo")
    with pytest.raises(ValueError, match="circle"):
        shapes(spurious_class="hexagon")
    with pytest.raises(ValueError, match="spurious_strength"):
        shapes(spurious_strength=1.5)
    with pytest.raises(ValueError, match="n_train"):
        shapes(n_train=-1)


# ------------------------------------------------------------------ bundle
def test_bundle_errors_name_the_choices():
    data = small()
    with pytest.raises(ValueError, match="available splits"):
        data.dataset("holdout")
    with pytest.raises(ValueError, match="pos_top_left"):
        data.concept_index("hexagon")
    assert data.concept_index("stripes") == data.concept_names.index("stripes")
    assert data.n("val") == 40
    imgs = data.images([0, 3], split="val")
    assert torch.equal(imgs[1], data.val[3][0])


def test_as_bundle_tensors_and_errors():
    X = torch.rand(12, 3, 16, 16)
    y = torch.arange(12) % 3
    b = as_bundle((X, y))
    assert isinstance(b, DataBundle)
    assert b.class_names == ["0", "1", "2"]
    assert torch.equal(b.targets("test"), y)
    assert torch.equal(b.test[4][0], X[4])
    assert b.groups("test") is None
    with pytest.raises(ValueError, match="no concept labels"):
        b.concepts("test")
    u8 = as_bundle((np.full((4, 1, 8, 8), 255, dtype=np.uint8), np.array([0, 1, 0, 1])))
    assert float(u8.test[0][0].max()) == 1.0
    with pytest.raises(ValueError, match="12.*11|11.*12"):
        as_bundle((X, y[:11]))
    with pytest.raises(TypeError, match="accepted"):
        as_bundle(42)
    with pytest.raises(TypeError, match="list of 3 items"):
        as_bundle([X, y, y])
    with pytest.raises(TypeError, match=r"\(X, y\)"):
        as_bundle(X)
    with pytest.raises(TypeError, match="not a map-style Dataset"):
        as_bundle({"train": 3})
    assert as_bundle(b) is b


def test_as_bundle_single_dataset_and_dict():
    data = small()
    one = as_bundle(data.test)
    assert one.train is one.test is data.test
    assert one.class_names == ["circle", "square", "triangle", "star"]
    assert torch.equal(one.targets("test"), data.targets("test"))
    d = as_bundle({"train": data.train, "test": data.test}, name="mine")
    assert d.name == "mine" and d.n("train") == 400

    class Plain(torch.utils.data.Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return torch.full((1, 4, 4), i / 6), i % 2

    p = as_bundle(Plain())
    assert p.class_names == ["0", "1"]
    assert p.targets("test").tolist() == [0, 1, 0, 1, 0, 1]


def test_as_bundle_image_folder(tmp_path):
    pytest.importorskip("torchvision")
    from PIL import Image
    from torchvision.datasets import ImageFolder

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            arr = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / cls / f"{i}.png")
    folder = ImageFolder(tmp_path)
    b = as_bundle(folder)
    assert b.class_names == ["cat", "dog"]
    assert b.targets("test").tolist() == [0, 0, 0, 1, 1, 1]
    img, target = b.test[4]
    assert isinstance(img, torch.Tensor) and img.shape == (3, 10, 12)
    assert target == 1
    expected = np.asarray(Image.open(folder.samples[4][0]).convert("RGB")) / 255.0
    assert np.allclose(img.permute(1, 2, 0).numpy(), expected, atol=1e-6)
    sized = as_bundle(folder, image_size=8)
    assert sized.images([0, 5]).shape == (2, 3, 8, 8)


# ------------------------------------------------------------------ digits
def test_digits_bundle():
    pytest.importorskip("sklearn")
    data = digits(artifact="border", spurious_class=3, seed=0)
    total = sum(data.n(s) for s in ("train", "val", "test"))
    assert total == 1797
    x, y = data.test[0]
    assert x.shape == (3, 32, 32) and 0 <= y <= 9
    C = data.concepts("train")
    names = data.concept_names
    assert names[:2] == ["digit_0", "digit_1"] and names[-4:] == [
        "thin",
        "medium",
        "thick",
        "border",
    ]
    assert torch.equal(C[:, :10].float().argmax(1), data.targets("train"))
    assert torch.all(C[:, 10:13].sum(1) == 1)
    art = C[:, -1]
    y = data.targets("train")
    assert float(art[y == 3].float().mean()) > 0.85
    assert float(art[y != 3].float().mean()) < 0.06
    imgs = data.train.render(range(data.n("train")))
    region = torch.from_numpy(artifact_mask("border", 32)[0] > 0)
    magenta = torch.tensor([1.0, 0.0, 1.0])[:, None]
    is_magenta = torch.tensor(
        [torch.allclose(im[:, region], magenta.expand(3, int(region.sum()))) for im in imgs]
    )
    assert torch.equal(is_magenta, art)
    yt, at = data.targets("test"), data.concepts("test")[:, -1]
    for k in range(10):
        assert abs(int(at[yt == k].sum()) - int((yt == k).sum()) / 2) <= 0.5
    # thicker strokes -> more ink, within a digit
    ink = imgs[:, 0, 2:-2, 2:-2].sum((1, 2))
    sel = y == 8
    assert ink[sel & C[:, 10]].mean() < ink[sel & C[:, 12]].mean()
    plain = digits(artifact=None)
    assert "border" not in plain.concept_names
    assert torch.equal(plain.groups("test"), plain.targets("test"))
    with pytest.raises(ValueError, match="artifact"):
        digits(artifact="sticker")


def test_float_targets_of_shape_n_by_2_name_the_item_and_the_fix():
    from torch.utils.data import TensorDataset

    X = torch.rand(6, 3, 4, 4)
    y = torch.tensor([[1.0, 0.0]] * 6)
    with pytest.raises(TypeError) as info:
        as_bundle({"train": TensorDataset(X, y), "test": TensorDataset(X, y)})
    message = str(info.value)
    assert "Item 0 of split 'train'" in message
    assert "shape [2]" in message and "float32" in message
    assert "int class ids" in message and "argmax(dim=1)" in message


def test_targets_attribute_of_wrong_shape_or_fractions_is_rejected():
    from repwidgets.datasets.bundle import class_ids

    with pytest.raises(TypeError, match=r"shape \[5, 2\].*argmax"):
        class_ids(torch.rand(5, 2), "train")
    with pytest.raises(TypeError, match=r"Item 2 of split 'test' has target .*0\.5"):
        class_ids(torch.tensor([0.0, 1.0, 0.5]), "test")
    assert class_ids(np.array([2.0, 0.0]), "test").tolist() == [2, 0]
    assert class_ids(torch.tensor([[1], [3]]), "test").tolist() == [1, 3]


def test_bool_and_numpy_int_targets_read_as_class_ids():
    from repwidgets.datasets.bundle import class_id

    assert class_id(np.int64(4), 0, "train") == 4
    assert class_id(torch.tensor(2), 0, "train") == 2
    with pytest.raises(TypeError, match="Item 7 of split 'test' has target 'cat'"):
        class_id("cat", 7, "test")


def test_missing_concepts_say_which_constructor_and_argument_to_use():
    bundle = as_bundle((torch.rand(4, 3, 4, 4), torch.tensor([0, 1, 0, 1])))
    with pytest.raises(ValueError) as info:
        bundle.concepts("test")
    message = str(info.value)
    assert "no concept labels for split 'test'" in message
    assert "DataBundle(" in message and "concepts={'train'" in message
    assert "concept_names=" in message
