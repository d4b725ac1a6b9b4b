"""Comparing retrained heads (repwidgets.engines.midrange.comparison): on the planted
shortcut, curated retraining beats ERM and random and nears the oracle."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from repwidgets.engines import midrange as mr

pytestmark = pytest.mark.usefixtures("fresh_curations")


def test_curated_retraining_beats_erm_and_nears_oracle(synth):
    """The planted shortcut: automatic curation of the mid-range band fixes the worst group."""
    m = mr.select(synth, 0, band=(0.5, 0.85), within="all")
    cur = mr.auto_curate(m, rule="concepts")
    assert cur.context["typical_pattern"] == {"artifact": True}
    spurious = torch.tensor(cur.selected["spurious"])
    g, y = synth.groups("train")[spurious], synth.targets("train")[spurious]
    assert bool((((y == 0) & (g % 2 == 0)) | ((y != 0) & (g % 2 == 1))).all())
    comparison = mr.compare(synth, cur, seeds=(0, 1), progress=False)
    table = comparison.to_frame()
    wga = table["worst_group_accuracy_mean"]
    pd.testing.assert_series_equal(comparison["worst_group_accuracy_mean"], wga)
    assert list(table.index) == ["ERM", "random", "curated", "oracle"]
    assert wga["curated"] > wga["ERM"] + 0.15
    assert wga["curated"] > wga["random"] + 0.15
    assert wga["curated"] > wga["oracle"] - 0.08
    assert len(table.attrs["per_seed"]) == 8
    frame = mr.evaluate(synth, mr.retrain_last_layer(synth, cur))
    assert list(frame.index) == ["before", "after"]
    assert frame.loc["after", "worst_group_accuracy"] > frame.loc["before", "worst_group_accuracy"]


def test_comparison_result_table_plot_and_file(synth, tmp_path):
    from bokeh.embed import json_item

    cur = mr.auto_curate(mr.select(synth, 0, band=(0.5, 0.85), within="all"))
    c = mr.compare(synth, cur, seeds=(0, 1), Cs=(1.0,), progress=False)
    assert isinstance(c, mr.ComparisonResult) and c.methods == [
        "ERM",
        "random",
        "curated",
        "oracle",
    ]
    assert c.params["Cs"] == [1.0] and c.params["seeds"] == [0, 1]
    frame = c.to_frame()
    assert list(frame.columns) == [
        "accuracy_mean",
        "accuracy_std",
        "worst_group_accuracy_mean",
        "worst_group_accuracy_std",
        "n_seeds",
    ]
    assert frame.attrs["test_split"] == "test" and len(frame.attrs["per_seed"]) == 8
    back = mr.ComparisonResult.load(c.save(tmp_path / "comparison.safetensors"))
    pd.testing.assert_frame_equal(back.to_frame(), frame)
    assert back.seeds == [0, 1] and back.params == c.params
    json_item(c.plot())
    json_item(mr.plot_comparison(frame))
    assert "ComparisonResult(test split, 2 seeds" in repr(c)
