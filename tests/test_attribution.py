"""Oracle tests for TRAK and concept attribution (repwidgets.engines.attribution)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from repwidgets.engines import attribution as A
from repwidgets.engines.probes import default_probe_layers, fit_probe
from repwidgets.engines.projection import JLProjection


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _signed_logit(out, y):
    """A binary logistic model's margin: the logit signed by the 0/1 label."""
    return (2.0 * y.to(out.dtype) - 1.0) * out[0]


def _logreg_data(n=120, d=6, m=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    w = torch.randn(d, generator=g)
    y = (X @ w + 0.3 * torch.randn(n, generator=g) > 0).long()
    Xt = torch.randn(m, d, generator=g)
    model = nn.Linear(d, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(0.5 * w[None])
    return model, X, y, Xt


def _closed_form(model, X, y, Xt, lam):
    """TRAK for logistic regression: phi_i = s_i x_i, Q_i = 1 - p(y_i), phi_t = x_t."""
    X64, Xt64 = X.double(), Xt.double()
    s = 2.0 * y.double() - 1.0
    logit = X64 @ model.weight.detach().double()[0]
    q = torch.sigmoid(-s * logit)
    K = X64.T @ X64 + lam * torch.eye(X.shape[1], dtype=torch.float64)
    return (s[:, None] * X64) @ torch.linalg.solve(K, Xt64.T) * q[:, None]


@pytest.mark.parametrize(
    "n, d, lam",
    [(120, 6, 0.7), (15, 40, 0.3)],  # primal solve; features outnumber samples: dual solve
    ids=["primal", "dual"],
)
def test_scores_equal_the_logistic_regression_closed_form(n, d, lam):
    model, X, y, Xt = _logreg_data(n=n, d=d)
    r = A.trak_scores(
        model,
        (X, y),
        (Xt, torch.ones(len(Xt), dtype=torch.long)),
        output_fn=_signed_logit,
        proj_dim=None,
        lam=lam,
        lam_relative=False,
        progress=False,
    )
    assert r.scores.shape == (len(X), len(Xt))
    torch.testing.assert_close(
        r.scores.double(), _closed_form(model, X, y, Xt, lam), rtol=1e-4, atol=1e-6
    )


def test_projection_preserves_inner_products():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20, 5000, generator=g)
    exact = x @ x.T
    for kind in ("rademacher", "gaussian"):
        proj = JLProjection(5000, 2048, kind=kind, seed=3, block_rows=1000)
        z = proj.project(x)
        # relative error of inner products, in units of the norms: about 1/sqrt(p)
        scale = exact.diagonal().sqrt()
        err = (z @ z.T - exact) / (scale[:, None] * scale[None, :])
        assert err.abs().max() < 0.12, kind
        assert err.abs().mean() < 0.03, kind
    P = JLProjection(5000, 64, kind="rademacher", seed=0).matrix()
    assert torch.allclose(P.abs(), torch.full_like(P, 1 / 8))


def test_projection_blocks_are_reproducible_cached_or_not():
    x = torch.randn(3, 1000)
    a = JLProjection(1000, 32, seed=5, block_rows=300, cache_mb=100)
    b = JLProjection(1000, 32, seed=5, block_rows=300, cache_mb=0)
    i8 = JLProjection(1000, 32, seed=5, block_rows=300, cache_mb=0.05)  # 32k signs fit
    assert (a.cache, b.cache, i8.cache) == ("full", "none", "int8")
    for proj in (b, i8):
        torch.testing.assert_close(a.project(x), proj.project(x))
        torch.testing.assert_close(proj.project(x), proj.project(x))
    c = JLProjection(1000, 32, seed=6, block_rows=300)
    assert not torch.allclose(a.project(x), c.project(x))
    torch.testing.assert_close(a.project(x), x @ a.matrix())


def _mlp_problem(seed=0, n=90, m=5):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 5, generator=g)
    y = (X[:, 0] + X[:, 1] > 0).long() + (X[:, 2] > 1).long()
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    return model, X, y, X[:m], y[:m]


