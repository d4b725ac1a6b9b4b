"""Own-model configurations end to end: each through a Session and every engine.

A small torchvision ``VisionTransformer`` (token layers), a ConvNeXt-like channels-last
block, models returning a dict or an object with ``.logits``, a model behind input
normalisation, and an image folder with a concept table. Every value is compared with
what a plain forward hook on the right axis, the unwrapped model or a closed form gives.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from own_models import ChannelsLast, tiny_vit
from torch import nn

import repwidgets as rw
from repwidgets.datasets import DataBundle, TensorImageDataset

N_TRAIN, N_TEST = 48, 40


class Unwrapped(nn.Module):
    """The same network as :class:`ChannelsLast`, returning the logits tensor."""

    def __init__(self, inner: ChannelsLast) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)["logits"]


class Out:
    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits


class ObjectOutput(nn.Module):
    """A small CNN returning an object with ``.logits``, as Hugging Face models do."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return Out(self.head(self.relu(self.conv(x)).mean(dim=(2, 3))))


def images(n: int, seed: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g), torch.arange(n) % 4


def hooked(model: nn.Module, module: nn.Module, x: torch.Tensor, preprocess=None):
    """The raw output of ``module`` on ``x``, by a plain forward hook."""
    store = {}
    handle = module.register_forward_hook(lambda _m, _i, o: store.setdefault("o", o))
    try:
        with torch.no_grad():
            model(preprocess(x) if preprocess else x)
    finally:
        handle.remove()
    return store["o"]


def planted_bundle(model: nn.Module, module: nn.Module, neuron: int, pool) -> DataBundle:
    """Random images with concepts: "planted" = the neuron's pooled activation above its
    median (split by split), "noise" = a coin flip, "half" = the first half of a split."""
    splits, concepts = {}, {}
    for split, n, seed in (("train", N_TRAIN, 1), ("test", N_TEST, 2)):
        X, y = images(n, seed)
        a = pool(hooked(model, module, X))[:, neuron]
        coin = torch.rand(n, generator=torch.Generator().manual_seed(seed + 10)) > 0.5
        half = torch.arange(n) < n // 2
        concepts[split] = torch.stack([a > a.median(), coin, half], dim=1)
        splits[split] = TensorImageDataset(X, y)
    return DataBundle(
        "planted",
        splits,
        ["a", "b", "c", "d"],
        concept_names=["planted", "noise", "half"],
        concepts=concepts,
    )


# --- a vision transformer: token layers ------------------------------------------------


@pytest.fixture(scope="module")
def vit_session():
    model = tiny_vit()
    block = model.encoder.layers.encoder_layer_1
    data = planted_bundle(model, block, neuron=5, pool=lambda o: o.mean(dim=1))
    return rw.Session(model, data, device="cpu", progress=False), model, block


def test_vit_activations_are_the_tokens_mean_on_the_last_axis(vit_session):
    sess, model, block = vit_session
    layer = "encoder.layers.encoder_layer_1"
    raw = hooked(model, block, sess.images(range(N_TEST), "test"))  # [n, 17, 24]
    assert raw.shape == (N_TEST, 17, 24)
    assert torch.allclose(sess.activations(layer, "test"), raw.mean(dim=1), atol=1e-5)
    assert torch.allclose(sess.activations(layer, "test", pool="cls"), raw[:, 0], atol=1e-6)


def test_invert_labels_every_hidden_unit_of_a_token_layer(vit_session):
    sess, _, _ = vit_session
    r = rw.invert.explain(
        sess, "encoder.layers.encoder_layer_1", max_length=1, min_fraction=0.0, progress=False
    )
    frame = r.to_frame()
    assert sorted(frame["neuron"].tolist()) == list(range(24))  # hidden units, not tokens
    row = frame.set_index("neuron").loc[5]
    assert row["formula"] == "planted" and row["auc"] == pytest.approx(1.0)


def test_concepts_on_a_token_layer_read_the_pooled_activations(vit_session):
    sess, _, _ = vit_session
    layer = "encoder.layers.encoder_layer_1"
    r = rw.concepts.discover(sess, layer, n_components=4, embedding=None, progress=False)
    X = sess.activations(layer, "test").double()
    V = torch.as_tensor(np.asarray(r.directions), dtype=torch.float64)
    assert V.shape[1] == 24
    # the first direction is the top right singular vector of the pooled activations
    top = torch.linalg.svd(X, full_matrices=False).Vh[0]
    assert abs(float(V[0] @ top)) == pytest.approx(1.0, abs=1e-4)


