"""Tests of the seeded Johnson-Lindenstrauss projection (repwidgets.engines.projection)."""

from __future__ import annotations

import torch

from repwidgets.engines.projection import JLProjection


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