def test_same_seed_same_scores_other_seed_other_scores():
    model, X, y, Xt, yt = _mlp_problem()
    kw = dict(proj_dim=16, lam=1e-2, progress=False)
    a = A.trak_scores(model, (X, y), (Xt, yt), seed=4, **kw).scores
    b = A.trak_scores(model, (X, y), (Xt, yt), seed=4, **kw).scores
    c = A.trak_scores(model, (X, y), (Xt, yt), seed=5, **kw).scores
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_features_are_per_sample_gradients_of_the_margin():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )
    x, y = torch.rand(5, 3, 8, 8), torch.tensor([0, 1, 2, 1, 0])
    fn = A.ClassMargin()
    feat = A._Featurizer(
        model, fn, None, None, "rademacher", 0, torch.device("cpu"), None, (x[0], y[0]), 64
    )
    phi, out = feat(x, y)
    for i in range(len(x)):
        logits = model(x[i : i + 1])[0]
        others = torch.cat([logits[: y[i]], logits[y[i] + 1 :]])
        margin = logits[y[i]] - others.logsumexp(0)
        grads = torch.autograd.grad(margin, list(model.parameters()))
        torch.testing.assert_close(phi[i], torch.cat([g.flatten() for g in grads]))
        torch.testing.assert_close(out[i], margin.detach())
        # sigmoid(margin) is the softmax probability of the label: Q = 1 - p(y)
        p_y = logits.softmax(0)[y[i]]
        torch.testing.assert_close(fn.out_to_loss(out[i], y[i]), 1 - p_y.detach())


def test_ensemble_is_unweighted_mean_times_mean_q():
    m1, X, y, Xt, yt = _mlp_problem(seed=0)
    m2, *_ = _mlp_problem(seed=1)
    kw = dict(proj_dim=None, lam=1e-2, progress=False)
    r1 = A.trak_scores(m1, (X, y), (Xt, yt), **kw)
    r2 = A.trak_scores(m2, (X, y), (Xt, yt), **kw)
    both = A.trak_scores([m1, m2], (X, y), (Xt, yt), **kw)
    t1 = r1.scores / r1.out_to_loss[:, None]
    t2 = r2.scores / r2.out_to_loss[:, None]
    q = (r1.out_to_loss + r2.out_to_loss) / 2
    torch.testing.assert_close(both.scores, (t1 + t2) / 2 * q[:, None], rtol=1e-4, atol=1e-6)


def test_reduce_chunks_and_soft_threshold():
    model, X, y, Xt, yt = _mlp_problem()
    kw = dict(proj_dim=20, lam=1e-2, progress=False, seed=2)
    full = A.trak_scores(model, (X, y), (Xt, yt), **kw).scores
    chunked = A.trak_scores(model, (X, y), (Xt, yt), chunk_rows=7, batch_size=8, **kw).scores
    torch.testing.assert_close(full, chunked, rtol=1e-4, atol=1e-6)
    s = A.trak_scores(model, (X, y), (Xt, yt), reduce="sum", **kw).scores
    mean = A.trak_scores(model, (X, y), (Xt, yt), reduce="mean", **kw).scores
    torch.testing.assert_close(s, full.sum(1), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(mean, full.mean(1), rtol=1e-4, atol=1e-6)
    thr = A.trak_scores(model, (X, y), (Xt, yt), soft_threshold=0.8, **kw).scores
    zero_frac = (thr == 0).float().mean(0)
    assert ((zero_frac > 0.75) & (zero_frac < 0.85)).all()
    kept = thr != 0
    assert (thr[kept].sign() == full[kept].sign()).all()
    assert (thr.abs() <= full.abs() + 1e-7).all()


def test_grad_wrt_restricts_parameters():
    model, X, y, Xt, yt = _mlp_problem()
    r = A.trak_scores(model, (X, y), (Xt, yt), proj_dim=None, grad_wrt=["2"], progress=False)
    assert r.grad_params == ["2.weight", "2.bias"]
    assert r.grad_dims == [7 * 3 + 3]
    with pytest.raises(ValueError, match="matches no parameter"):
        A.trak_scores(model, (X, y), (Xt, yt), grad_wrt=["nope"], progress=False)


def test_probe_logit_output_stops_at_layer_and_matches_probe():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Conv2d(6, 2, 3), nn.Flatten(), nn.LazyLinear(2)
    )
    x = torch.rand(10, 3, 8, 8)
    model(x)
    w, b = torch.randn(6), 0.3
    fn = A.ProbeLogit("1", w, b, signed=False)
    values = A.model_outputs(model, (x, torch.ones(10, dtype=torch.long)), output_fn=fn)
    pooled = torch.relu(model[0](x)).mean(dim=(2, 3))
    torch.testing.assert_close(values, pooled @ w + b)
    # only parameters before the layer influence the probe: the later ones are skipped
    r = A.trak_scores(
        model,
        (x, (values > 0).long()),
        (x[:2], torch.ones(2, dtype=torch.long)),
        output_fn=fn,
        proj_dim=None,
        progress=False,
    )
    assert r.grad_params == ["0.weight", "0.bias"]