def test_probe_on_a_token_layer_reads_the_planted_unit(vit_session):
    sess, _, _ = vit_session
    p = rw.attribution.probe_layers(
        sess, "planted", layers=["encoder.layers.encoder_layer_1"], fit_split="train"
    )
    frame = p.to_frame()
    assert float(frame["balanced_accuracy"].iloc[0]) >= 0.8


def test_dora_on_a_token_layer_makes_one_signal_per_hidden_unit(vit_session):
    sess, _, _ = vit_session
    r = rw.dora.analyze(
        sess, "encoder.layers.encoder_layer_1", n_signals=1, steps=4, embedding=None
    )
    assert r.signals.shape[:2] == (24, 1)
    assert float(r.signals.min()) >= 0.0 and float(r.signals.max()) <= 1.0


# --- a channels-last block returning a dict --------------------------------------------


@pytest.fixture(scope="module")
def dict_session():
    model = ChannelsLast().eval()
    data = planted_bundle(model, model.act, neuron=7, pool=lambda o: o.mean(dim=(1, 2)))
    sess = rw.Session(model, data, device="cpu", progress=False, output="logits")
    return sess, model, data


def test_channels_last_activations_and_logits_through_output(dict_session):
    sess, model, _ = dict_session
    x = sess.images(range(N_TEST), "test")
    assert sess.layout("act").kind == "channels_last"
    raw = hooked(model, model.act, x)  # [n, H, W, 10]
    assert torch.allclose(sess.activations("act", "test"), raw.mean(dim=(1, 2)), atol=1e-5)
    assert torch.allclose(sess.activations("act", "test", pool="max"), raw.amax(dim=(1, 2)))
    with torch.no_grad():
        assert torch.allclose(sess.logits("test"), model(x)["logits"], atol=1e-5)


def test_invert_labels_every_channel_of_a_channels_last_layer(dict_session):
    sess, _, _ = dict_session
    frame = rw.invert.explain(
        sess, "act", max_length=1, min_fraction=0.0, progress=False
    ).to_frame()
    assert sorted(frame["neuron"].tolist()) == list(range(10))
    row = frame.set_index("neuron").loc[7]
    assert row["formula"] == "planted" and row["auc"] == pytest.approx(1.0)


def test_midrange_band_on_a_dict_model_is_the_closed_form(dict_session):
    sess, _, _ = dict_session
    logits = sess.logits("train")[:, 2]
    low, high = float(logits.quantile(0.3)), float(logits.quantile(0.8))
    m = rw.midrange.select(sess, 2, band=(low, high), absolute=True, within="all")
    expected = torch.nonzero((logits >= low) & (logits <= high)).flatten()
    assert sorted(m.indices.tolist()) == expected.tolist()
    assert len(m.indices) == pytest.approx(0.5 * N_TRAIN, abs=2)


def test_trak_on_the_dict_model_equals_the_unwrapped_model(dict_session):
    sess, model, data = dict_session
    train, targets = data.train, torch.utils.data.Subset(data.test, range(6))
    kw = dict(proj_dim=None, progress=False, device="cpu")
    wrapped = rw.attribution.trak_scores(model, train, targets, output="logits", **kw)
    plain = rw.attribution.trak_scores(Unwrapped(model).eval(), train, targets, **kw)
    assert wrapped.scores.shape == (N_TRAIN, 6)
    assert torch.allclose(wrapped.scores, plain.scores, rtol=1e-4, atol=1e-6)


def test_concept_attribution_on_a_dict_model_equals_the_unwrapped_model(dict_session):
    sess, model, data = dict_session
    plain = rw.Session(Unwrapped(model).eval(), data, device="cpu", progress=False)
    kw = dict(n_models=1, proj_dim=64, n_targets=8, fit_split="train", progress=False)
    r = rw.attribution.concept_attribution(sess, "planted", layer="act", layers=("act",), **kw)
    q = rw.attribution.concept_attribution(
        plain, "planted", layer="inner.act", layers=("inner.act",), **kw
    )
    assert len(r.to_frame()) == N_TRAIN
    scores = torch.as_tensor(r.scores)
    assert torch.isfinite(scores).all() and scores.abs().max() > 0
    assert torch.allclose(scores, torch.as_tensor(q.scores), rtol=1e-4, atol=1e-6)


