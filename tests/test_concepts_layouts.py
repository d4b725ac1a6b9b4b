"""Concept discovery on token and channels-last layers: activations, relevance and
concept maps read each layer on its neuron axis."""

from __future__ import annotations

import pytest
import torch
from method_layout_cases import (
    channels_last_session,
    output_and_gradient,
    vit_session,
)
from own_models import VIT_BLOCK
from own_models import hooked_output as raw_output
from torch.utils.data import DataLoader

import repwidgets as rw
from repwidgets.engines.concepts.maps import spatial_maps
from repwidgets.engines.concepts.relevance import layer_relevance, relevance_z
from repwidgets.layouts import Layout

SETTINGS = dict(n_components=3, top_t=10, min_cluster_size=2, embedding=None)


def _relevance(sess, layer, **kw):
    loader = DataLoader(sess.dataset("test"), batch_size=7)
    return layer_relevance(
        sess.model,
        sess.module(layer),
        loader,
        neuron_axis=sess.layout(layer).neuron_axis,
        output=sess.output,
        progress=False,
        **kw,
    )


def test_relevance_over_tokens_equals_activation_times_gradient_by_hand():
    sess = vit_session()
    images = sess.images(range(24), "test")
    A, dA, pred = output_and_gradient(sess.model, sess.module(VIT_BLOCK), images)  # [n, 17, 24]
    R, p = _relevance(sess, VIT_BLOCK)
    assert R.shape == (24, 24) and torch.equal(p, pred)
    torch.testing.assert_close(R, (dA * A.clamp_min(0)).mean(dim=1), atol=1e-6, rtol=1e-4)
    R_cls, _ = _relevance(sess, VIT_BLOCK, pool="cls")
    torch.testing.assert_close(R_cls, (dA * A.clamp_min(0))[:, 0], atol=1e-6, rtol=1e-4)


def test_discover_on_a_vit_block_uses_the_token_mean_and_its_relevance():
    sess = vit_session()
    images = sess.images(range(24), "test")
    A, dA, pred = output_and_gradient(sess.model, sess.module(VIT_BLOCK), images)
    r = rw.concepts.discover(sess, VIT_BLOCK, **SETTINGS)
    assert r.directions.shape == (3, 24)
    X = A.mean(dim=1)
    # the directions are right singular vectors of the token-mean activations
    _, _, Vh = torch.linalg.svd(X.double(), full_matrices=False)
    cos = (r.directions.double() @ Vh[:3].T).abs().diagonal()
    assert bool((cos > 0.999).all()), cos
    z = relevance_z((dA * A.clamp_min(0)).mean(dim=1) @ r.directions.T, pred, 4)
    torch.testing.assert_close(r.relevance, z, atol=1e-4, rtol=1e-3, equal_nan=True)


def test_discover_on_a_dict_returning_channels_last_block():
    sess = channels_last_session()
    images = sess.images(range(24), "test")
    A, dA, pred = output_and_gradient(
        sess.model, sess.model.fc, images, select=lambda out: out["logits"]
    )  # [n, 32, 32, 10]
    R, p = _relevance(sess, "fc")
    torch.testing.assert_close(R, (dA * A.clamp_min(0)).mean(dim=(1, 2)), atol=1e-7, rtol=1e-4)
    r = rw.concepts.discover(sess, "fc", **SETTINGS)
    z = relevance_z((dA * A.clamp_min(0)).mean(dim=(1, 2)) @ r.directions.T, pred, 4)
    torch.testing.assert_close(r.relevance, z, atol=1e-4, rtol=1e-3, equal_nan=True)


def test_concept_maps_of_a_vit_block_lay_the_patch_tokens_on_their_grid():
    sess = vit_session()
    r = rw.concepts.discover(sess, VIT_BLOCK, relevance=False, **SETTINGS)
    assert r.n_concepts >= 1
    idx = [0, 5, 9]
    maps = rw.concepts.concept_map(sess, r, 0, idx)
    assert maps.shape == (3, 32, 32)
    raw = raw_output(sess.model, sess.module(VIT_BLOCK), sess.images(idx, "test"))
    small = rw.concepts.concept_map(sess, r, 0, idx, upsample=False)
    by_hand = raw[:, 1:].reshape(3, 4, 4, 24) @ r.vectors[0]  # patch (i, j) at row i
    torch.testing.assert_close(small, by_hand, atol=1e-5, rtol=1e-5)


def test_concept_maps_of_a_channels_last_block():
    sess = channels_last_session()
    r = rw.concepts.discover(sess, "fc", relevance=False, **SETTINGS)
    raw = raw_output(sess.model, sess.model.fc, sess.images([2, 3], "test"))
    maps = rw.concepts.concept_map(sess, r, 0, [2, 3], upsample=False)
    torch.testing.assert_close(maps, raw @ r.vectors[0], atol=1e-5, rtol=1e-5)


def test_tokens_that_are_not_a_square_grid_get_a_clear_error():
    tokens = Layout(neuron_axis=2, ndim=3)
    assert spatial_maps(torch.zeros(2, 16, 5), tokens).shape == (2, 5, 4, 4)  # no class token
    assert spatial_maps(torch.zeros(2, 10, 5), tokens).shape == (2, 5, 3, 3)  # 1 + 3*3
    with pytest.raises(ValueError, match="cannot be laid on a square grid"):
        spatial_maps(torch.zeros(2, 21, 5), tokens)  # e.g. 1 + 16 + 4 registers
    with pytest.raises(ValueError, match="need a layer with positions"):
        spatial_maps(torch.zeros(2, 5), Layout(neuron_axis=1, ndim=2))


def test_relevance_and_maps_run_the_model_on_preprocessed_inputs():
    def normalise(x):
        return (x - 0.5) / 0.25

    sess = vit_session(preprocess=normalise)
    images = sess.images(range(24), "test")
    A, dA, _ = output_and_gradient(sess.model, sess.module(VIT_BLOCK), normalise(images))
    R, _ = _relevance(sess, VIT_BLOCK, preprocess=sess.preprocess)
    torch.testing.assert_close(R, (dA * A.clamp_min(0)).mean(dim=1), atol=1e-6, rtol=1e-4)
    r = rw.concepts.discover(sess, VIT_BLOCK, **SETTINGS)
    z = relevance_z((dA * A.clamp_min(0)).mean(dim=1) @ r.directions.T, r.predictions, 4)
    torch.testing.assert_close(r.relevance, z, atol=1e-4, rtol=1e-3, equal_nan=True)
    small = rw.concepts.concept_map(sess, r, 0, [1, 2], upsample=False)
    by_hand = A[[1, 2], 1:].reshape(2, 4, 4, 24) @ r.vectors[0]
    torch.testing.assert_close(small, by_hand, atol=1e-5, rtol=1e-5)
