"""Mid-range curation on the demo session and the demo section (repwidgets.demo.midrange).

The section runs once (two seeds) and the tests read its band, curation and comparison:
the same calls the tests would make themselves, computed once.
"""

from __future__ import annotations

import pytest
import torch

from repwidgets.demo import midrange as demo
from repwidgets.engines import midrange as mr


@pytest.fixture(scope="module")
def section(demo_session):
    return demo.run(demo_session, seeds=(0, 1))


@pytest.mark.demo
@pytest.mark.slow
def test_demo_band_enriched_and_curation_nears_oracle(demo_session, section):
    sess = demo_session
    k = mr.suggest_class(sess)
    y, g = sess.targets("train"), sess.groups("train")
    m = section["result"]  # select(sess, k, band=(0.0, 0.5), within="class")
    assert (m.class_index, m.band, m.within, m.split) == (k, [0.0, 0.5], "class", "train")
    minority = g[y == k] % 2 == 0  # the class without the artifact
    assert float((m.groups % 2 == 0).double().mean()) > 1.5 * float(minority.double().mean())
    m_all = section["curated_band"]  # select(sess, k, **DEMO_BAND)
    assert m_all.indices.tolist() == mr.select(sess, k, **mr.DEMO_BAND).indices.tolist()
    cur = section["curation"]  # auto_curate(m_all, rule="concepts")
    assert cur.context["rule"] == "concepts"
    assert cur.context["typical_pattern"] == {"watermark": True}
    spurious = torch.tensor(cur.selected["spurious"])
    gs, ys = g[spurious], y[spurious]
    assert bool((((ys == k) & (gs % 2 == 0)) | ((ys != k) & (gs % 2 == 1))).all())
    table = section["comparison"]  # compare(sess, cur, seeds=(0, 1))
    assert table.seeds == [0, 1]
    wga = table["worst_group_accuracy_mean"]
    assert wga["curated"] > wga["ERM"] + 0.3
    assert wga["curated"] > wga["random"] + 0.05
    assert wga["curated"] > wga["oracle"] - 0.1


@pytest.mark.demo
@pytest.mark.slow
def test_demo_default_band_is_enriched_in_confounders(demo_session):
    """With its defaults the band holds confounders at >= 2x their base rate (the group
    labels only measure it: the band is chosen from logits and class labels)."""
    sess = demo_session
    k = sess.class_names.index("circle")
    m = mr.select(sess, "circle")
    assert m.band_choice["rule"] == "auto" and m.within == "all"
    y, g = sess.targets("train"), sess.groups("train")
    confounder = ((y == k) & (g % 2 == 0)) | ((y != k) & (g % 2 == 1))
    share = float(confounder[m.indices].double().mean())
    assert len(m) >= 100
    assert share >= 2.0 * float(confounder.double().mean())
    assert int(confounder[m.indices].sum()) >= 0.5 * int(confounder.sum())


@pytest.mark.demo
@pytest.mark.slow
def test_demo_section_reports_the_comparison(demo_session, section):
    from repwidgets.report import Report

    assert section["title"] == "Mid-range curation"
    assert len(section["figures"]) == 2
    line = next(x for x in section["summary_lines"] if x.startswith("worst-group test accuracy"))
    erm = float(line.split("ERM ")[1].split()[0])
    curated = float(line.split("curated last layer ")[1].split()[0])
    assert curated > erm + 0.3
    assert any(row.split()[0] == "oracle" for row in section["summary_lines"] if row.strip())
    report = Report("demo")
    demo.add_to_report(report, section, demo_session)
    page = report.render()
    assert "Last-layer retraining on the test split" in page and "Marked spurious" in page
