"""CurationSelector in real headless Chromium: key presses reach Python and the file, the
band slider brings new samples, undo works, and reloading the file restores the marks.

The first tests drive the real Python widget object through the page harness; the
last goes all the way round through a JupyterLab kernel.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from harness import Harness, wait_until
from support import ROOT, ensure_bundle, need

pytestmark = pytest.mark.browser

SESSION_CODE = """\
import torch
import repwidgets as rw
from repwidgets.models import SmallCNN

torch.manual_seed(0)
data = rw.datasets.shapes(n_train=240, n_val=0, n_test=40, image_size=32)
sess = rw.Session(SmallCNN(4, widths=(8, 8, 16, 16)), data, device="cpu", progress=False)
"""


@pytest.fixture(scope="module")
def curation_bundle() -> Path:
    return ensure_bundle("curation")


@pytest.fixture(scope="module")
def sess():
    namespace: dict = {}
    exec(SESSION_CODE, namespace)
    return namespace["sess"]


@pytest.fixture(autouse=True)
def _fresh_registry():
    from repwidgets.curation_store import Curation

    Curation._forget()
    yield
    Curation._forget()


def file_marks(path: Path) -> dict[int, str]:
    return {e["sample"]: e["mark"] for e in json.loads(path.read_text())["marks"]}


def cell_samples(page) -> list[int]:
    return page.eval_on_selector_all(
        ".rw-cur-cell",
        "els => els.filter(e => e.style.display !== 'none').map(e => Number(e.dataset.sample))",
    )


def test_keys_mark_undo_and_band_in_the_browser(page, sess, curation_bundle, tmp_path, artifacts):
    from repwidgets.engines import midrange as mr

    path = tmp_path / "curation.json"
    m = mr.select(sess, 0, band=(0.25, 0.75))
    w = m.curate(path)
    h = Harness(page, w, curation_bundle).open()
    page.wait_for_selector(".rw-cur-cell")
    first, second = int(m.indices[0]), int(m.indices[1])
    assert cell_samples(page)[:2] == [first, second]
    page.wait_for_function(
        f"() => {{ const i = document.querySelector(\".rw-cur-cell[data-sample='{first}'] img\");"
        " return i && i.complete && i.naturalWidth > 0; }",
        timeout=30_000,
    )
    assert page.errors == []

    # focus the first sample with the mouse, mark it by key: Python and the file follow
    page.click(f".rw-cur-cell[data-sample='{first}'] .rw-cur-line")
    page.keyboard.press("k")
    assert wait_until(lambda: w.selected["keep"] == [first], page=page)
    assert file_marks(path) == {first: "keep"}
    h.push("marks")
    assert page.get_attribute(f".rw-cur-cell[data-sample='{first}']", "data-mark") == "keep"

    # the cursor moved on: "s" marks the second sample; "u" undoes it
    page.keyboard.press("s")
    assert wait_until(lambda: w.selected["spurious"] == [second], page=page)
    assert file_marks(path) == {first: "keep", second: "spurious"}
    page.keyboard.press("u")
    assert wait_until(lambda: w.selected["spurious"] == [], page=page)
    assert file_marks(path) == {first: "keep"}
    h.push("marks")
    assert page.get_attribute(f".rw-cur-cell[data-sample='{second}']", "data-mark") is None
    assert page.text_content(".rw-cur-count[data-mark='keep']") == "keep 1"

    # the mouse: the X button of the third cell excludes it
    third = int(m.indices[2])
    page.click(f".rw-cur-cell[data-sample='{third}'] button[data-set='exclude']")
    assert wait_until(lambda: w.selected["exclude"] == [third], page=page)
    page.screenshot(path=str(artifacts / "curation.png"))

    # the band slider (over score values, aligned with the histogram): dragging the low
    # end to the minimum and the high end to the middle of the range selects a new band
    lo_v, hi_v = w.histogram["range"]
    mid = (lo_v + hi_v) / 2
    page.eval_on_selector(
        ".rw-cur-lo", f"e => {{ e.value = '{lo_v}'; e.dispatchEvent(new Event('input')); }}"
    )
    page.eval_on_selector(
        ".rw-cur-hi", f"e => {{ e.value = '{mid}'; e.dispatchEvent(new Event('input')); }}"
    )
    assert wait_until(lambda: w.band[0] == 0.0 and w.band[1] != 0.75, page=page)
    low, high = w.band
    expected = mr.select(sess, 0, band=(low, high)).indices.tolist()
    assert w.candidates.samples.tolist() == expected
    assert w.limits[1] <= mid + (hi_v - lo_v) / 40  # the band ends near the dragged value
    h.push("items", "band", "limits", "histogram")
    page.wait_for_function(
        f"() => document.querySelector('.rw-cur-cell')?.dataset.sample === '{expected[0]}'"
    )
    shown = cell_samples(page)
    assert shown == expected[: len(shown)]
    assert f"{len(expected)} samples" in page.text_content(".rw-cur-bandtext")
    assert page.errors == []


def thumb_xy(page, selector: str) -> tuple[float, float]:
    """Page position of a range input's thumb (Chromium's thumb is 16 px wide)."""
    box = page.locator(selector).bounding_box()
    lo, hi, v = page.eval_on_selector(selector, "e => [e.min, e.max, e.value].map(Number)")
    frac = (v - lo) / (hi - lo) if hi > lo else 0.0
    return box["x"] + 8 + frac * (box["width"] - 16), box["y"] + box["height"] / 2


def test_dragging_one_handle_moves_only_that_end(page, sess, curation_bundle, tmp_path):
    from repwidgets.engines import midrange as mr

    path = tmp_path / "curation.json"
    w = mr.select(sess, 0, band=(0.5, 0.9), within="all").curate(path)
    h = Harness(page, w, curation_bundle).open()
    page.wait_for_selector(".rw-cur-cell")
    lowest = int(w.candidates.samples[-1])  # highest score first: the band's low end
    w.mark(lowest, "keep")
    h.push("marks")
    hi_before = page.eval_on_selector(".rw-cur-hi", "e => e.value")

    # drag the low handle a third of the way up, with the mouse
    x, y = thumb_xy(page, ".rw-cur-lo")
    x_hi, _ = thumb_xy(page, ".rw-cur-hi")
    page.mouse.move(x, y)
    page.mouse.down()
    for t in (0.1, 0.2, 0.33):
        page.mouse.move(x + t * (x_hi - x), y)
    page.mouse.up()
    assert wait_until(lambda: w.band[0] > 0.5, page=page), w.band
    assert w.band[1] == 0.9  # exactly: the high end did not move
    assert page.eval_on_selector(".rw-cur-hi", "e => e.value") == hi_before
    assert w.candidates.samples.tolist() == (
        mr.select(sess, 0, band=(w.band[0], 0.9), within="all").indices.tolist()
    )
    # the marked sample left the band: the page says so and the file keeps its mark
    assert lowest not in w.candidates.samples.tolist()
    h.push("items", "band", "limits", "histogram")
    page.wait_for_function(
        "() => document.querySelector('.rw-cur-outside').textContent.startsWith('1 marked')"
    )
    assert "kept in the file" in page.text_content(".rw-cur-outside")
    assert file_marks(path) == {lowest: "keep"}
    assert w.selected["keep"] == [lowest]
    assert page.errors == []


def test_reloading_the_file_restores_the_marks(page, sess, curation_bundle, tmp_path):
    from repwidgets.curation_store import Curation
    from repwidgets.engines import midrange as mr

    path = tmp_path / "curation.json"
    m = mr.select(sess, 1, band=(0.1, 0.9))
    a, b = int(m.indices[0]), int(m.indices[3])
    m.curate(path).mark(a, "spurious")
    m.curate(path).mark(b, "exclude")  # same file, same live curation
    Curation._forget()  # as after a kernel restart
    w = mr.select(sess, 1, band=(0.1, 0.9)).curate(path)
    assert w.selected == {"keep": [], "spurious": [a], "exclude": [b]}
    Harness(page, w, curation_bundle).open()
    page.wait_for_selector(f".rw-cur-cell[data-sample='{a}']")
    assert page.get_attribute(f".rw-cur-cell[data-sample='{a}']", "data-mark") == "spurious"
    assert page.get_attribute(f".rw-cur-cell[data-sample='{b}']", "data-mark") == "exclude"
    assert page.text_content(".rw-cur-count[data-mark='exclude']") == "exclude 1"


def test_key_press_in_jupyterlab_reaches_the_kernel_and_the_file(
    chromium, curation_bundle, tmp_path, artifacts
):
    need(importlib.util.find_spec("jupyterlab") is not None, "the Python package jupyterlab")
    import nbformat
    from test_gallery_kernel import Server, kernel_eval, open_and_run

    root = tmp_path / "notebooks"
    root.mkdir()
    cur_file = root / "marks.json"
    cells = [
        f"import sys\nsys.path[:0] = [{str(ROOT)!r}]\n" + SESSION_CODE,
        "m = rw.midrange.select(sess, 0, band=(0.25, 0.75))\n"
        f"cur = m.curate({str(cur_file)!r})\ncur",
    ]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, root / "curation.ipynb")
    server = Server("lab", root, tmp_path)
    page = chromium.new_page()
    try:
        server.wait_ready()
        open_and_run(page, server, "lab/tree/curation.ipynb", ".rw-cur-cell")
        first = int(page.get_attribute(".rw-cur-cell", "data-sample"))
        page.click(f".rw-cur-cell[data-sample='{first}'] .rw-cur-line")
        page.keyboard.press("x")

        def in_kernel():
            out = kernel_eval(server, "import json; print(json.dumps(cur.selected))")
            return json.loads(out)

        assert wait_until(lambda: in_kernel()["exclude"] == [first], timeout=30, page=page)
        assert file_marks(cur_file) == {first: "exclude"}
        page.wait_for_selector(f".rw-cur-cell[data-sample='{first}'][data-mark='exclude']")
        page.keyboard.press("u")
        assert wait_until(lambda: in_kernel()["exclude"] == [], timeout=30, page=page)
        assert file_marks(cur_file) == {}
        page.screenshot(path=str(artifacts / "curation-lab.png"))
    finally:
        page.close()
        server.stop()
