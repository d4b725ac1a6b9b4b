"""Band numerics (repwidgets.engines.midrange.band): the automatic band's limits and
the quantiles that reselect the same samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_midrange import planted_middle

from repwidgets.engines import midrange as mr
from repwidgets.engines.midrange import band as mb


def test_auto_band_overlap_and_one_sided():
    """Where the two sides overlap the band is their overlap; one class alone: its low tail."""
    g = torch.Generator().manual_seed(1)
    own = torch.cat([1.0 + torch.randn(500, generator=g), torch.randn(500, generator=g)])
    y = torch.cat([torch.zeros(500), torch.ones(500)]).long()
    choice = mb.auto_band(own, y, 0, tail=0.2)
    assert choice["overlap"]
    lo, hi = choice["limits"]
    assert lo == pytest.approx(float(np.quantile(own[:500].numpy(), 0.2)))
    assert hi == pytest.approx(float(np.quantile(own[500:].numpy(), 0.8)))
    alone = mb.auto_band(own[:500], y[:500], 0, tail=0.2)
    assert alone["rule"] == "auto (one side)"
    assert alone["limits"][1] == pytest.approx(float(np.quantile(own[:500].numpy(), 0.2)))


def test_auto_band_quantiles_reselect_the_same_samples():
    logits, targets, _ = planted_middle(seed=3)
    for within in ("all", "class"):
        m = mr.select_band(logits, targets, 0, within=within)
        again = mr.select_band(logits, targets, 0, band=m.band, within=within, score=m.score)
        assert again.indices.tolist() == m.indices.tolist()
        assert again.band_choice == {}
    g = torch.Generator().manual_seed(0)
    values = torch.randn(301, generator=g).double()
    for lo, hi in ((-0.5, 0.7), (-9.0, 0.1), (0.2, 9.0), (0.31, 0.3101)):
        q = mb.quantiles_of_limits(values, lo, hi)
        qv = torch.quantile(values, torch.tensor(q, dtype=torch.float64))
        picked = (values >= qv[0]) & (values <= qv[1])
        assert torch.equal(picked, (values >= lo) & (values <= hi))
