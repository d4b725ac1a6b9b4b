"""Parity with the reference TRAK library (``traker``) on the CPU, without projection."""

from __future__ import annotations

import logging

import numpy as np
import torch
from support import require
from torch import nn

from repwidgets.engines import attribution as A


def _traker_scores(model, X, y, Xt, yt, lambda_reg, tmp_path, batch=50):
    from trak import TRAKer
    from trak.projectors import NoOpProjector

    tr = TRAKer(
        model=model,
        task="image_classification",
        train_set_size=len(X),
        save_dir=str(tmp_path / "traker"),
        device="cpu",
        projector=NoOpProjector(device="cpu"),
        use_half_precision=False,
        lambda_reg=lambda_reg,
        logging_level=logging.ERROR,
    )
    tr.load_checkpoint(model.state_dict(), model_id=0)
    for i in range(0, len(X), batch):
        tr.featurize(batch=(X[i : i + batch], y[i : i + batch]), num_samples=len(X[i : i + batch]))
    tr.finalize_features()
    tr.start_scoring_checkpoint("parity", model.state_dict(), model_id=0, num_targets=len(Xt))
    tr.score(batch=(Xt, yt), num_samples=len(Xt))
    return np.asarray(tr.finalize_scores("parity"), dtype=np.float64)


def _trained_mlp(seed=0, n=300, d=8, k=3):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    W = torch.randn(d, k, generator=g)
    y = (X @ W + 0.7 * torch.randn(n, k, generator=g)).argmax(1)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(d, 10), nn.Tanh(), nn.Linear(10, k))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    return model.eval(), X, y


def test_scores_proportional_to_traker_without_projection(tmp_path):
    try:
        import trak  # noqa: F401
    except ImportError:
        require(False, "the traker package (pip install traker)")
    torch.set_num_threads(1)
    model, X, y = _trained_mlp()
    Xt, yt = X[:8] + 0.1, y[:8]
    D = sum(p.numel() for p in model.parameters())
    # traker divides gradients by sqrt(D) before adding lambda_reg * I: the same ridge on
    # our unnormalised gradients is lambda_reg * D.
    lambda_reg = 1e-2
    ref = _traker_scores(model, X, y, Xt, yt, lambda_reg, tmp_path)
    ours = (
        A.trak_scores(
            model,
            (X, y),
            (Xt, yt),
            proj_dim=None,
            lam=lambda_reg * D,
            lam_relative=False,
            progress=False,
        )
        .scores.double()
        .numpy()
    )
    assert ours.shape == ref.shape == (len(X), len(Xt))
    for j in range(len(Xt)):
        r = np.corrcoef(ours[:, j], ref[:, j])[0, 1]
        assert r >= 0.99, (j, r)
    # proportional with one common factor, not merely correlated
    ratio = ours.ravel() / ref.ravel()
    big = np.abs(ref.ravel()) > np.quantile(np.abs(ref), 0.5)
    assert np.std(ratio[big]) / abs(np.mean(ratio[big])) < 1e-2
