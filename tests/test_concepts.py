"""Oracle tests of concept discovery (repwidgets.engines.concepts)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from repwidgets.engines import concepts as cd
from repwidgets.engines.ranks import auc_matrix


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm()


def _planted(n=1500, C=48, frac=0.1, strength=3.0, seed=0):
    """Non-negative noise plus a planted direction u on a fraction of the samples."""
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, C, generator=g) * 0.5
    u = _unit(torch.rand(C, generator=g) * (torch.rand(C, generator=g) < 0.3))
    has = torch.rand(n, generator=g) < frac
    X[has] += strength * u
    return X, u, has


# ------------------------------------------------------------------ decomposition


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("n", [300, 40])  # Gram path (n >= 2C) and direct SVD (n < 2C)
def test_decompose_matches_numpy_svd(n, center):
    g = torch.Generator().manual_seed(1)
    X = torch.rand(n, 32, generator=g) ** 2
    V, S, share, mean = cd.decompose(X, n_components=5, center=center)
    A = X.double().numpy()
    if center:
        A = A - A.mean(0)
    _, s_np, vt_np = np.linalg.svd(A, full_matrices=False)
    np.testing.assert_allclose(S.numpy(), s_np[:5], rtol=1e-4)
    np.testing.assert_allclose(np.abs((V.double().numpy() * vt_np[:5]).sum(1)), 1.0, atol=1e-4)
    np.testing.assert_allclose(share.numpy(), s_np[:5] ** 2 / (s_np**2).sum(), rtol=1e-4)
    np.testing.assert_allclose(mean.numpy(), X.mean(0).numpy(), atol=1e-6)


def test_variance_share_chooses_the_count():
    X, _, _ = _planted()
    _, S, share, _ = cd.decompose(X, n_components=32)
    target = float(share[:3].sum()) - 1e-4  # three directions are needed to reach this
    V, _, _, _ = cd.decompose(X, n_components=target)
    assert V.shape[0] == 3


def test_planted_direction_is_recovered():
    X, u, has = _planted()
    r = cd.discover_activations(X, n_components=4, center=True, embedding=None, progress=False)
    assert abs(float(r.directions[0] @ u)) > 0.9
    assert r.centered
    # the concept refined from that direction points the same way, and so do its members
    j = int((r.source_direction == 0).nonzero()[0])
    assert float(r.vectors[j] @ u) > 0.9
    assert float(has[r.members(j)].float().mean()) > 0.9
    # uncentered (the default): d0 is the mean direction; u lies in the span of d0, d1
    r0 = cd.discover_activations(X, n_components=4, embedding=None, progress=False)
    assert not r0.centered
    assert float((r0.directions[:2] @ u).norm()) > 0.9
    mean_dir = _unit(X.mean(0))
    assert float(r0.directions[0] @ mean_dir) > 0.9


def test_directions_are_oriented_towards_their_tail():
    X, u, _ = _planted()
    r = cd.discover_activations(-X, n_components=2, center=True, embedding=None, progress=False)
    # the planted samples form the tail; whatever the data's sign, the tail is positive
    proj = (-X - (-X).mean(0)) @ r.directions[0]
    assert float(proj.max()) > float(-proj.min())


# ------------------------------------------------------------------ relevance


def _linear_head(C, K, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        OrderedDict(
            layer=nn.Identity(), pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), fc=nn.Linear(C, K)
        )
    )


# ------------------------------------------------------------------ clustering


def _modes(n_modes: int, n=1000, C=24, seed=0):
    """Bulk noise plus 100 samples sharing direction u, split into n_modes sub-groups."""
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, C, generator=g) * 0.3
    basis = torch.eye(C)
    u = _unit(basis[:4].sum(0))
    group = torch.full((n,), -1)
    group[:100] = torch.arange(100) % n_modes
    for m in range(n_modes):
        w = _unit(basis[4 + 3 * m : 7 + 3 * m].sum(0))
        X[group == m] += 3.0 * u + 1.5 * w
    return X, group


@pytest.mark.parametrize("n_modes", [1, 2, 3])
def test_cluster_count_follows_the_modes(n_modes):
    X, group = _modes(n_modes)
    r = cd.discover_activations(
        X, n_components=1, center=True, top_t=100, embedding=None, progress=False
    )
    assert r.n_concepts == n_modes
    for j in range(r.n_concepts):
        g = group[r.members(j)]
        assert int((g >= 0).sum()) == len(g)  # only the planted samples
        assert len(torch.unique(g)) == 1  # one mode per concept
    assert set(r.assignment[:100].tolist()) == set(range(n_modes))


def test_far_members_and_tiny_clusters_are_dropped():
    X, group = _modes(1)
    X[0] += 6.0 * _unit(torch.eye(X.shape[1])[20])  # one member pushed far from the others
    r = cd.discover_activations(
        X, n_components=1, center=True, top_t=100, embedding=None, progress=False
    )
    assert r.n_concepts == 1
    assert 0 not in r.members(0).tolist()
    out = r.outliers()
    far = out[out["kind"] == "far from every cluster"]
    assert 0 in far["index"].tolist()


def test_other_class_outliers_are_the_wrongly_labelled_top_samples():
    X, group = _modes(1)
    labels = torch.zeros(len(X), dtype=torch.long)
    labels[100:] = torch.randint(1, 3, (len(X) - 100,), generator=torch.Generator().manual_seed(0))
    wrong = torch.tensor([3, 17, 42, 77])
    labels[wrong] = 2  # planted samples with the wrong class
    r = cd.discover_activations(
        X, n_components=1, center=True, top_t=100, labels=labels, embedding=None, progress=False
    )
    assert int(r.dominant_class[0]) == 0
    out = r.outliers()
    other = out[out["kind"] == "other class"]
    assert set(other["index"].tolist()) == set(wrong.tolist())
    assert other["score"].is_monotonic_decreasing
    assert all("concept 0" in s for s in other["reason"])


# ------------------------------------------------------------------ labels, frame, io


def test_concepts_are_described_by_the_labels_they_separate():
    X, u, has = _planted()
    noise = torch.rand(len(X), generator=torch.Generator().manual_seed(9)) < 0.4
    labels = torch.stack([noise, has], 1)
    r = cd.discover_activations(
        X,
        n_components=3,
        center=True,
        concepts=labels,
        concept_names=["noise", "planted"],
        embedding=None,
        progress=False,
    )
    torch.testing.assert_close(r.concept_auc, auc_matrix(r.scores, labels).float())
    j = int(r.concept_auc[:, 1].argmax())
    assert float(r.concept_auc[j, 1]) > 0.95
    assert r.describe(j).startswith("mostly: planted")
    frame = r.to_frame()
    assert list(frame.columns[:6]) == [
        "concept",
        "source_direction",
        "end",
        "cosine",
        "size",
        "dominant_class",
    ]
    assert frame.loc[j, "best_label"] == "planted"
    np.testing.assert_allclose(frame["size"].to_numpy(), r.sizes.numpy())


def test_save_load_round_trip_and_plot(tmp_path):
    from bokeh.model import Model

    X, _, has = _planted(n=400, C=16)
    pred = has.long()
    r = cd.discover_activations(
        X,
        n_components=4,
        top_t=40,
        grads=torch.randn(400, 16),
        predictions=pred,
        labels=pred.clone(),
        concepts=has[:, None],
        concept_names=["planted"],
        class_names=["a", "b"],
        embedding="pca",
        progress=False,
    )
    assert r.embedding.shape == (400, 2) and r.embedding_method == "pca"
    r2 = type(r).load(r.save(tmp_path / "c.safetensors"))
    assert r2.to_frame().equals(r.to_frame())
    assert r2.outliers().equals(r.outliers())
    torch.testing.assert_close(r2.directions, r.directions)
    assert isinstance(r.plot(), Model)


@pytest.mark.slow
def test_umap_embedding_shape():
    pytest.importorskip("umap")
    X, _, _ = _planted(n=200, C=8)
    from repwidgets.engines.embedding import embed_points

    emb, method = embed_points(X, "umap", seed=0)
    assert method == "umap" and emb.shape == (200, 2) and torch.isfinite(emb).all()


# ------------------------------------------------------------------ settings


def test_unknown_setting_names_the_close_one():
    X = torch.rand(60, 8)
    with pytest.raises(
        TypeError, match=r"ConceptConfig has no setting 'n_component'.*'n_components'"
    ):
        cd.discover_activations(X, n_component=2, embedding=None)
    with pytest.raises(TypeError, match=r"no setting 'topt'.*'top_t'"):
        cd.ConceptConfig().replace(topt=5)
    sess = _tiny_session()
    with pytest.raises(TypeError, match=r"no setting 'embeding'.*'embedding'"):
        cd.discover(sess, "relu", n_components=2, embeding=None)
    with pytest.raises(ValueError, match=r"top_t must be an integer >= 2"):
        cd.discover_activations(X, n_components=2, top_t=1, embedding=None)


def test_config_round_trips_through_a_saved_result(tmp_path):
    X, _, has = _planted(n=400, C=16)
    cfg = cd.ConceptConfig(n_components=3, center=True, top_t=60, embedding=None, seed=2)
    r = cd.discover_activations(X, cfg, labels=has.long(), progress=False)
    assert r.params == {**cfg.to_dict(), "min_cluster_size": 5}  # the default, resolved
    back = type(r).load(r.save(tmp_path / "r.safetensors"))
    again_cfg = cd.ConceptConfig.from_dict(back.params)
    assert again_cfg == cfg.replace(min_cluster_size=5)
    again = cd.discover_activations(X, back.params, labels=has.long(), progress=False)
    assert again.to_frame().equals(r.to_frame())
    assert again.outliers().equals(r.outliers())
    # overrides win over the config; the session call records its own facts too
    sess = _tiny_session()
    s = cd.discover(sess, "relu", cfg, n_components=2, top_t=30, relevance=False)
    assert s.params["n_components"] == 2 and s.params["center"] is True
    assert {"objective": "predicted", "sign": 1.0, "relevance": False}.items() <= s.params.items()
    assert cd.ConceptConfig.from_dict(s.params).top_t == 30


# ------------------------------------------------------------------ bad input


def test_bad_input_gets_clear_errors():
    X = torch.rand(10, 8)
    with pytest.raises(ValueError, match="n_components=32 but X has only n=10 samples"):
        cd.discover_activations(X, progress=False, embedding=None)
    with pytest.raises(ValueError, match="exceeds the C=8 channels"):
        cd.discover_activations(torch.rand(50, 8), n_components=9, embedding=None)
    with pytest.raises(ValueError, match="no variation"):
        cd.discover_activations(torch.ones(50, 8), n_components=2, embedding=None)
    with pytest.raises(ValueError, match="no variation"):
        cd.discover_activations(
            torch.ones(50, 8) * torch.rand(8), n_components=2, center=True, embedding=None
        )
    Xn = torch.rand(50, 8)
    Xn[3, 5] = float("nan")
    with pytest.raises(ValueError, match=r"columns \(neurons\) \[5\]"):
        cd.discover_activations(Xn, n_components=2, embedding=None)
    with pytest.raises(ValueError, match="mean\\(dim=\\(2, 3\\)\\)"):
        cd.discover_activations(torch.rand(50, 8, 2, 2), n_components=2, embedding=None)
    with pytest.raises(ValueError, match="labels has 3 entries but X has 50"):
        cd.discover_activations(torch.rand(50, 8), n_components=2, labels=[0, 1, 2])
    with pytest.raises(ValueError, match="pass predictions"):
        cd.discover_activations(torch.rand(50, 8), n_components=2, grads=torch.rand(50, 8))
    with pytest.raises(ValueError, match="objective must be one of"):
        cd.layer_relevance(
            _linear_head(2, 2), nn.Identity(), [torch.rand(1, 2, 1, 1)], objective="x"
        )
    with pytest.raises(ValueError, match="not part of"):
        cd.layer_relevance(_linear_head(2, 2), nn.Identity(), [torch.rand(1, 2, 1, 1)])


# ------------------------------------------------------------------ maps and sessions


def test_concept_map_activations_is_the_projection_per_position():
    A = torch.randn(3, 5, 4, 4)
    v = torch.randn(5)
    maps = cd.concept_map_activations(A, v)
    torch.testing.assert_close(maps, (A * v[None, :, None, None]).sum(1))
    up = cd.concept_map_activations(A, v, size=(16, 16))
    assert up.shape == (3, 16, 16)
    torch.testing.assert_close(up.mean((1, 2)), maps.mean((1, 2)), atol=0.3, rtol=0.2)
    with pytest.raises(ValueError, match="convolutional layer"):
        cd.concept_map_activations(torch.rand(3, 5), v)


def _tiny_session():
    from repwidgets.session import Session

    g = torch.Generator().manual_seed(0)
    images = torch.rand(120, 3, 8, 8, generator=g)
    y = torch.randint(0, 3, (120,), generator=g)
    images[y == 1, 0] += 0.5  # something to learn
    torch.manual_seed(0)
    model = nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(3, 12, 3, padding=1),
            relu=nn.ReLU(),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(12, 3),
        )
    )
    return Session(model, (images.clamp(0, 1), y), device="cpu", batch_size=32, progress=False)


def test_session_entry_point_and_concept_map():
    sess = _tiny_session()
    r = cd.discover(sess, "relu", n_components=4, top_t=30, embedding=None)
    assert r.layer == "relu" and r.split == "test" and r._session is sess
    X = sess.activations("relu")
    loader = torch.utils.data.DataLoader(sess.dataset("test"), batch_size=50)
    R, pred = cd.layer_relevance(sess.model, sess.module("relu"), loader, progress=False)
    torch.testing.assert_close(
        r.relevance, cd.relevance_z(R @ r.directions.T, pred, 3), equal_nan=True
    )
    assert torch.equal(r.predictions, sess.predictions())
    assert torch.equal(r.labels, sess.targets())
    torch.testing.assert_close(r.scores, X @ r.vectors.T)
    maps = cd.concept_map(sess, r, 0, indices=[0, 5, 7])
    assert maps.shape == (3, 8, 8)
    A = torch.relu(sess.model.conv(sess.images([0, 5, 7])))
    torch.testing.assert_close(maps, cd.concept_map_activations(A, r.vectors[0]))
    from bokeh.model import Model

    assert isinstance(cd.plot_concept_maps(sess, r, 0, indices=[0, 5]), Model)
    with pytest.raises(ValueError, match="Unknown layer"):
        cd.discover(sess, "nope")
    with pytest.raises(IndexError, match="out of range"):
        cd.concept_map(sess, r, 99)


# ------------------------------------------------------------------ widget (Python side)
