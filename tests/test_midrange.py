"""Mid-range band selection (repwidgets.engines.midrange.selection), and the planted data
the other mid-range test modules share.

Most tests run on a small synthetic session whose penultimate features are planted: a
noisy "core" direction per class and a clean "artifact" direction that co-occurs with
class 0 in the training split (95%) but not in the balanced val/test splits, so the
minority groups (class 0 without the artifact, other classes with it) are known.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from repwidgets.datasets.bundle import DataBundle, TensorImageDataset
from repwidgets.engines import midrange as mr
from repwidgets.session import Session

pytestmark = pytest.mark.usefixtures("fresh_curations")

K, D = 3, 12


def synthetic_session(seed: int = 0, n_train: int = 1800, n_val: int = 600, n_test: int = 900):
    """A session over planted features (identity body + a logistic-regression ERM head)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    splits, concepts, groups, feats = {}, {}, {}, {}
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        y = rng.permutation(np.arange(n) % K)
        if split == "train":
            a = rng.random(n) < np.where(y == 0, 0.95, 0.03)
        else:
            a = np.zeros(n, dtype=bool)
            for k in range(K):
                members = rng.permutation(np.flatnonzero(y == k))
                a[members[: len(members) // 2]] = True
        X = rng.normal(0, 1, (n, D)).astype(np.float32)
        X[:, :K] = np.eye(K)[y] + rng.normal(0, 0.5, (n, K))
        X[:, K] = a * 2.0 + rng.normal(0, 0.1, n)
        extra = rng.random((n, 2)) < 0.5
        concepts[split] = np.concatenate([np.eye(K, dtype=bool)[y], a[:, None], extra], 1)
        groups[split] = torch.from_numpy(y * 2 + a).long()
        splits[split] = TensorImageDataset(
            torch.from_numpy(X).view(n, D, 1, 1), torch.from_numpy(y).long()
        )
        feats[split] = (X, y)
    names = [f"c{k}" for k in range(K)]
    bundle = DataBundle(
        "synthetic",
        splits,
        names,
        [*names, "artifact", "extra_a", "extra_b"],
        config={"name": "synthetic", "seed": seed},
        concepts=concepts,
        groups=groups,
        group_names=[f"{c}/{p}artifact" for c in names for p in ("no-", "")],
    )
    erm = LogisticRegression(C=1.0, max_iter=2000).fit(*feats["train"])
    body, head = nn.Linear(D, D), nn.Linear(D, K)
    with torch.no_grad():
        body.weight.copy_(torch.eye(D))
        body.bias.zero_()
        head.weight.copy_(torch.from_numpy(erm.coef_))
        head.bias.copy_(torch.from_numpy(erm.intercept_))
    model = nn.Sequential(nn.Flatten(), body, head)
    return Session(model, bundle, device="cpu", progress=False)


# ------------------------------------------------------------------------- band
def test_band_matches_quantile_definition():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 4, generator=g)
    targets = torch.randint(0, 4, (500,), generator=g)
    for within in ("class", "all"):
        for score in ("logit", "margin"):
            r = mr.select_band(logits, targets, 2, band=(0.2, 0.6), within=within, score=score)
            own = logits[:, 2].double()
            others = torch.cat([logits[:, :2], logits[:, 3:]], 1).double().max(1).values
            s = own if score == "logit" else own - others
            pop = (targets == 2) if within == "class" else torch.ones(500, dtype=torch.bool)
            lo, hi = np.quantile(s[pop].numpy(), [0.2, 0.6])
            expect = set(torch.nonzero(pop & (s >= lo) & (s <= hi)).flatten().tolist())
            assert set(r.indices.tolist()) == expect
            assert torch.all(r.values[:-1] >= r.values[1:])  # sorted, highest first
            assert np.allclose(r.values.numpy(), s[r.indices].numpy(), atol=1e-6)
            top_lo = np.quantile(s[pop].numpy(), 0.9)
            expect_top = set(torch.nonzero(pop & (s >= top_lo)).flatten().tolist()) - expect
            assert set(r.top_indices.tolist()) == expect_top
    r = mr.select_band(logits, targets, 1, band=(-0.5, 0.5), absolute=True, within="all")
    assert set(r.indices.tolist()) == set(
        torch.nonzero((logits[:, 1] >= -0.5) & (logits[:, 1] <= 0.5)).flatten().tolist()
    )


def planted_middle(seed: int = 0, n_members: int = 1000, n_others: int = 2000):
    """Logits whose class-0 score has a planted confounded middle, with the answer known.

    Typical members of class 0 score about +5 and typical others about -3; 5% of the
    members (without the planted feature) and 3% of the others (with it) score in the
    middle, between 0 and 2.5. Returns (logits [n, 3], targets [n], confounder mask [n]).
    """
    g = torch.Generator().manual_seed(seed)
    n_conf_m, n_conf_o = n_members // 20, 3 * n_others // 100
    own = torch.cat(
        [
            5.0 + 0.7 * torch.randn(n_members - n_conf_m, generator=g),
            torch.linspace(0.0, 2.5, n_conf_m),
            -3.0 + 0.7 * torch.randn(n_others - n_conf_o, generator=g),
            torch.linspace(0.0, 2.5, n_conf_o),
        ]
    )
    n = n_members + n_others
    targets = torch.cat([torch.zeros(n_members), 1 + torch.arange(n_others) % 2]).long()
    confounder = torch.zeros(n, dtype=torch.bool)
    confounder[n_members - n_conf_m : n_members] = True
    confounder[n - n_conf_o :] = True
    logits = torch.stack(
        [own, 0.1 * torch.randn(n, generator=g), 0.1 * torch.randn(n, generator=g)], 1
    )
    return logits, targets, confounder


@pytest.mark.parametrize("score", ["logit", "margin"])
def test_auto_band_finds_planted_middle(score):
    """Oracle: the default band covers the planted middle and stays off both bulks."""
    logits, targets, confounder = planted_middle()
    m = mr.select_band(logits, targets, 0, score=score)
    assert m.within == "all" and m.score == score and m.band_choice["rule"] == "auto"
    inside = torch.zeros(len(targets), dtype=torch.bool)
    inside[m.indices] = True
    assert bool(inside[confounder].all())  # every planted confounder is in the band
    share = float(confounder[inside].double().mean())
    assert share / float(confounder.double().mean()) >= 3.0
    own = logits[:, 0].double()
    typical = ~confounder
    lo, hi = m.limits
    assert lo > float(own[typical & (targets != 0)].median())  # above the others' bulk
    assert hi < float(own[typical & (targets == 0)].median())  # below the class's bulk
    assert m.band_choice["members_in_band"] + m.band_choice["others_in_band"] == len(m)
    narrower = mr.select_band(logits, targets, 0, score=score, tail=0.05)
    assert set(narrower.indices.tolist()) <= set(m.indices.tolist())


def test_auto_band_is_recorded_and_explained(synth, tmp_path):
    m = mr.select(synth, 0)
    assert m.band_choice["rule"] == "auto" and m.within == "all"
    assert "auto band" in repr(m) and m.band_choice["reason"] in repr(m)
    frame = m.to_frame()
    assert frame.attrs["why"] == m.band_choice and frame.attrs["band"] == m.band
    back = mr.MidrangeResult.load(m.save(tmp_path / "auto.safetensors"))
    assert back.band_choice == m.band_choice
    assert m.curation().context["band_choice"] == m.band_choice
    widget = m.curate(path=None)  # the band control starts on the automatic band
    assert widget.band == pytest.approx(m.band) and widget.limits == pytest.approx(m.limits)
    moved = m.reselect(class_index=1)  # still automatic, placed for the other class
    assert moved.band_choice["rule"] == "auto" and moved.class_index == 1
    by_hand = m.reselect(band=(0.2, 0.4))
    assert by_hand.band_choice == {} and "auto band" not in repr(by_hand)
    with pytest.raises(ValueError, match="'auto' or a pair"):
        mr.select(synth, 0, band="middle")
    with pytest.raises(ValueError, match="tail"):
        mr.select(synth, 0, tail=0.7)


def test_auto_band_enriched_on_synthetic_session(synth):
    """The planted shortcut of the synthetic session: the default band is enriched."""
    y, g = synth.targets("train"), synth.groups("train")
    confounder = ((y == 0) & (g % 2 == 0)) | ((y != 0) & (g % 2 == 1))
    m = mr.select(synth, 0)
    share = float(confounder[m.indices].double().mean())
    assert share >= 2.0 * float(confounder.double().mean())


def test_frame_columns(synth):
    m = mr.select(synth, 0, band=(0.0, 0.5))
    frame = m.to_frame()
    for col in ("sample", "logit", "label", "prediction", "group", "artifact", "extra_a"):
        assert col in frame.columns
    assert len(frame) == len(m)
    y = synth.targets("train")
    assert (frame["label_index"].to_numpy() == y.numpy()[frame["sample"].to_numpy()]).all()
    logits = synth.logits("train")
    assert np.allclose(frame["logit"], logits.numpy()[frame["sample"].to_numpy(), 0], atol=1e-5)
    assert frame["artifact"].dtype == bool


def test_band_enriched_in_minority(synth):
    """Oracle: the minority group (class 0 without the artifact) is over-represented."""
    y, g = synth.targets("train"), synth.groups("train")
    base = float((g[y == 0] == 0).double().mean())
    m = mr.select(synth, 0, band=(0.0, 0.5), within="class")
    band_frac = float((m.groups == 0).double().mean())
    top_frac = float((m.top_groups == 0).double().mean())
    assert band_frac > 1.5 * base
    assert top_frac < base
    # within all samples the band collects both minorities (class 0 w/o, others with)
    m_all = mr.select(synth, 0, band=(0.5, 0.85), within="all")
    minority = (m_all.groups == 0) | ((m_all.labels != 0) & (m_all.groups % 2 == 1))
    base_all = float(((g == 0) | ((y != 0) & (g % 2 == 1))).double().mean())
    assert float(minority.double().mean()) > 1.5 * base_all


def test_associations_match_chi_square(synth):
    """Oracle: the two-proportion z test's p-value equals scipy's uncorrected chi-square."""
    from scipy.stats import chi2_contingency

    m = mr.select(synth, 0, band=(0.0, 0.5))
    assoc = m.associations()
    assert assoc.loc[0, "concept"] == "artifact"  # the planted association comes first
    assert assoc.loc[0, "difference"] < 0 and assoc.loc[0, "significant"]
    for _, row in assoc.iterrows():
        table = np.array(
            [
                [row.band_count, len(m) - row.band_count],
                [row.top_count, len(m.top_indices) - row.top_count],
            ]
        )
        if (table.sum(0) == 0).any():
            assert row.p_value == 1.0
            continue
        chi2, p, _, _ = chi2_contingency(table, correction=False)
        assert row.p_value == pytest.approx(p, rel=1e-6, abs=1e-12)
        assert row.z**2 == pytest.approx(chi2, rel=1e-6)
    z, p = mr.two_proportion_ztest(30, 100, 10, 100)
    assert float(z) == pytest.approx(3.5355, abs=1e-3)


def test_bad_inputs_give_clear_errors(synth):
    with pytest.raises(ValueError, match="quantiles"):
        mr.select(synth, 0, band=(0.2, 1.5))
    with pytest.raises(ValueError, match="low <= high"):
        mr.select(synth, 0, band=(0.6, 0.2))
    with pytest.raises(ValueError, match="Unknown class"):
        mr.select(synth, "dog")
    with pytest.raises(ValueError, match="within"):
        mr.select(synth, 0, within="some")
    with pytest.raises(ValueError, match="score"):
        mr.select(synth, 0, score="prob")
    with pytest.raises(ValueError, match="Unknown split"):
        mr.select(synth, 0, split="holdout")
    with pytest.raises(ValueError, match="NaN"):
        mr.select_band(torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]), 0)
    with pytest.raises(ValueError, match="different lengths"):
        mr.select_band(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long), 0)


