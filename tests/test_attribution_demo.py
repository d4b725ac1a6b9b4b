"""The attribution section of the demo (repwidgets.demo.attribution) on the demo model."""

from __future__ import annotations

import re

import pytest

from repwidgets.demo import attribution as demo


@pytest.mark.demo
def test_demo_top_attributed_samples_carry_the_artifact(demo_session):
    from bokeh.models import LayoutDOM

    section = demo.run(demo_session)
    assert section["title"] and all(isinstance(f, LayoutDOM) for f in section["figures"])
    text = "\n".join(section["summary_lines"])
    found = re.search(r"precision at 100 = ([0-9.]+) \(base rate ([0-9.]+)\)", text)
    assert found, text
    precision, base = float(found.group(1)), float(found.group(2))
    assert precision >= 0.9, text
    assert base < 0.5  # the artifact is a minority of the training samples

    from repwidgets.report import Report

    report = Report("attribution")
    demo.add_to_report(report, section, demo_session)
    html = report.render()
    assert "Probes for" in html
    assert "Most attributed training samples" in html
    assert html.count("data:image/png;base64") >= 12
