"""Truth across models: the methods' checks on architectures other than the demo CNN.

The quick tests check the registry and the architectures (forward shapes, layer names,
the cache key). The slow ones load the registry's trained models (trained once, then
cached, like the demo model) and assert the figures that held on every model in
``benchmarks/bench_truth.py``. They run on the ResNet by default (the demo model's
checks live with each method's tests); ``REPWIDGETS_TRUTH_MODELS=all`` (``make truth``)
or a comma-separated list of registry names runs them on more models.
"""

from __future__ import annotations

import os

import pytest
import torch

import repwidgets as rw
from repwidgets.engines.ranks import auc_matrix
from repwidgets.models import zoo_extra
from repwidgets.models.architectures import GroupNormNet, NarrowResNet, PlainVGG

#: What the DORA check asks on every model (METHODS.md: Spearman >= 0.3).
DORA_MIN_SPEARMAN = 0.3
#: ... and of the artifact detectors where the layer has them, with the defaults (plain
#: cosine): within vs between distance AUC (measured 0.80-0.96 on the four models).
DORA_MIN_GROUPING = 0.75
#: Their outlier-score AUC with the option for groups of detectors (the k-th-neighbour
#: score on centred responses, ``rw.dora.reanalyze(r, outlier="knn", center=True)``;
#: measured 0.84-0.90 on the demo, the ResNet and the GroupNorm net) and with the
#: default LOF where it holds (0.85 on the demo and the ResNet). The validation's
#: targets are 0.8; these are a little lower against machine differences.
DORA_MIN_OUTLIER_AUC = 0.75
#: Where no outlier score ranks the detectors high (README, "What still falls short"):
#: the VGG's patch detectors group tightly but sit inside the dense part of its layer.
DORA_OUTLIERS_FALL_SHORT = {"vgg"}
#: Where LOF, the default score, does not rank them (README): a tight group of
#: detectors, each the others' neighbour, looks like any dense cluster to LOF.
DORA_LOF_FALLS_SHORT = {"groupnorm", "vgg"}
#: How far DORA's data-free outlier AUC may fall below the same score on the functional
#: distances of test images (measured: 0.15-0.50 above it with LOF, 0.17-0.32 with the
#: option, on every model): a group that is no outlier on data is none for DORA either.
DORA_DATA_MARGIN = 0.05
#: A single detector among the other neurons, DORA's setting, ranked by LOF: clearly
#: above chance on every model (measured 0.66-0.90) and at the validation's target where
#: a lone detector stands apart on data too (0.88 and 0.90 where the data give >= 0.9).
DORA_MIN_SINGLE_DETECTOR_AUC = 0.6
DORA_MIN_SINGLE_DETECTOR_AUC_APART = 0.75


def _truth_models() -> list[str]:
    """The registry models the slow checks run on (``$REPWIDGETS_TRUTH_MODELS``)."""
    chosen = os.environ.get("REPWIDGETS_TRUTH_MODELS", "resnet").strip()
    if chosen == "all":
        return zoo_extra.names()
    names = [n.strip() for n in chosen.split(",") if n.strip()]
    for name in names:
        zoo_extra.entry(name)  # an unknown name fails here, listing the registered ones
    return names


TRUTH_MODELS = _truth_models()


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


# ------------------------------------------------------------ the trained models
class _Sessions(dict):
    """Sessions on registry models, each made (trained once, then cached) when first asked."""

    def __missing__(self, name: str):
        self[name] = zoo_extra.session(name)
        return self[name]


@pytest.fixture(scope="module")
def sessions():
    return _Sessions()


def _artifact_detectors(sess, layer: str, artifact: str) -> list[int]:
    acts = sess.activations(layer, split="test").detach().cpu()
    a = list(sess.concept_names).index(artifact)
    return torch.nonzero(auc_matrix(acts, sess.concepts("test"))[:, a] >= 0.95).flatten().tolist()


@pytest.mark.demo
@pytest.mark.slow
@pytest.mark.parametrize("name", TRUTH_MODELS)
def test_every_model_learns_its_shortcut(sessions, name):
    """Each model takes its planted shortcut: right on (nearly) every image of the
    spurious class with the artifact, wrong on (nearly) every image of some group."""
    sess, e = sessions[name], zoo_extra.entry(name)
    ev = rw.models.evaluate(sess.model, sess.data, split="test")
    spurious = sess.class_names[int(e.data_config["spurious_class"])]
    assert ev["groups"][f"{spurious}/{e.artifact}"] >= 0.9, ev
    assert ev["worst_group_accuracy"] <= 0.1, ev


@pytest.mark.demo
@pytest.mark.slow
@pytest.mark.parametrize("name", TRUTH_MODELS)
def test_invert_labels_every_artifact_detector(sessions, name):
    sess, e = sessions[name], zoo_extra.entry(name)
    layer = e.layers["invert"]
    detectors = _artifact_detectors(sess, layer, e.artifact)
    assert len(detectors) >= 2
    r = rw.invert.explain(
        sess, layer, neurons=detectors, max_length=3, beam_size=5, min_fraction=0.01
    )
    for formula in r.formulas:
        assert any(c["concept"] == e.artifact for c in formula["clauses"]), formula["text"]


