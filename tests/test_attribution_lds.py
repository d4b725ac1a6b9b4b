"""Oracle test of the linear datamodeling score (repwidgets.engines.attribution.lds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repwidgets.engines import attribution as A


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
