"""Concept discovery on the demo session, and its demo section (repwidgets.demo.concepts)."""

from __future__ import annotations

import pytest
import torch

from repwidgets.demo import concepts as concepts_demo
from repwidgets.engines import concepts as cd


@pytest.fixture(scope="module")
def demo_result(demo_session):
    return cd.discover(
        demo_session, "features.relu4", n_components=16, top_t=100, embedding=None, progress=False
    )


@pytest.mark.demo
def test_demo_a_concept_separates_the_artifact(demo_result, demo_session):
    r = demo_result
    artifact = demo_session.data.config["artifact"]
    a = demo_session.concept_index(artifact)
    best = float(r.concept_auc[:, a].max())
    # The demo model is trained where the tests run, and its weights differ between CPUs
    # (float reductions); the best artifact concept measured 0.907 to above 0.95 across
    # machines, and at least 0.8 on every architecture of the truth checks.
    assert best >= 0.85, r.to_frame().to_string()
    j = int(r.concept_auc[:, a].argmax())
    assert artifact in r.describe(j)


@pytest.mark.demo
def test_demo_outliers_are_enriched_in_artifact_samples_of_the_wrong_class(
    demo_result, demo_session
):
    r = demo_result
    data = demo_session.data
    has = data.concepts("test")[:, data.concept_index(data.config["artifact"])]
    wrong = has & (data.targets("test") != data.config["spurious_class"])
    out = r.outliers()
    assert len(out) >= 10
    flagged = float(wrong[torch.tensor(out["index"].to_numpy())].float().mean())
    base = float(wrong.float().mean())
    assert flagged > base + 0.15, (flagged, base)


@pytest.mark.demo
def test_demo_concept_maps_cover_the_image(demo_result, demo_session):
    maps = cd.concept_map(demo_session, demo_result, 0)
    assert maps.shape == (8, *demo_session.input_shape[1:])
    assert torch.isfinite(maps).all()


@pytest.mark.demo
def test_demo_section_looks_at_the_last_convolution_after_its_relu(demo_session):
    assert demo_session.default_layer() == "features.relu4"


def test_run_and_report_on_a_small_session(tmp_path):
    import repwidgets as rw
    from repwidgets.models import SmallCNN
    from repwidgets.report import Report

    torch.manual_seed(0)
    data = rw.datasets.shapes(n_train=40, n_val=20, n_test=200, image_size=32, seed=0)
    sess = rw.Session(SmallCNN(4, widths=(8, 16, 16, 16)).eval(), data, device="cpu")
    sess.progress = False
    section = concepts_demo.run(sess)
    r = section["result"]
    assert r.layer == sess.default_layer() and section["title"] == "Concept discovery"
    assert r.params["n_components"] == 16 and r.params["embedding"] == "pca"
    assert section["summary_lines"][0].startswith(f"Layer {r.layer}, split test: ")
    report = Report("demo")
    concepts_demo.add_to_report(report, section, sess)
    html = report.save(tmp_path / "index.html").read_text()
    assert "Concepts, most relevant first" in html