# --- an object with .logits ------------------------------------------------------------


def test_an_object_with_logits_gives_the_same_activations_and_invert():
    model = ObjectOutput().eval()
    data = planted_bundle(model, model.relu, neuron=3, pool=lambda o: o.mean(dim=(2, 3)))
    sess = rw.Session(model, data, device="cpu", progress=False, output="logits")
    x = sess.images(range(N_TEST), "test")
    with torch.no_grad():
        assert torch.allclose(sess.logits("test"), model(x).logits, atol=1e-6)
    raw = hooked(model, model.relu, x)
    assert torch.allclose(sess.activations("relu", "test"), raw.mean(dim=(2, 3)), atol=1e-6)
    frame = rw.invert.explain(sess, "relu", max_length=1, min_fraction=0.0, progress=False)
    assert frame.to_frame().set_index("neuron").loc[3, "formula"] == "planted"


# --- input normalisation ---------------------------------------------------------------


def test_a_normalised_model_sees_normalised_inputs_and_dora_signals_stay_in_pixel_space():
    normalize = torchvision.transforms.Normalize([0.5, 0.4, 0.3], [0.2, 0.25, 0.3])
    model = ObjectOutput().eval()
    data = planted_bundle(model, model.relu, neuron=0, pool=lambda o: o.mean(dim=(2, 3)))
    sess = rw.Session(
        model, data, device="cpu", progress=False, output="logits", preprocess=normalize
    )
    x = sess.images(range(N_TEST), "test")
    raw = hooked(model, model.relu, x, preprocess=normalize)
    assert torch.allclose(sess.activations("relu", "test"), raw.mean(dim=(2, 3)), atol=1e-5)
    r = rw.dora.analyze(sess, "relu", n_signals=1, steps=6, embedding=None, progress=False)
    assert r.signals.shape[:2] == (8, 1)
    assert float(r.signals.min()) >= 0.0 and float(r.signals.max()) <= 1.0


# --- an image folder with a concept table ----------------------------------------------


def write_folder(root, n_per_class: int = 4, size: int = 16) -> pd.DataFrame:
    """root/<class>/<i>.png for two classes and a table with a file and two concepts."""
    from PIL import Image

    rows, rng = [], np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(n_per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i}.png")
            rows.append({"file": f"{cls}/{i}.png", "striped": i % 2, "outdoor": i < 2})
    return pd.DataFrame(rows)


def test_an_image_folder_gives_pixels_classes_and_concepts(tmp_path):
    from PIL import Image

    table = write_folder(tmp_path)
    table.to_csv(tmp_path / "concepts.csv", index=False)
    data = rw.datasets.image_folder(
        tmp_path, tmp_path / "concepts.csv", fractions=(0.5, 0.0, 0.5), seed=0
    )
    assert data.class_names == ["cat", "dog"] and data.concept_names == ["striped", "outdoor"]
    for split in ("train", "test"):
        files = data.files(split)
        assert len(files) == data.n(split) == 4
        expected = table.set_index("file").loc[files, ["striped", "outdoor"]].to_numpy()
        assert data.concepts(split).numpy().tolist() == expected.astype(bool).tolist()
        image, target = data.dataset(split)[0]
        pixels = np.asarray(Image.open(tmp_path / files[0]), dtype=np.float32) / 255
        assert torch.allclose(image, torch.from_numpy(pixels).permute(2, 0, 1), atol=1e-6)
        assert target == data.class_names.index(files[0].split("/")[0])


def test_an_image_folder_names_a_missing_row(tmp_path):
    table = write_folder(tmp_path)
    table[table["file"] != "dog/3.png"].to_csv(tmp_path / "concepts.csv", index=False)
    with pytest.raises(ValueError, match=r"dog/3\.png"):
        rw.datasets.image_folder(tmp_path, tmp_path / "concepts.csv")


def test_an_image_folder_names_a_corrupt_image(tmp_path):
    table = write_folder(tmp_path)
    (tmp_path / "cat" / "2.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match=r"cat/2\.png"):
        rw.datasets.image_folder(tmp_path, table, check_files=True)
