"""Result persistence (safetensors + JSON, no pickle) and the offline HTML report."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from bokeh.plotting import figure

from repwidgets.report import Report
from repwidgets.results import Result, atomic_write_bytes


@dataclasses.dataclass
class ToyResult(Result):
    scores: torch.Tensor
    names: list
    table: np.ndarray
    by_key: dict
    layer: str = "fc"

    def to_frame(self):
        return pd.DataFrame({"name": self.names, "score": self.scores.numpy()})

    def plot(self):
        fig = figure(title="toy")
        fig.line([0, 1], [0, 1])
        return fig


@dataclasses.dataclass
class OtherResult(Result):
    x: int = 0


def make_toy():
    return ToyResult(
        scores=torch.tensor([0.5, 0.25, 1.0]),
        names=["a", "<b>", "c"],
        table=np.arange(6, dtype=np.int64).reshape(2, 3),
        by_key={"m": torch.ones(2, 2, dtype=torch.bool)},
        _session="live",
    )


def test_save_and_load_round_trip(tmp_path):
    r = make_toy()
    path = r.save(tmp_path / "toy.safetensors")
    back = ToyResult.load(path)
    assert torch.equal(back.scores, r.scores)
    assert isinstance(back.table, np.ndarray) and np.array_equal(back.table, r.table)
    assert back.by_key["m"].dtype == torch.bool and back.by_key["m"].all()
    assert back.names == r.names and back.layer == "fc"
    assert back._session is None, "runtime-only fields must not be saved"


def test_loading_the_wrong_type_names_the_right_one(tmp_path):
    path = make_toy().save(tmp_path / "toy.safetensors")
    with pytest.raises(ValueError, match=r"holds a ToyResult.*ToyResult.load"):
        OtherResult.load(path)


def test_loading_a_foreign_file_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"definitely not safetensors")
    with pytest.raises(ValueError, match="not a repwidgets result file"):
        ToyResult.load(path)
    with pytest.raises(FileNotFoundError, match="No saved result"):
        ToyResult.load(tmp_path / "missing.safetensors")


def test_unserialisable_field_is_named(tmp_path):
    r = OtherResult(x=object())
    with pytest.raises(TypeError, match="neither a tensor nor JSON"):
        r.save(tmp_path / "x.safetensors")


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "keep.txt"
    atomic_write_bytes(path, b"old")

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"], "temp file left behind"


def test_report_is_offline_and_escapes_text(tmp_path):
    rep = Report("Toy <report>")
    rep.add_section("Scores & more")
    rep.add_text("<script>alert(1)</script>")
    rep.add_result(make_toy())
    rep.add_images([b"\x89PNG fake"], ["<img src=x onerror=alert(1)>"])
    page = rep.save(tmp_path / "index.html").read_text()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;b&gt;" in page  # table cells are escaped
    assert "Bokeh" in page and "cdn.bokeh.org" not in page, "bokeh must be inline"
    assert "http://" not in page.split("<body>")[0].replace("http://www.w3.org", "")


def test_export_html(tmp_path):
    path = make_toy().export_html(tmp_path / "toy.html")
    assert "ToyResult" in path.read_text()


def test_mismatched_captions():
    with pytest.raises(ValueError, match="2 images but 1 captions"):
        Report().add_images([b"a", b"b"], ["x"])