def test_result_save_load_roundtrip(synth, tmp_path):
    m = mr.select(synth, 1, band=(0.1, 0.7), within="all", score="margin")
    path = m.save(tmp_path / "band.safetensors")
    back = mr.MidrangeResult.load(path)
    pd.testing.assert_frame_equal(back.to_frame(), m.to_frame())
    pd.testing.assert_frame_equal(back.associations(), m.associations())
    assert back.limits == pytest.approx(m.limits)


def test_plot_builds(synth):
    from bokeh.embed import json_item

    fig = mr.select(synth, 0, band=(0.0, 0.5)).plot()
    json_item(fig)  # serialisable offline


# ------------------------------------------------------------------------- config
def test_config_settings_overrides_and_params(synth):
    cfg = mr.MidrangeConfig(band=(0.1, 0.6), within="all")
    by_config = mr.select(synth, 0, cfg)
    by_overrides = mr.select(synth, 0, band=(0.1, 0.6), within="all")
    assert by_config.indices.tolist() == by_overrides.indices.tolist()
    assert by_config.params == cfg.to_dict() == by_overrides.params
    assert by_config.params["band"] == [0.1, 0.6]
    again = mr.select(synth, 0, by_config.params)  # a saved result's settings run again
    assert again.indices.tolist() == by_config.indices.tolist()
    assert mr.MidrangeConfig.from_dict(by_config.params) == cfg
    with pytest.raises(TypeError, match="no setting 'bnad'.*'band'"):
        mr.select(synth, 0, bnad=(0.1, 0.6))
    with pytest.raises(TypeError, match="MidrangeConfig has no setting 'tial'"):
        mr.select_band(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), 0, tial=0.1)


