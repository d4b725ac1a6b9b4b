"""DORA on a session (repwidgets.engines.dora.pipeline and .validation) and the DORA
section of the demo (repwidgets.demo.dora)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from dora_cases import DetectorNet

from repwidgets.engines import dora


@pytest.fixture(scope="module")
def tiny_session():
    from repwidgets.session import Session

    g = torch.Generator().manual_seed(0)
    X = torch.rand(24, 3, 24, 24, generator=g)
    y = torch.randint(0, 2, (24,), generator=g)
    return Session(DetectorNet(), (X, y), device="cpu", progress=False)


def test_session_analyze_plot_and_frame(tiny_session):
    from bokeh.models import HoverTool
    from bokeh.plotting import figure

    r = dora.analyze(tiny_session, "relu", n_signals=2, steps=30, embedding="mds")
    assert r.layer == "relu" and r.signals.shape == (5, 2, 3, 24, 24)
    assert r.distances.shape == (5, 5)
    assert r.dead() == [4]
    frame = r.to_frame()
    assert len(frame) == 5 and frame["is_dead"].sum() == 1
    fig = r.plot()
    assert isinstance(fig, figure)
    hover = [t for t in fig.tools if isinstance(t, HoverTool)]
    assert hover and "@img" in hover[0].tooltips
    uris = [u for rd in fig.renderers for u in rd.data_source.data["img"]]
    assert len(uris) == 5 and all(u.startswith("data:image/png;base64,") for u in uris)
    assert r.params["steps"] == 30 and r.params["n_signals"] == 2
    assert r.params["signal_shape"] == [3, 24, 24]
    assert r.context["layer"] == "relu" and r._session is tiny_session


def test_session_analyze_takes_a_config_and_its_params(tiny_session):
    config = dora.DoraConfig(n_signals=1, steps=3, signal_size=16, embedding=None)
    r = dora.analyze(tiny_session, "relu", config, neurons=[0, 1, 3])
    assert r.signals.shape == (3, 1, 3, 16, 16) and r.neurons.tolist() == [0, 1, 3]
    assert r.params["signal_shape"] == [3, 16, 16]
    again = dora.analyze(tiny_session, "relu", r.params, neurons=[0, 1, 3])
    assert torch.equal(again.signals, r.signals)
    with pytest.raises(TypeError, match="no setting 'step'. Did you mean 'steps'"):
        dora.analyze(tiny_session, "relu", step=3)


def test_session_analyze_unknown_layer(tiny_session):
    with pytest.raises(ValueError, match="Unknown layer"):
        dora.analyze(tiny_session, "features.conv9", steps=1)


# ----------------------------------------------------------------------- validation
@pytest.fixture(scope="module")
def colour_session():
    """Fixed colour and stripe detectors on the shapes data, with concept labels."""
    import repwidgets as rw
    from repwidgets.session import Session

    data = rw.datasets.shapes(n_train=40, n_val=20, n_test=80, image_size=24, seed=0)
    return Session(DetectorNet(), data, device="cpu", progress=False)


def test_validate_finds_the_known_red_detectors(colour_session, tmp_path):
    """Neurons 0 and 3 detect red (3 is twice 0): validation names them as the
    concept's detectors, and DORA put them next to each other."""
    r = dora.analyze(colour_session, "relu", n_signals=2, steps=30, embedding="mds")
    v = dora.validate(colour_session, r, concept="red", detector_auc=0.9)  # theirs: 0.94
    assert isinstance(v, dora.DoraValidation)
    assert v.layer == "relu" and v.concept == "red" and v.n_neurons == 5
    assert v["detectors"] == [0, 3] and v.n_detectors == 2
    assert v.n_dead == 1 and v.n_live == 4
    assert v["within_between_auc"] == 1.0 and v.passes["within_between"]
    assert v.params == {"split": "test", "detector_auc": 0.9}
    assert dora.validate(colour_session, r, concept=4).concept == "red"  # by column
    # reads like the dict it replaces
    assert set(v.keys()) == set(v.to_dict()) and "passes" in v and "params" not in v
    assert v.get("nope", 7) == 7
    with pytest.raises(KeyError, match="the validation has layer, concept"):
        v["nope"]
    with pytest.raises(ValueError, match="Unknown concept 'purple'"):
        dora.validate(colour_session, r, concept="purple")


def test_validate_ranks_by_the_results_outlier_score(colour_session):
    """With ``outlier="knn"`` the outlier figures are those of the k-th-neighbour score;
    ``lof_auc`` keeps LOF's. Both are checked against the scores computed here."""
    from repwidgets.engines.dora.validation import _auc

    r = dora.analyze(colour_session, "relu", n_signals=2, steps=30, embedding=None)
    r = dora.reanalyze(r, outlier="lof")
    knn = dora.reanalyze(r, outlier="knn", n_neighbors=1)
    assert torch.equal(knn.activations, r.activations) and knn.signals is r.signals
    assert knn.params["neuron_axis"] == r.params["neuron_axis"]
    v, vk = (dora.validate(colour_session, x, "red", detector_auc=0.9) for x in (r, knn))
    live = ~r.is_dead.numpy()
    red = np.isin(r.neurons.numpy()[live], [0, 3])
    assert v.outlier_auc == v.lof_auc == _auc(r.lof_scores.double().numpy()[live], red)
    assert vk.outlier_auc == _auc(knn.outlier_scores.double().numpy()[live], red)
    assert vk.lof_auc == _auc(knn.lof_scores.double().numpy()[live], red)
    # 4 live neurons, k = 1: neurons 0 and 3 (3 = 2 x 0) are each other's twin, distance 0
    assert vk.outlier_auc == 0.0 and vk.detectors_in_top == 0
    with pytest.raises(TypeError, match="must be a DoraResult"):
        dora.reanalyze(v)


