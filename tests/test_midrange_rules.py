"""Curation rules (repwidgets.engines.midrange.rules): automatic marks, and training
sets built from marks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from repwidgets.curation_store import Curation
from repwidgets.engines import midrange as mr

pytestmark = pytest.mark.usefixtures("fresh_curations")


def test_curated_training_set_uses_marks():
    targets = torch.tensor([0] * 50 + [1] * 50)
    marks = {0: "keep", 1: "spurious", 2: "exclude", 60: "spurious", 61: "keep"}
    idx, w = mr.curated_training_set(marks, targets, spurious_weight=4.0, n_rest_per_class=10)
    assert 2 not in idx  # excluded everywhere
    assert {0, 1, 60, 61} <= set(idx.tolist())
    pos = {int(i): k for k, i in enumerate(idx)}
    assert w[pos[1]] == pytest.approx(4 * w[pos[0]])
    y = targets.numpy()[idx]
    assert np.bincount(y, weights=w)[0] == pytest.approx(np.bincount(y, weights=w)[1])
    idx_b, w_b = mr.curated_training_set(marks, targets, n_rest_per_class=10)
    pos = {int(i): k for k, i in enumerate(idx_b)}
    y = targets.numpy()[idx_b]
    spur0 = w_b[pos[1]]
    rest0 = w_b[(y == 0)].sum() - spur0
    assert spur0 == pytest.approx(rest0)  # "balance": the class's confounders weigh half


def test_auto_curate_band_rule_and_file(synth, tmp_path):
    m = mr.select(synth, 0, band=(0.0, 0.5))
    cur = mr.auto_curate(m, rule="band", path=tmp_path / "auto.json")
    assert cur.selected["keep"] == sorted(m.indices.tolist())
    assert Curation.load(tmp_path / "auto.json").counts()["keep"] == len(m)
    head = mr.retrain_last_layer(synth, tmp_path / "auto.json", C=1.0)
    assert isinstance(head, mr.RetrainResult) and isinstance(head.head, nn.Linear)
    with pytest.raises(ValueError, match="rule"):
        mr.auto_curate(m, rule="magic")
