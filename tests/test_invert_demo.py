"""INVERT's demo section (repwidgets.demo.invert) on the demo session."""

from __future__ import annotations

import re

import pytest
import torch

from repwidgets.demo import invert as invert_demo
from repwidgets.engines import invert
from repwidgets.engines.ranks import auc_matrix


@pytest.fixture(scope="module")
def tiny_session():
    """Generated shapes and an untrained small CNN: quick, with concept labels."""
    import repwidgets as rw
    from repwidgets.models import SmallCNN

    torch.manual_seed(0)
    data = rw.datasets.shapes(n_train=40, n_val=20, n_test=120, image_size=32, seed=0)
    model = SmallCNN(4, widths=(8, 16, 16, 16)).eval()
    return rw.Session(model, data, device="cpu", progress=False)


def test_run_looks_at_pool_and_the_report_shows_the_best_neurons(tiny_session, tmp_path):
    from repwidgets.report import Report

    section = invert_demo.run(tiny_session)
    r = section["result"]
    assert r.layer == "pool" and section["title"] == "INVERT: neuron labels (pool)"
    assert section["summary_lines"][0].startswith("INVERT on pool: 16 neurons labelled")
    assert r.params["min_fraction"] == 0.01 and r.params["max_length"] == 3
    report = Report("demo")
    invert_demo.add_to_report(report, section, tiny_session)
    html = report.save(tmp_path / "index.html").read_text()
    assert "The best-labelled neurons" in html
    assert html.count("data:image/png") >= 8  # the top images of the best neurons


@pytest.mark.demo
def test_demo_artifact_detectors_are_labelled_with_the_artifact(demo_session):
    sess = demo_session
    artifact = sess.data.config.get("artifact")
    assert artifact in sess.concept_names
    k = sess.concept_index(artifact)
    layer = "pool"
    acts = sess.activations(layer, split="test")
    detectors = torch.nonzero(auc_matrix(acts.cpu(), sess.concepts("test"))[:, k] >= 0.95)
    detectors = detectors.flatten().tolist()
    assert detectors, "the demo model should have neurons that detect the planted artifact"
    r = invert.explain(sess, layer, max_length=3, beam_size=5, progress=False)
    for j in detectors:
        assert any(c["concept"] == artifact for c in r.formulas[j]["clauses"]), (
            j,
            r.formulas[j]["text"],
        )

    section = invert_demo.run(sess)
    assert section["result"].layer == layer
    text = "\n".join(section["summary_lines"])
    assert section["figures"]
    assert f"{len(detectors)} neurons detect it" in text
    assert f"{len(detectors)} of them are labelled with a formula containing it" in text
    for j in detectors[:12]:
        label = re.search(rf"artifact detector {j}: (.+) \(AUC", text)
        assert label and artifact in label.group(1), (j, text)
