"""INVERT's result and settings: tables, saving, plots, the config round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_invert import _concepts

from repwidgets.engines.invert import InvertConfig, InvertResult, explain_activations


def _small_result(**kwargs):
    C, names = _concepts(n=400, K=5, seed=15)
    acts = torch.randn(400, 4, generator=torch.Generator().manual_seed(6)) + torch.tensor(
        C[:, :4] * 2.0
    )
    return explain_activations(acts, C, names, progress=False, layer="fc", **kwargs)


def test_frame_columns_and_values():
    r = _small_result(max_length=1)
    frame = r.to_frame()
    assert list(frame.columns) == [
        "layer",
        "neuron",
        "formula",
        "length",
        "auc",
        "differentiability",
        "fraction",
        "p_value",
        "log10_p",
    ]
    np.testing.assert_allclose(frame.differentiability, np.abs(2 * (frame.auc - 0.5)))
    np.testing.assert_allclose(frame.p_value, 10.0**frame.log10_p, rtol=1e-9)
    assert frame.formula.tolist() == ["c0", "c1", "c2", "c3"]


def test_save_load_round_trip(tmp_path):
    r = _small_result(return_beam=True)
    path = r.save(tmp_path / "invert.safetensors")
    back = InvertResult.load(path)
    assert back.formulas == r.formulas and back.beams == r.beams
    torch.testing.assert_close(back.auc, r.auc)
    torch.testing.assert_close(back.top_indices, r.top_indices)
    assert back.to_frame().equals(r.to_frame())


def test_config_round_trips_through_a_saved_result(tmp_path):
    cfg = InvertConfig(max_length=2, beam_size=3, min_fraction=0.05, return_beam=True, top_k=4)
    r = _small_result(config=cfg)
    assert r.params == {**cfg.to_dict(), "n_samples": 400}
    back = InvertResult.load(r.save(tmp_path / "r.safetensors"))
    assert InvertConfig.from_dict(back.params) == cfg
    again = _small_result(config=back.params)  # a dict of settings works as a config
    assert again.formulas == r.formulas and again.beams == r.beams
    # overrides win over the config
    shorter = _small_result(config=cfg, max_length=1)
    assert shorter.params["max_length"] == 1 and shorter.params["beam_size"] == 3
    assert all(f["length"] == 1 for f in shorter.formulas)


def test_result_top_samples_match_top_indices():
    r = _small_result(top_k=5)
    assert torch.equal(r.top_samples(1, 3), r.top_indices[1, :3])
    with pytest.raises(ValueError, match="no session"):
        r.top_samples(1, 10)


def test_plot_builds_bokeh_layouts():
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    r1, r2 = _small_result(), _small_result()
    r2.layer = "other"
    layout = r1.plot(r2)
    html = file_html(layout, INLINE, "invert")
    assert "Concepts in the formulas" in html and "other" in html
