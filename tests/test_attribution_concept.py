"""Tests of concept attribution (repwidgets.engines.attribution.concept, concept_result)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repwidgets.engines import attribution as A
from repwidgets.engines.attribution.concept import out_to_loss_notes

pytestmark = pytest.mark.usefixtures("one_thread")


def test_concept_attribution_end_to_end(attribution_session, tmp_path):
    sess = attribution_session
    r = A.concept_attribution(
        sess, "watermark", n_models=1, proj_dim=64, n_targets=20, batch_size=32
    )
    n = sess.n("train")
    assert r.scores.shape == (n,)
    assert r.layer in r.probe_layers
    df = r.to_frame()
    assert list(df.columns[:6]) == ["sample", "score", "rank", "class", "watermark", "out_to_loss"]
    assert (np.diff(df["score"].to_numpy()) <= 0).all()
    assert set(df["class"]) <= set(sess.class_names)
    top = r.top(10)
    assert list(top) == list(df["sample"][:10])
    assert list(r.bottom(3)) == list(df["sample"].to_numpy()[::-1][:3])
    assert 0.0 <= r.precision_at(50) <= 1.0
    path = r.save(tmp_path / "attr.safetensors")
    back = A.ConceptAttributionResult.load(path)
    torch.testing.assert_close(back.scores, r.scores)
    assert back.layer == r.layer and list(back.top(5)) == list(r.top(5))
    from bokeh.models import LayoutDOM

    assert isinstance(r.plot(), LayoutDOM)


def test_concept_attribution_out_to_loss_term(attribution_session, tmp_path):
    """By default the training samples are not weighted by the probe's Q term; with
    out_to_loss="probe" the scores are the same kernel products times that Q."""
    sess = attribution_session
    kw = dict(layer="features.relu2", n_models=1, proj_dim=32, n_targets=8, batch_size=32)
    plain = A.concept_attribution(sess, "watermark", **kw)
    weighted = A.concept_attribution(sess, "watermark", out_to_loss="probe", **kw)
    assert plain.out_to_loss_mode == "none" and weighted.out_to_loss_mode == "probe"
    torch.testing.assert_close(plain.out_to_loss, weighted.out_to_loss)
    q = plain.out_to_loss
    assert ((q > 0) & (q < 1)).all()
    torch.testing.assert_close(weighted.scores, plain.scores * q, rtol=1e-4, atol=1e-12)
    assert all(isinstance(n, str) for n in plain.notes)
    assert all(f"Note: {n}" in plain._summary() for n in plain.notes)
    back = A.ConceptAttributionResult.load(plain.save(tmp_path / "a.safetensors"))
    assert back.out_to_loss_mode == "none" and back.notes == plain.notes
    with pytest.raises(ValueError, match="out_to_loss"):
        A.concept_attribution(sess, "watermark", out_to_loss="class", **kw)


def test_out_to_loss_note_flags_a_saturated_probe():
    saturated = torch.logspace(-7, -2, 100)
    assert "saturated" in out_to_loss_notes(saturated, "none")[0]
    assert out_to_loss_notes(torch.linspace(0.05, 0.6, 100), "probe") == []


def test_session_bad_input(attribution_session):
    sess = attribution_session
    no_pos = {s: [] for s in ("train", "val", "test")}
    with pytest.raises(ValueError, match="carries the concept"):
        A.concept_attribution(sess, no_pos, n_models=1, proj_dim=8)
    with pytest.raises(ValueError, match="Unknown concept 'unicorn'"):
        A.concept_attribution(sess, "unicorn", n_models=1)
    with pytest.raises(ValueError, match="Unknown layer"):
        A.concept_attribution(sess, "watermark", layer="nope", n_models=1)
    with pytest.raises(ValueError, match="larger than the number of parameters"):
        A.concept_attribution(
            sess, "watermark", layer="features.relu1", n_models=1, proj_dim=10_000, n_targets=4
        )


@pytest.fixture(scope="module")
def small_result(attribution_session):
    return A.concept_attribution(
        attribution_session,
        "watermark",
        layer="features.relu2",
        n_models=1,
        proj_dim=32,
        n_targets=8,
    )


def test_candidates_of_a_selection_come_highest_score_first(attribution_session, small_result):
    sess, r = attribution_session, small_result
    picked = [int(r.top(8)[7]), int(r.top(8)[1])]
    c = r.candidates(samples=picked)
    assert c.samples.tolist() == [picked[1], picked[0]]  # highest score first
    score = {int(i): float(s) for i, s in zip(r.train_indices, r.scores)}
    assert c.scores.tolist() == pytest.approx([score[picked[1]], score[picked[0]]])
    assert c.split == "train" and c.score_name == "attribution" and c.n_split == sess.n("train")
    assert "watermark" in c.title and "features.relu2" in c.title
    assert c.context == {
        "source": "concept attribution",
        "concept": "watermark",
        "layer": "features.relu2",
    }
    assert c.dataset == {"name": sess.data.name, "split": "train"}
    assert len(c.population) == len(r.scores)
    expect = sess.predictions("train")[torch.as_tensor(c.samples)]
    assert c.predictions.tolist() == expect.tolist()
    assert c.labels.tolist() == sess.targets("train")[c.samples].tolist()
    assert c.groups.tolist() == sess.groups("train")[c.samples].tolist()
    low, high = c.band
    assert 0.9 <= low <= high <= 1.0  # ranks 2 and 8 of 240: near the top
    assert c.to_frame()["sample"].tolist() == c.samples.tolist()
    with pytest.raises(ValueError, match=r"Samples \[-3\] were not attributed"):
        r.candidates(samples=[picked[0], -3])


def test_candidates_of_a_band_and_moving_it(attribution_session, small_result):
    r = small_result
    c = r.candidates()  # default band: the top tenth
    assert c.band == (0.9, 1.0)
    assert abs(len(c) - 0.1 * len(r.scores)) <= 2
    assert set(c.samples.tolist()) == set(r.top(len(c)).tolist())
    assert (np.diff(c.scores.numpy()) <= 0).all()
    assert c.limits == (float(c.scores.min()), float(c.scores.max()))
    moved = c.with_band((0.0, 0.05))
    assert moved.band == (0.0, 0.05)
    assert set(moved.samples.tolist()) == set(r.bottom(len(moved)).tolist())
    store = c.curation()
    assert store is not None
    with pytest.raises(ValueError, match="band must be quantiles"):
        r.candidates(band=(0.5, 1.5))
    back = A.ConceptAttributionResult.load(r.save(_tmp_file()))
    with pytest.raises(ValueError, match="candidates\\(session=sess\\)"):
        back.candidates()
    assert back.candidates(session=attribution_session).samples.tolist() == c.samples.tolist()


def test_concept_attribution_config_and_params(attribution_session):
    sess = attribution_session
    cfg = A.ConceptAttributionConfig(n_models=1, proj_dim=32, n_targets=8)
    r = A.concept_attribution(sess, "watermark", "features.relu2", cfg, targets=[0, 3, 5])
    assert r.params == cfg.replace(targets=(0, 3, 5)).to_dict()
    assert r.params["targets"] == [0, 3, 5] and r.target_indices.tolist() == [0, 3, 5]
    assert A.ConceptAttributionConfig.from_dict(r.params).targets == (0, 3, 5)
    with pytest.raises(TypeError, match=r"no setting 'n_model'.*Did you mean 'n_models'"):
        A.concept_attribution(sess, "watermark", n_model=1)
    with pytest.raises(TypeError, match="config must be a ConceptAttributionConfig"):
        A.concept_attribution(sess, "watermark", None, 3)


def _tmp_file():
    import tempfile
    from pathlib import Path

    fd, name = tempfile.mkstemp(suffix=".safetensors")
    import os

    os.close(fd)
    return Path(name)