def _validation(**changes) -> dora.DoraValidation:
    values = dict(
        layer="features.conv4",
        concept="watermark",
        n_neurons=64,
        n_live=60,
        n_dead=3,
        n_data_dead=1,
        spearman=0.81,
        n_detectors=3,
        detectors=[5, 17, 40],
        detector_concept_auc=[0.99, 0.97, 0.96],
        within_between_auc=0.92,
        outlier_auc=float("nan"),
        detectors_in_top=2,
        detectors_flagged=1,
        n_flagged=2,
        map_within_between_auc=0.88,
        passes={
            "spearman": True,
            "within_between": True,
            "outliers": True,
            "single_detector": False,
        },
        params={"split": "test", "detector_auc": 0.95},
        lof_auc=0.9,
        outlier_auc_on_data=0.4,
        single_detector_auc=0.7,
        single_detector_auc_on_data=0.95,
    )
    values.update(changes)
    return dora.DoraValidation(**values)


def test_validation_save_load_round_trip(tmp_path):
    v = _validation()
    back = dora.DoraValidation.load(v.save(tmp_path / "validation.safetensors"))
    assert math.isnan(back.outlier_auc)
    assert {k: x for k, x in back.to_dict().items() if k != "outlier_auc"} == {
        k: x for k, x in v.to_dict().items() if k != "outlier_auc"
    }
    assert back.params == v.params and back["detectors"] == [5, 17, 40]
    with pytest.raises(ValueError, match="holds a DoraValidation, not a DoraResult"):
        dora.DoraResult.load(tmp_path / "validation.safetensors")


def test_validation_frame_and_plot():
    from bokeh.plotting import figure

    frame = _validation().to_frame()
    assert frame["check"].tolist()[0] == "Spearman: EA vs functional distance"
    assert frame["target"].tolist() == [0.3, 0.8, 0.8, 0.8]
    assert frame["passes"].tolist() == [True, True, True, False]
    assert frame["value"].iloc[3] == 0.7
    assert math.isnan(frame["value"].iloc[2])
    assert isinstance(_validation(spearman=-0.2).plot(), figure)


# ----------------------------------------------------------------- the demo section
def test_demo_section_and_its_report(colour_session):
    from repwidgets.demo import dora as demo
    from repwidgets.report import Report

    section = demo.run(colour_session, layer="relu", steps=4, n_signals=1, signal_size=16)
    r, v = section["result"], section["validation"]
    assert r.params["steps"] == 4 and r.params["embedding"] == "mds"
    assert isinstance(v, dora.DoraValidation) and v.concept == "watermark"
    assert section["title"].startswith("DORA") and len(section["figures"]) == 1
    assert any(line.startswith("(1) EA distance") for line in section["summary_lines"])
    report = Report("test")
    demo.add_to_report(report, section, colour_session)
    html = report.render()
    assert "The most outlying neurons" in html and "Checks on real test images" in html
    assert "LOF score" in html and r.params["outlier"] == "lof"  # the default score


def test_demo_section_ranks_by_the_results_outlier_score(colour_session):
    """With ``outlier="knn"`` the demo lists, names and checks the k-th-neighbour
    distance, the score the result was analysed with."""
    from repwidgets.demo import dora as demo
    from repwidgets.report import Report

    section = demo.run(
        colour_session, layer="relu", steps=4, n_signals=1, signal_size=16, outlier="knn"
    )
    r, lines = section["result"], section["summary_lines"]
    assert "flagged as outliers by k-th-neighbour distance" in lines[0]
    assert "Top outliers (neuron, k-th-neighbour distance," in lines[1]
    rows = [line.split() for line in lines if line.startswith("    ")]
    frame = r.to_frame().set_index("neuron")
    assert [int(n) for n, *_ in rows] == [
        int(n)
        for n in r.to_frame()
        .dropna(subset=["outlier_score"])
        .sort_values("outlier_score", ascending=False)["neuron"]
    ][:8]
    for n, v, *_ in rows:
        assert float(v) == pytest.approx(frame.loc[int(n), "outlier_score"], abs=0.006)
    assert any("k-th-neighbour distance AUC" in line for line in lines)
    report = Report("test")
    demo.add_to_report(report, section, colour_session)
    html = report.render()
    assert "k-th-neighbour distance of the EA distances" in html and "LOF score" not in html


@pytest.mark.demo
@pytest.mark.slow
def test_demo_distances_tell_the_truth(demo_session):
    """On the demo model, the data-free EA distances agree with what the neurons do on
    real test images, and the planted artifact's detectors stand out together."""
    from repwidgets.demo import dora as demo

    section = demo.run(demo_session, embedding=None)
    r, v = section["result"], section["validation"]
    assert r.params["signal_shape"] == [3, 32, 32]
    assert v["n_live"] >= 0.5 * v["n_neurons"], v
    # (1) EA distance vs functional distance sqrt((1 - r) / 2) over pairs of live neurons
    assert v["spearman"] >= 0.3, v
    # (2) the artifact detectors are closer to each other than to the other neurons
    assert v["n_detectors"] >= 2, v
    assert v["within_between_auc"] >= 0.8, v
    # (3) ... and they stand out as outliers (LOF) or as their own cluster
    assert v["passes"]["outliers"], v
    # dead neurons are set aside, never outliers
    assert not (r.is_dead & r.is_outlier).any()
    # the top outliers are printed with their INVERT labels; a detector's names the artifact
    rows = [line.split(None, 2) for line in section["summary_lines"] if line.startswith("    ")]
    assert 1 <= len(rows) <= 8
    artifact = demo_session.data.config["artifact"]
    for neuron, _, label in rows:
        if int(neuron) in set(v["detectors"]):
            assert artifact in label, rows
