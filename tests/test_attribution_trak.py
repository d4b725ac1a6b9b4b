"""Oracle tests for TRAK (repwidgets.engines.attribution.trak, featurize, solve, store)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from repwidgets.engines import attribution as A
from repwidgets.engines.attribution.featurize import Featurizer

pytestmark = pytest.mark.usefixtures("one_thread")


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
    feat = Featurizer(
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


def test_trak_config_overrides_and_params():
    model, X, y, Xt, yt = _mlp_problem()
    cfg = A.TRAKConfig(proj_dim=16, lam=1e-2, seed=4)
    a = A.trak_scores(model, (X, y), (Xt, yt), config=cfg, progress=False)
    b = A.trak_scores(model, (X, y), (Xt, yt), proj_dim=16, lam=1e-2, seed=4, progress=False)
    torch.testing.assert_close(a.scores, b.scores)
    assert a.params["proj_dim"] == 16 and a.params["seed"] == 4 and a.params["reduce"] is None
    assert A.TRAKConfig.from_dict(a.params) == cfg
    c = A.trak_scores(model, (X, y), (Xt, yt), config=a.params, lam=1.0, progress=False)
    assert c.params["lam"] == 1.0 and c.params["proj_dim"] == 16
    with pytest.raises(TypeError, match=r"no setting 'proj_dims'.*Did you mean 'proj_dim'"):
        A.trak_scores(model, (X, y), (Xt, yt), proj_dims=16, progress=False)
    with pytest.raises(ValueError, match="lam must be >= 0"):
        A.TRAKConfig(lam=-1.0)
