"""INVERT on token and channels-last layers: the neurons are the layer's neuron axis and
their activations the session's pooling (mean over tokens or positions, class token)."""

from __future__ import annotations

import torch
from method_layout_cases import (
    channels_last_session,
    vit_session,
)
from own_models import VIT_BLOCK
from own_models import hooked_output as raw_output

import repwidgets as rw


def test_invert_labels_the_hidden_dim_neurons_of_a_vit_block_from_their_token_mean():
    sess = vit_session()
    images = sess.images(range(sess.n("test")), "test")
    raw = raw_output(sess.model, sess.module(VIT_BLOCK), images)  # [n, 17, 24]
    assert raw.shape == (24, 17, 24)
    r = rw.invert.explain(sess, VIT_BLOCK, max_length=2, beam_size=3, min_fraction=0.05)
    assert r.neurons.tolist() == list(range(24))
    torch.testing.assert_close(r.activations(), raw.mean(dim=1), atol=1e-5, rtol=1e-5)
    # the same formulas and AUCs as the tensor core on the hand-pooled activations
    core = rw.invert.explain_activations(
        raw.mean(dim=1),
        sess.concepts("test"),
        sess.concept_names,
        max_length=2,
        beam_size=3,
        min_fraction=0.05,
    )
    assert [f["text"] for f in r.formulas] == [f["text"] for f in core.formulas]
    torch.testing.assert_close(r.auc, core.auc)


def test_invert_on_the_class_token_and_on_chosen_neurons():
    sess = vit_session()
    raw = raw_output(sess.model, sess.module(VIT_BLOCK), sess.images(range(24), "test"))
    r = rw.invert.explain(sess, VIT_BLOCK, pool="cls", neurons=[3, 23], max_length=1)
    assert r.pool == "cls" and r.neurons.tolist() == [3, 23]
    torch.testing.assert_close(r.activations(), raw[:, 0][:, [3, 23]], atol=1e-5, rtol=1e-5)


def test_invert_on_a_channels_last_block_and_with_an_explicit_axis():
    sess = channels_last_session()
    raw = raw_output(sess.model, sess.model.fc, sess.images(range(24), "test"))  # [n, H, W, C]
    r = rw.invert.explain(sess, "fc", max_length=1)
    assert len(r.neurons) == 10
    torch.testing.assert_close(r.activations(), raw.mean(dim=(1, 2)), atol=1e-5, rtol=1e-5)
    # an override of the axis is kept by the result: here the 32 rows of the grid
    rows = rw.invert.explain(sess, "fc", neuron_axis=1, max_length=1)
    assert len(rows.neurons) == 32 and rows.neuron_axis == 1
    torch.testing.assert_close(rows.activations(), raw.mean(dim=(2, 3)), atol=1e-5, rtol=1e-5)
