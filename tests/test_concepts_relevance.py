"""Oracle tests of concept relevance (repwidgets.engines.concepts.relevance)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from test_concepts import _linear_head, _planted
from torch import nn

from repwidgets.engines import concepts as cd


def test_relevance_on_a_linear_head_equals_the_closed_form():
    # logits = W h + b with h = mean_hw A: d logit_k / d A[c, h, w] = W[k, c] / (H W), so
    # relevance_c = mean_hw(W[k, c] / (H W) * relu(A[c, h, w])) = W[k, c] / (H W) * mean relu(A_c)
    C, K, H, W = 6, 3, 4, 5
    model = _linear_head(C, K)
    A = torch.randn(20, C, H, W)
    y = torch.randint(0, K, (20,))
    batches = [(A[:7], y[:7]), (A[7:], y[7:])]
    R, pred = cd.layer_relevance(model, model.layer, batches, progress=False)
    Wt = model.fc.weight.detach()
    logits = model(A).detach()
    assert torch.equal(pred, logits.argmax(1))
    pos = F.relu(A).mean((2, 3))
    torch.testing.assert_close(R, Wt[pred] / (H * W) * pos)
    # the true-class score, and the loss (d CE / d logits = softmax - onehot)
    R_label, _ = cd.layer_relevance(model, model.layer, batches, objective="label", progress=False)
    torch.testing.assert_close(R_label, Wt[y] / (H * W) * pos)
    R_loss, _ = cd.layer_relevance(
        model, model.layer, batches, objective="loss", sign=-1.0, progress=False
    )
    dlogits = logits.softmax(1) - F.one_hot(y, K).float()
    torch.testing.assert_close(R_loss, -(dlogits @ Wt) / (H * W) * pos)


def test_relevance_through_an_inplace_relu_matches_autograd():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 5, 3),
        nn.ReLU(inplace=True),
        nn.Conv2d(5, 4, 3),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )
    x = torch.randn(6, 3, 9, 9)
    R, _ = cd.layer_relevance(model, model[0], [x], progress=False)
    a = model[0](x).detach().requires_grad_(True)
    logits = nn.Sequential(*list(model)[1:])(a.clone())
    (g,) = torch.autograd.grad(logits.max(1).values.sum(), a)
    torch.testing.assert_close(R, (g * a.detach().clamp_min(0)).mean((2, 3)))
    assert all(p.grad is None for p in model.parameters())


def test_relevance_z_matches_the_formula():
    g = torch.Generator().manual_seed(3)
    P = torch.randn(200, 4, generator=g, dtype=torch.float64)
    pred = torch.randint(0, 3, (200,), generator=g)
    z = cd.relevance_z(P, pred, 4)
    for k in range(3):
        inside, others = P[pred == k].numpy(), P[pred != k].numpy()
        expect = (inside.mean(0) - others.mean(0)) / others.std(0, ddof=1)
        np.testing.assert_allclose(z[k].numpy(), expect, rtol=1e-5)
    assert torch.isnan(z[3]).all()  # no sample predicted as class 3


def test_result_relevance_projects_on_the_right_singular_vectors():
    X, _, _ = _planted(n=600, C=16)
    G = torch.randn(600, 16, generator=torch.Generator().manual_seed(5))
    pred = torch.randint(0, 3, (600,), generator=torch.Generator().manual_seed(6))
    r = cd.discover_activations(
        X, n_components=4, grads=G, predictions=pred, embedding=None, progress=False
    )
    R = G * X.clamp_min(0)
    expect = cd.relevance_z(R @ r.directions.T, pred, 3)
    torch.testing.assert_close(r.relevance, expect)
    # a direction's relevance is its transpose's negative: flipping V flips z
    flipped = cd.relevance_z(R @ (-r.directions).T, pred, 3)
    torch.testing.assert_close(flipped, -expect)
