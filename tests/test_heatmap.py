"""DistanceHeatmap (repwidgets.widgets.heatmap): ordering, wire encoding, bad input and
selection (the DORA view that builds one is tested in test_views_dora.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import traitlets

from repwidgets.widgets.heatmap import (
    DistanceHeatmap,
    cluster_order,
    decode_matrix,
    encode_matrix,
)


def planted(sizes=(7, 11, 5, 9), seed: int = 0, noise: float = 0.3):
    """Distances between points around well separated centres, rows shuffled."""
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(len(sizes)), sizes)
    rng.shuffle(group)
    centres = rng.normal(size=(len(sizes), 5)) * 10
    X = centres[group] + rng.normal(size=(len(group), 5)) * noise
    return np.linalg.norm(X[:, None] - X[None], axis=-1), group


def n_runs(labels) -> int:
    labels = np.asarray(labels)
    return 1 + int((labels[1:] != labels[:-1]).sum())


# ----------------------------------------------------------------------------- ordering
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cluster_order_is_a_permutation_grouping_planted_blocks(seed):
    D, group = planted(seed=seed)
    order = cluster_order(D)
    assert sorted(order.tolist()) == list(range(len(D)))
    assert n_runs(group) > 4  # shuffled: blocks are split before ordering
    assert n_runs(group[order]) == 4  # each block is one contiguous run after


def test_cluster_order_similarity_and_torch_input():
    D, group = planted(seed=3)
    S = np.exp(-D)  # a similarity: larger = closer
    order = cluster_order(torch.from_numpy(S), similarity=True)
    assert n_runs(group[order]) == 4
    # treating the similarity as a distance gives a different (wrong) grouping here
    wrong = cluster_order(S)
    assert sorted(wrong.tolist()) == list(range(len(D)))


def test_widget_order_trait_switches_permutation():
    D, group = planted()
    hm = DistanceHeatmap(D, order="cluster")
    assert n_runs(group[hm.order_positions]) == 4
    hm.order = "none"
    assert hm.order_positions.tolist() == list(range(len(D)))
    assert hm.permutation.tolist() == list(range(len(D)))  # Python reads back an array
    meta = hm.get_state("permutation")["permutation"]
    assert np.frombuffer(meta["buffer"], dtype="<i4").tolist() == list(range(len(D)))
    with pytest.raises(traitlets.TraitError, match="order must be one of"):
        hm.order = "random"


# ----------------------------------------------------------------------------- wire
@pytest.mark.parametrize("encoding", ["float32", "uint16", "uint8"])
@pytest.mark.parametrize("symmetric", [True, False])
def test_encoding_round_trips_within_quantisation_error(encoding, symmetric):
    rng = np.random.default_rng(4)
    k = 33
    M = rng.normal(size=(k, k)) * 3
    if symmetric:
        M = (M + M.T) / 2
    state = encode_matrix(M, encoding=encoding)
    assert state["packing"] == ("upper" if symmetric else "full")
    n = k * (k + 1) // 2 if symmetric else k * k
    assert state["values"]["shape"] == [n]
    assert state["values"]["dtype"] == encoding
    assert isinstance(state["values"]["buffer"], bytes)
    back = decode_matrix(state)
    span = M.max() - M.min()
    if encoding == "float32":
        bound = np.abs(M).max() * 2**-23
    else:
        bound = span / (255 if encoding == "uint8" else 65535) / 2
    err = np.abs(back - M).max()
    assert err <= bound * (1 + 1e-9)
    assert err > 0 or encoding == "float32"


def test_auto_encoding_is_compact_for_large_k():
    k = 1024
    rng = np.random.default_rng(5)
    X = rng.normal(size=(k, 4)).astype(np.float32)
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    state = encode_matrix(D)
    assert state["quantized"] and state["values"]["dtype"] == "uint16"
    assert state["packing"] == "upper"
    nbytes = len(state["values"]["buffer"])
    assert nbytes == 2 * k * (k + 1) // 2
    assert nbytes < D.astype(np.float64).nbytes / 7.9
    small = encode_matrix(D[:100, :100])
    assert small["values"]["dtype"] == "float32"


def test_constant_matrix_and_near_symmetry():
    state = encode_matrix(np.full((3, 3), 2.5), encoding="uint8")
    assert np.allclose(decode_matrix(state), 2.5)
    M = np.array([[0.0, 1.0], [1.0 + 1e-12, 0.0]])
    assert encode_matrix(M)["packing"] == "upper"
    assert encode_matrix(M, symmetric=False)["packing"] == "full"


def test_widget_state_is_binary():
    D, _ = planted()
    hm = DistanceHeatmap(D, ids=range(10, 10 + len(D)))
    state = hm.get_state()
    for meta in (state["values"]["values"], state["permutation"], state["neuron_ids"]):
        assert isinstance(meta["buffer"], (bytes, memoryview))
    ids = np.frombuffer(state["neuron_ids"]["buffer"], dtype="<i4")
    assert ids.tolist() == list(range(10, 10 + len(D)))
    # the wire form is exactly encode_matrix's, and the matrix comes back from the trait
    assert state["values"] == encode_matrix(D)
    assert np.allclose(decode_matrix(hm.values), decode_matrix(state["values"]))


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (np.zeros((3, 4)), "square"),
        (np.zeros(5), "square"),
        (np.zeros((1, 1)), "at least 2"),
        (np.array([[0.0, np.nan], [1.0, 0.0]]), r"NaN values in rows \[0\]"),
        (np.array([[0.0, 1.0], [np.inf, 0.0]]), r"infinite values in rows \[1\]"),
    ],
)
def test_bad_matrices_raise_clear_errors(matrix, message):
    with pytest.raises(ValueError, match=message):
        DistanceHeatmap(matrix)


def test_bad_arguments():
    D, _ = planted()
    k = len(D)
    with pytest.raises(ValueError, match=f"labels has 3 entries but the matrix has {k}"):
        DistanceHeatmap(D, labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="ids must be unique"):
        DistanceHeatmap(D, ids=[0] * k)
    with pytest.raises(ValueError, match="order must be one of"):
        DistanceHeatmap(D, order="alphabetical")
    with pytest.raises(ValueError, match="encoding must be one of"):
        encode_matrix(D, encoding="int4")
    with pytest.raises(TypeError, match="must hold numbers"):
        DistanceHeatmap(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(ValueError, match="thumbnails has 2 images"):
        DistanceHeatmap(D, thumbnails=[b"x", b"y"])


# ----------------------------------------------------------------------------- selection
def test_selection_trait_validation():
    D, _ = planted()
    ids = [7 * i for i in range(len(D))]
    hm = DistanceHeatmap(D, ids=ids, selected=[14, 7, 14])
    assert hm.selected == [14, 7]  # deduplicated, order kept
    with pytest.raises(traitlets.TraitError, match="not rows of this heatmap: \\[3\\]"):
        hm.selected = [3]
    with pytest.raises(traitlets.TraitError, match="must hold ints; got bool"):
        hm.selected = [True]
    hm.selected = [np.int64(21)]
    assert hm.selected == [21]
    assert hm.value(7, 21) == pytest.approx(D[1, 3])
    with pytest.raises(KeyError, match="No neuron with id 5"):
        hm.value(5, 7)


def test_link_with_gallery_keeps_selection_in_step():
    from repwidgets.widgets import NeuronGallery, link

    D, _ = planted()
    ids = list(range(100, 100 + len(D)))
    hm = DistanceHeatmap(D, ids=ids)
    g = NeuronGallery([{"id": i} for i in ids[:20]])
    ln = link(hm, g)
    hm.selected = [101, 125]
    assert g.selected == [101]  # 125 is not a card of the gallery
    g.selected = [105, 106]
    assert hm.selected == [105, 106]
    ln.unlink()


def test_thumbnail_requests_are_answered_through_the_router():
    D, _ = planted()
    ids = list(range(50, 50 + len(D)))
    png = b"\x89PNG\r\n\x1a\n"
    hm = DistanceHeatmap(D, thumbnails=lambda keys: [png + bytes([k]) for k in keys], ids=ids)
    sent = []
    hm.send = lambda content, buffers=None: sent.append((content, buffers))
    hm._router.handle({"type": "fetch", "request_id": "r1", "keys": [51, 60]}, [])
    content, buffers = sent[-1]
    assert content["ok"] and content["offsets"] == [0, 9, 18]
    assert buffers[0] == png + bytes([51]) + png + bytes([60])
    hm._router.handle({"type": "fetch", "request_id": "r2", "keys": [3]}, [])
    assert sent[-1][0]["ok"] is False and "No neuron with id" in sent[-1][0]["error"]
    assert hm.has_thumbnails
    assert not DistanceHeatmap(D).has_thumbnails