def test_bad_input_errors():
    model, X, y, Xt, yt = _mlp_problem()
    with pytest.raises(ValueError, match="proj_dim=1000 is larger than the number of parameters"):
        A.trak_scores(model, (X, y), (Xt, yt), proj_dim=1000, progress=False)
    with pytest.raises(ValueError, match="different lengths"):
        A.trak_scores(model, (X, y[:-1]), (Xt, yt), progress=False)
    with pytest.raises(ValueError, match="Unknown output_fn"):
        A.trak_scores(model, (X, y), (Xt, yt), output_fn="loss", progress=False)
    with pytest.raises(ValueError, match="Unknown layer 'nope'"):
        A.trak_scores(
            model,
            (X, y),
            (Xt, yt),
            output_fn=A.ProbeLogit("nope", torch.ones(7), 0),
            progress=False,
        )
    with pytest.raises(ValueError, match="both positive and negative"):
        fit_probe(torch.randn(10, 3), torch.zeros(10, dtype=torch.bool))


def test_lds_oracle():
    from scipy.stats import spearmanr

    g = torch.Generator().manual_seed(0)
    n, m, K = 50, 4, 30
    true = torch.randn(n, m, generator=g)
    masks = torch.rand(K, n, generator=g) > 0.5
    outputs = masks.double() @ true.double() + 3.0
    assert A.lds(true, masks, outputs).lds == pytest.approx(1.0)
    noisy = outputs + 2.0 * torch.randn(K, m, generator=g, dtype=torch.float64)
    r = A.lds(true, masks, noisy)
    ref = [spearmanr((masks.double() @ true.double())[:, j], noisy[:, j])[0] for j in range(m)]
    np.testing.assert_allclose(r.per_target, ref, rtol=1e-10)
    assert r.lds == pytest.approx(np.mean(ref))
    with pytest.raises(ValueError, match="masks must be"):
        A.lds(true, masks[:, :10], outputs)


def test_fit_probe_recovers_planted_direction():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(600, 8, generator=g) * torch.linspace(0.1, 10, 8) + 5
    direction = torch.zeros(8)
    direction[2] = 1.0
    y = (X - 5) @ direction > 0
    probe = fit_probe(X[:400], y[:400], X[400:], y[400:])
    assert probe.accuracy > 0.95
    cos = torch.nn.functional.cosine_similarity(probe.weight * X.std(0), direction, dim=0)
    assert cos > 0.9
    torch.testing.assert_close(
        probe.predict(X[400:]).float().mean(), y[400:].float().mean(), atol=0.05, rtol=0
    )


def test_default_probe_layers_follow_activations():
    from repwidgets.models.cnn import SmallCNN

    assert default_probe_layers(SmallCNN(4)) == [
        "features.relu1",
        "features.relu2",
        "features.relu3",
        "features.relu4",
    ]


# ------------------------------------------------------------------ session level (small)


@pytest.fixture(scope="module")
def tiny_session():
    import repwidgets as rw
    from repwidgets.models.cnn import SmallCNN
    from repwidgets.models.train import train_model

    torch.set_num_threads(1)
    data = rw.datasets.shapes(n_train=240, n_test=120, n_val=120, image_size=16, seed=0)
    model = SmallCNN(4, widths=(4, 8, 8, 8))
    train_model(model, data, epochs=2, lr=5e-3, batch_size=32, seed=0, progress=False)
    return rw.Session(model, data, device="cpu", progress=False)


def test_concept_attribution_end_to_end(tiny_session, tmp_path):
    sess = tiny_session
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


def test_concept_attribution_out_to_loss_term(tiny_session, tmp_path):
    """By default the training samples are not weighted by the probe's Q term; with
    out_to_loss="probe" the scores are the same kernel products times that Q."""
    sess = tiny_session
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
    assert "saturated" in A._out_to_loss_notes(saturated, "none")[0]
    assert A._out_to_loss_notes(torch.linspace(0.05, 0.6, 100), "probe") == []


def test_probe_layers_and_explicit_ensemble(tiny_session):
    import copy

    sess = tiny_session
    other = copy.deepcopy(sess.model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.01 * torch.randn_like(p))
    p = A.probe_layers(sess, "watermark", models=[sess.model, other])
    df = p.to_frame()
    assert list(df["layer"]) == default_probe_layers(sess.model)
    assert (df["n_models"] == 2).all()
    assert ((df["balanced_accuracy"] >= 0) & (df["balanced_accuracy"] <= 1)).all()
    assert p.best_layer() in p.layers


def test_session_bad_input(tiny_session):
    sess = tiny_session
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


