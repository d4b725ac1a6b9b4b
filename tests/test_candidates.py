"""Candidates: the samples offered for curation, checked on the way in."""

from __future__ import annotations

import pytest
import torch

from repwidgets.candidates import Candidates


def make(n: int = 3, reselect=None) -> Candidates:
    return Candidates(
        samples=torch.arange(n) * 10,
        scores=torch.linspace(0, 1, n),
        labels=torch.zeros(n, dtype=torch.long),
        predictions=torch.ones(n, dtype=torch.long),
        groups=torch.full((n,), -1),
        population=torch.rand(50),
        band=(0.25, 0.75),
        limits=(0.0, 1.0),
        class_names=["circle", "square"],
        group_names=["circle / plain"],
        split="train",
        score_name="logit",
        n_split=100,
        context={"source": "test"},
        reselect=reselect,
    )


def test_a_per_sample_field_of_the_wrong_length_is_named():
    with pytest.raises(ValueError, match="labels has 2 entries but there are 3 samples"):
        Candidates(
            samples=[1, 2, 3],
            scores=[0.0, 0.0, 0.0],
            labels=[0, 0],
            predictions=[0, 0, 0],
            groups=[0, 0, 0],
            population=[0.0],
            band=(0, 1),
            limits=(0, 1),
            class_names=["a"],
            split="test",
        )


def test_frame_reads_names_and_keeps_order():
    frame = make().to_frame()
    assert frame["sample"].tolist() == [0, 10, 20]
    assert frame["label"].tolist() == ["circle"] * 3
    assert frame["prediction"].tolist() == ["square"] * 3
    assert frame["group"].tolist() == ["", "", ""]
    assert list(frame.columns[:2]) == ["sample", "logit"]


def test_a_fixed_band_cannot_move_and_a_movable_one_asks_reselect():
    with pytest.raises(ValueError, match="fixed band"):
        make().with_band((0.1, 0.2))
    asked = []
    movable = make(reselect=lambda band: asked.append(band) or make(n=1))
    assert movable.movable and len(movable.with_band((0.1, 0.2))) == 1
    assert asked == [(0.1, 0.2)]


def test_curation_records_where_the_candidates_came_from(tmp_path):
    cur = make().curation(tmp_path / "marks.json")
    cur.mark(10, "spurious")
    text = (tmp_path / "marks.json").read_text()
    assert '"source": "test"' in text and '"band": [' in text
    assert make().curation(None).path is None