# ------------------------------------------------------------------------- candidates
def test_candidates_carry_the_band(synth, tmp_path):
    from repwidgets.candidates import Candidates

    m = mr.select(synth, 0, band=(0.2, 0.7), within="class")
    c = m.candidates()
    assert isinstance(c, Candidates) and len(c) == len(m)
    assert c.samples.tolist() == m.indices.tolist()
    assert torch.equal(c.scores, m.values) and torch.equal(c.population, m.population_values)
    assert c.labels.tolist() == m.labels.tolist()
    assert c.predictions.tolist() == m.predictions.tolist()
    assert c.groups.tolist() == m.groups.tolist()
    assert c.band == pytest.approx(tuple(m.band)) and c.limits == pytest.approx(tuple(m.limits))
    assert c.class_names == m.class_names and c.group_names == m.group_names
    assert c.split == "train" and c.n_split == synth.n("train")
    assert c.title == "c0 · logit within class · train" and c.score_name == "logit"
    assert c.dataset == m.dataset and c.context["class_index"] == 0
    assert torch.equal(c.extra["logit"], m.logits)
    assert c.to_frame()["sample"].tolist() == m.indices.tolist()
    moved = c.with_band((0.3, 0.9))  # asks the engine for the new band
    assert (
        moved.samples.tolist()
        == mr.select(synth, 0, band=(0.3, 0.9), within="class").indices.tolist()
    )
    assert moved.movable
    # the curation file records where the marks come from, as the result's curation does
    cur = m.curation(tmp_path / "c.json")
    assert cur.split == "train" and cur.context["band"] == list(m.band)
    assert cur.context["within"] == "class" and cur.context["score"] == "logit"
    loaded = mr.MidrangeResult.load(m.save(tmp_path / "m.safetensors"))
    assert not loaded.candidates().movable  # no session: a fixed band
    assert loaded.candidates(session=synth).movable
    assert (
        mr.select(synth, 0, band=(0.0, 0.5), within="all")
        .candidates()
        .title.endswith("logit over all samples · train")
    )