def test_attribution_widget_gallery_and_handover(tiny_session):
    sess = tiny_session
    r = A.concept_attribution(
        sess, "watermark", layer="features.relu2", n_models=1, proj_dim=32, n_targets=8
    )
    w = r.widget(k=5)
    ids = [c["id"] for c in w.gallery.cards]
    assert ids[:5] == list(r.top(5)) and ids[5:] == list(r.bottom(5))
    assert w.gallery.sort_by == "score"
    assert w.chosen() == list(r.top(5))  # nothing selected: the top k
    w.gallery.selected = [ids[7], ids[1]]
    assert w.selected == [ids[7], ids[1]]
    made = w.send_to_curation()
    if isinstance(made, list):  # no curation widget installed: the plain list
        assert made == [ids[7], ids[1]]
    else:
        assert made is w.curation
        assert sorted(made.result.indices.tolist()) == sorted([ids[7], ids[1]])
        # highest score first, as in the gallery
        assert made.result.indices.tolist() == sorted(
            [ids[7], ids[1]], key=lambda i: -float(r.scores[r.train_indices == i])
        )
        made.mark(ids[1], "spurious")
        assert made.selected["spurious"] == [ids[1]]
        made.set_band(0.9, 1.0)  # the band of the top 10% of scores
        n_top = len(made.result)
        assert abs(n_top - 0.1 * len(r.scores)) <= 2
        assert set(made.result.indices.tolist()) == set(r.top(n_top).tolist())
    back = A.ConceptAttributionResult.load(r.save(sess_tmp := _tmp_file()))
    with pytest.raises(ValueError, match="session="):
        back.widget()
    assert back.widget(k=2, session=sess).chosen() == list(r.top(2))
    sess_tmp.unlink()


def _tmp_file():
    import tempfile
    from pathlib import Path

    fd, name = tempfile.mkstemp(suffix=".safetensors")
    import os

    os.close(fd)
    return Path(name)


def test_removal_experiment_removes_the_top_k_and_k_random(tiny_session, tmp_path):
    import copy

    sess = tiny_session
    r = A.concept_attribution(
        sess, "watermark", layer="features.relu2", n_models=1, proj_dim=32, n_targets=8
    )
    seen: list[tuple[int, set]] = []

    def train_fn(dataset, seed):
        # record what the model would be trained on; return the session's model unchanged
        kept = set(dataset.indices) if hasattr(dataset, "indices") else set(range(len(dataset)))
        seen.append((seed, kept))
        return copy.deepcopy(sess.model)

    k = 30
    rm = A.removal_experiment(
        sess, "watermark", k=k, attribution=r, train_fn=train_fn, layers=["features.relu2"]
    )
    n = sess.n("train")
    assert rm.conditions == ["full", "minus_top", "minus_random"]
    assert sorted(rm.removed_top.tolist()) == sorted(r.top(k).tolist())
    assert len(set(rm.removed_random.tolist())) == k
    full, minus_top, minus_random = (kept for _, kept in seen)
    assert len(full) == n
    assert minus_top == set(range(n)) - set(rm.removed_top.tolist())
    assert minus_random == set(range(n)) - set(rm.removed_random.tolist())
    labels = sess.concepts("train")[:, sess.concept_names.index("watermark")]
    assert rm.top_concept_fraction == pytest.approx(float(labels[rm.removed_top].float().mean()))
    # the same model in every condition: the same probes, accuracies and no change
    bal = np.asarray(rm.balanced_accuracy)
    assert bal.shape == (3, 1, 1) and np.allclose(bal, bal[0])
    assert np.allclose(rm.change()[["drop_top", "drop_random"]].to_numpy(), 0.0)
    correct = (sess.predictions("test") == sess.targets("test")).float()
    assert rm.test_accuracy[:, 0] == pytest.approx([float(correct.mean())] * 3)
    groups = sess.groups("test")
    expect = [float(correct[groups == g].mean()) for g in range(len(sess.data.group_names))]
    frame = rm.groups_frame()
    assert list(frame["group"]) == sess.data.group_names
    np.testing.assert_allclose(frame["minus_top"].to_numpy(), expect)
    back = A.RemovalResult.load(rm.save(tmp_path / "rm.safetensors"))
    assert back.groups_frame().equals(frame)
    from bokeh.models import LayoutDOM

    assert isinstance(rm.plot(), LayoutDOM)
    with pytest.raises(ValueError, match="k must lie in"):
        A.removal_experiment(sess, "watermark", k=0, attribution=r, train_fn=train_fn)


# ------------------------------------------------------------------ demo session


@pytest.mark.demo
def test_demo_top_attributed_samples_carry_the_artifact(demo_session):
    import re

    from bokeh.models import LayoutDOM

    section = A.demo_section(demo_session)
    assert section["title"] and all(isinstance(f, LayoutDOM) for f in section["figures"])
    text = "\n".join(section["summary_lines"])
    found = re.search(r"precision at 100 = ([0-9.]+) \(base rate ([0-9.]+)\)", text)
    assert found, text
    precision, base = float(found.group(1)), float(found.group(2))
    assert precision >= 0.9, text
    assert base < 0.5  # the artifact is a minority of the training samples