@pytest.mark.demo
@pytest.mark.slow
@pytest.mark.parametrize("name", TRUTH_MODELS)
def test_dora_distances_agree_with_function(sessions, name):
    """EA distances of one 32-pixel s-AMS per neuron (64 steps, the engine's defaults:
    no robustness transforms, the plain cosine, LOF) agree with the neurons' functional
    distance on test images on every architecture, and where the layer has artifact
    detectors they sit together. They rank high among the outliers with the
    k-th-neighbour score on centred responses (the same s-AMS, reanalysed) and, where
    they are few and isolated, with LOF too; never lower than the same score ranks them
    on the functional distances of test images; and one detector alone among the other
    neurons ranks high with LOF (README, "Truth across models")."""
    sess, e = sessions[name], zoo_extra.entry(name)
    r = rw.dora.analyze(
        sess, e.layers["dora"], n_signals=1, steps=64, signal_size=32, embedding=None
    )
    assert r.params["outlier"] == "lof" and torch.equal(r.outlier_scores, r.lof_scores)
    v = rw.dora.validate(sess, r, concept=e.artifact)
    assert v["n_live"] >= 20, v
    assert v["spearman"] >= DORA_MIN_SPEARMAN, v
    assert v["n_detectors"] >= 2, v  # every registry layer has the artifact's detectors
    assert v["within_between_auc"] >= DORA_MIN_GROUPING, v
    if name not in DORA_LOF_FALLS_SHORT:
        assert v["outlier_auc"] >= DORA_MIN_OUTLIER_AUC, v
    assert v["single_detector_auc"] >= DORA_MIN_SINGLE_DETECTOR_AUC, v
    if v["single_detector_auc_on_data"] >= 0.9:
        assert v["single_detector_auc"] >= DORA_MIN_SINGLE_DETECTOR_AUC_APART, v
    knn = rw.dora.validate(
        sess, rw.dora.reanalyze(r, outlier="knn", center=True), concept=e.artifact
    )
    for check in (v, knn):  # never below what the same score makes of the data
        assert check["outlier_auc"] >= check["outlier_auc_on_data"] - DORA_DATA_MARGIN, check
    if name not in DORA_OUTLIERS_FALL_SHORT:
        assert knn["outlier_auc"] >= DORA_MIN_OUTLIER_AUC, knn
    if name in DORA_LOF_FALLS_SHORT - DORA_OUTLIERS_FALL_SHORT:
        # the tight group LOF takes for inliers: the k-th neighbour ranks it far higher
        assert knn["outlier_auc"] >= v["outlier_auc"] + 0.2, (knn, v)


@pytest.mark.demo
@pytest.mark.slow
@pytest.mark.parametrize("name", TRUTH_MODELS)
def test_curated_retraining_beats_erm_and_random(sessions, name):
    """Mid-range curation with the engine's defaults is never worse than ERM or than
    retraining on a random sample of the same size (worst-group accuracy). How much of
    the gap to the oracle it closes depends on the model (see the README)."""
    sess, e = sessions[name], zoo_extra.entry(name)
    m = rw.midrange.select(sess, int(e.data_config["spurious_class"]))
    cur = rw.midrange.auto_curate(m)
    wga = rw.midrange.compare(sess, cur, seeds=(0,))["worst_group_accuracy_mean"]
    assert wga["curated"] >= wga["ERM"], wga
    assert wga["curated"] >= wga["random"], wga


@pytest.mark.demo
@pytest.mark.slow
@pytest.mark.parametrize("name", TRUTH_MODELS)
def test_concept_discovery_finds_the_artifact(sessions, name):
    sess, e = sessions[name], zoo_extra.entry(name)
    r = rw.concepts.discover(sess, e.layers["concepts"], n_components=16, embedding="pca")
    a = list(r.concept_names).index(e.artifact)
    assert r.n_concepts >= 1
    assert float(r.concept_auc[:, a].max()) >= 0.8  # VGG 0.83, the others 0.95-1.00


@pytest.mark.demo
@pytest.mark.slow
@pytest.mark.parametrize("name", TRUTH_MODELS)
def test_attribution_finds_the_artifact_carriers(sessions, name):
    """The training samples attributed most to the artifact probe at the pooled layer
    carry the artifact (500 attributed samples, one model)."""
    sess, e = sessions[name], zoo_extra.entry(name)
    r = rw.attribution.concept_attribution(
        sess,
        e.artifact,
        layer="pool",
        layers=["pool"],
        n_models=1,
        proj_dim=512,
        max_train=500,
    )
    base = float(torch.as_tensor(r.concept_labels).float().mean())
    assert base < 0.4
    assert r.precision_at(100) >= 0.9, (r.precision_at(100), base)
