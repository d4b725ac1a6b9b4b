"""The demo report reads as a report: tables, images and figures, not console lines;
it opens offline and is written atomically with ordinary permissions."""

from __future__ import annotations

import os
import re
import stat
from html.parser import HTMLParser

import pandas as pd
import pytest
import torch

from repwidgets.demo import add_section, prose_lines, run_section
from repwidgets.report import Report
from repwidgets.results import atomic_write_bytes

#: A Python repr, such as ``MidrangeResult(class='circle', ...)`` or ``Row(id='p1', ...)``.
REPR = re.compile(r"\b[A-Z]\w*\((\w+=|\.\.\.)")


class Page(HTMLParser):
    """What a reader sees (text outside scripts and styles), and the page's parts."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[tuple[str, dict]] = []
        self._hidden = 0
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._hidden += tag in ("script", "style")

    def handle_endtag(self, tag):
        self._hidden -= tag in ("script", "style")

    def handle_data(self, data):
        if not self._hidden:
            self.text.append(data)

    def count(self, tag: str) -> int:
        return sum(t == tag for t, _ in self.tags)

    def visible(self) -> str:
        return " ".join(self.text)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_report_file_has_ordinary_permissions(tmp_path, umask_022):
    path = Report("perms").save(tmp_path / "out" / "index.html")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["index.html"], "temp file left behind"


def test_rewriting_keeps_the_mode_the_file_has(tmp_path, umask_022):
    path = atomic_write_bytes(tmp_path / "private.html", b"one")
    path.chmod(0o600)
    atomic_write_bytes(path, b"two")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_bytes() == b"two"


def test_umask_is_respected(tmp_path):
    old = os.umask(0o027)
    try:
        path = atomic_write_bytes(tmp_path / "x.html", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_prose_lines_leave_out_reprs_lists_and_text_tables():
    lines = [
        "What the middle of a class reveals: MidrangeResult(class='circle', band=[0.0, 0.5])",
        "Top outliers (neuron, LOF score, INVERT label on test images):",
        "      12   1.80  watermark (AUC 0.99)",
        "ERM              0.730          0.010           0.000",
        "method",
        "(6.2 s)",
        "Median AUC 0.964; 15 neurons with AUC >= 0.9.",
    ]
    assert prose_lines(lines) == ["Median AUC 0.964; 15 neurons with AUC >= 0.9."]


def test_a_section_shows_sentences_not_its_console_lines():
    section = {
        "title": "Mid-range curation",
        "summary_lines": [
            "What the middle of a class reveals: MidrangeResult(class='circle', split='train')",
            "worst-group test accuracy: ERM 0.000 -> curated last layer 0.850",
        ],
        "tables": [pd.DataFrame({"method": ["ERM"], "accuracy": [0.73]})],
        "figures": [],
    }
    page = add_section(Report("r"), "midrange", section).render()
    text = Page(page).visible()
    assert "worst-group test accuracy" in text and not REPR.search(text)
    assert Page(page).count("table") == 1


def test_tables_are_escaped_and_list_cells_read_as_text(tmp_path):
    frame = pd.DataFrame({"formula": ["<b>a</b> AND b"], "neighbours": [[3, 4]]})
    page = Report("t").add_table(frame).render()
    assert "&lt;b&gt;a&lt;/b&gt; AND b" in page and "<b>a</b>" not in page
    assert "<td>3, 4</td>" in page


# ------------------------------------------------------------------ the demo sections
@pytest.fixture(scope="module")
def tiny_session():
    """An untrained small CNN on a few generated images: every engine runs in seconds."""
    import repwidgets as rw
    from repwidgets.models import SmallCNN

    torch.manual_seed(0)
    data = rw.datasets.shapes(n_train=200, n_val=100, n_test=120, image_size=32, seed=0)
    model = SmallCNN(4, widths=(8, 16, 16, 16)).eval()
    return rw.Session(model, data, device="cpu", progress=False)


SECTION_OPTIONS = {
    "invert": {},
    "dora": {"steps": 8},
    "concepts": {},
    "midrange": {"seeds": (0,)},
    "attribution": {"max_train": 200},
}


@pytest.fixture(scope="module")
def demo_page(tiny_session, tmp_path_factory):
    """The page and each method's section (or the error its demo raised)."""
    report = Report("demo")
    sections = {}
    for method, options in SECTION_OPTIONS.items():
        try:
            sections[method] = run_section(method, tiny_session, **options)
        except Exception as exc:  # one broken method must not hide what the others show
            sections[method] = exc
            continue
        add_section(report, method, sections[method], tiny_session)
    path = report.save(tmp_path_factory.mktemp("report") / "index.html")
    return path.read_text(), sections


def sections_ran(sections: dict, *methods: str) -> None:
    failed = {m: repr(sections[m]) for m in methods if isinstance(sections[m], Exception)}
    assert not failed, f"demo sections failed: {failed}"


@pytest.mark.slow
def test_demo_report_shows_no_reprs(demo_page):
    page, _ = demo_page
    text = Page(page).visible()
    assert not REPR.findall(text), REPR.findall(text)[:5]


@pytest.mark.slow
def test_demo_report_has_tables_images_and_figures(demo_page):
    page, sections = demo_page
    sections_ran(sections, *SECTION_OPTIONS)
    parsed = Page(page)
    assert parsed.count("table") >= 10
    images = [a["src"] for t, a in parsed.tags if t == "img"]
    assert len(images) >= 60 and all(src.startswith("data:image/png;base64,") for src in images)
    assert page.count("data-root-id") >= 5, "figures are missing"
    for heading in (
        "Their synthetic signals (s-AMS)",  # DORA: s-AMS of the outliers
        "<th>INVERT label</th>",  # DORA: what the outliers detect
        "The best-labelled neurons",  # INVERT: table, then each neuron's top images
        "Marked keep",  # mid-range: the curated samples
        "Last-layer retraining on the test split",  # mid-range: comparison table
        "Most attributed training samples",  # attribution
    ):
        assert heading in page, heading
    assert re.search(r"<h3>Neuron \d+: .*\(AUC [01]\.\d{3}\)</h3>", page)


@pytest.mark.slow
def test_demo_report_opens_offline(demo_page):
    page, _ = demo_page
    parsed = Page(page)
    for tag, attrs in parsed.tags:
        for key in ("src", "href"):
            value = attrs.get(key) or ""
            assert not value.startswith(("http:", "https:", "//")), (tag, value)
    assert "cdn.bokeh.org" not in page and "Bokeh" in page
