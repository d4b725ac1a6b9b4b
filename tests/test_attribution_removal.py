"""Tests of the removal experiment (repwidgets.engines.attribution.removal)."""

from __future__ import annotations

import numpy as np
import pytest

from repwidgets.engines import attribution as A

pytestmark = pytest.mark.usefixtures("one_thread")


def test_removal_experiment_removes_the_top_k_and_k_random(attribution_session, tmp_path):
    import copy

    sess = attribution_session
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
