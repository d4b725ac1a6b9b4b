"""Probes, probe logits and TRAK on token and channels-last layers, on models that
return dicts, and with the projection done in small steps."""

from __future__ import annotations

import pytest
import torch
from method_layout_cases import (
    Unwrapped,
    channels_last_session,
    vit_session,
)
from own_models import VIT_BLOCK, ChannelsLast
from own_models import hooked_output as raw_output

from repwidgets.engines import attribution as A
from repwidgets.engines.attribution.probes import probe_activations
from repwidgets.engines.projection import JLProjection
from repwidgets.session import select_output


def _selection(sess):
    """A user's concept: the first concept column, on both splits."""
    mask = sess.concepts("test")[:, 0].bool()
    return {"train": mask, "test": mask}


@pytest.mark.parametrize("pool", ["mean", "cls"])
def test_probes_and_probe_logits_read_the_sessions_pooled_tokens(pool):
    sess = vit_session()
    concept = _selection(sess)
    p = A.probe_layers(sess, concept, layers=[VIT_BLOCK], pool=pool, fit_split="train")
    acts = sess.activations(VIT_BLOCK, "test", pool=pool)
    raw = raw_output(sess.model, sess.module(VIT_BLOCK), sess.images(range(24), "test"))
    torch.testing.assert_close(acts, raw.mean(dim=1) if pool == "mean" else raw[:, 0])
    y = concept["test"]
    same = probe_activations(acts, y, acts, y)
    probe = p._probes[0][0]
    torch.testing.assert_close(probe.weight, same.weight)
    assert probe.accuracy == same.accuracy
    # the probe's logit composed with the network, as TRAK differentiates it
    fn = A.ProbeLogit.from_probe(VIT_BLOCK, probe, pool=pool, neuron_axis=-1)
    images = sess.images(range(24), "test")
    with fn.attached(sess.model, sess.device), torch.no_grad():
        logits = torch.stack(
            [fn(sess.model, images[i], torch.tensor(int(y[i]))) for i in range(24)]
        )
    sign = 2.0 * y.float() - 1
    torch.testing.assert_close(logits, sign * probe.logit(acts), atol=1e-4, rtol=1e-4)


def test_probe_logit_on_a_channels_last_layer_pools_its_positions():
    sess = channels_last_session()
    torch.manual_seed(0)
    w, b = torch.randn(10), 0.3
    fn = A.ProbeLogit("fc", w, b, pool="max", signed=False, neuron_axis=-1)
    images = sess.images(range(6), "test")
    raw = raw_output(sess.model, sess.model.fc, images)  # [6, H, W, 10]

    def forward(x):
        return select_output(sess.model(x), sess.output)

    with fn.attached(sess.model, sess.device), torch.no_grad():
        out = torch.stack([fn(forward, images[i], torch.tensor(0)) for i in range(6)])
    torch.testing.assert_close(out, raw.amax(dim=(1, 2)) @ w + b, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="pool must be 'mean', 'max' or 'cls'"):
        A.ProbeLogit("fc", w, b, pool="median")


def _problem(n=20, n_t=3):
    g = torch.Generator().manual_seed(3)
    X, y = torch.rand(n, 3, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)
    return (X, y), (X[:n_t], y[:n_t])


@pytest.mark.parametrize("proj_dim", [None, 32])
def test_trak_reads_the_logits_of_a_dict_returning_model(proj_dim):
    model = ChannelsLast().eval()
    train, targets = _problem()
    kw = dict(proj_dim=proj_dim, lam=1e-2, progress=False)
    with pytest.raises(TypeError, match="output='logits'"):
        A.trak_scores(model, train, targets, **kw)
    wrapped = A.trak_scores(model, train, targets, output="logits", **kw)
    by_hand = A.trak_scores(Unwrapped(model), train, targets, **kw)
    assert wrapped.scores.shape == (20, 3)
    torch.testing.assert_close(wrapped.scores, by_hand.scores, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(wrapped.out_to_loss, by_hand.out_to_loss)
    pick = A.trak_scores(model, train, targets, output=lambda out: out["logits"], **kw)
    torch.testing.assert_close(pick.scores, wrapped.scores)


def test_model_outputs_read_through_output_and_preprocess():
    model = ChannelsLast().eval()
    _, (X, y) = _problem()

    def halve(x):
        return x / 2

    out = A.model_outputs(model, (X, y), output="logits", preprocess=halve)
    ref = Unwrapped(model)(X / 2).detach()
    is_y = torch.nn.functional.one_hot(y, 4).bool()
    margin = ref[is_y] - ref.masked_fill(is_y, float("-inf")).logsumexp(dim=1)
    torch.testing.assert_close(out, margin, atol=1e-5, rtol=1e-5)


def test_chunked_projection_equals_unchunked():
    torch.manual_seed(0)
    x = torch.randn(7, 1000)
    for kind in ("rademacher", "gaussian"):
        for cache_mb in (0, 64):
            for proj_dim, chunk_mb in ((24, 2e-3), (4, 3e-5)):
                setting = dict(kind=kind, seed=2, block_rows=300, cache_mb=cache_mb)
                whole = JLProjection(1000, proj_dim, **setting)
                small = JLProjection(1000, proj_dim, chunk_mb=chunk_mb, **setting)
                rows, samples = small._steps(7)
                # the product really runs in steps: of parameter rows, then of samples
                assert rows < 300 and (samples < 7 if proj_dim == 4 else rows > 1)
                ref = x.double() @ whole.matrix().double()
                torch.testing.assert_close(whole.project(x).double(), ref, atol=1e-5, rtol=1e-5)
                parts = [x[:, :1], x[:, 1:299], x[:, 299:650], x[:, 650:]]
                got = small.project_parts(parts).double()
                torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="add up to in_dim=1000"):
        small.project_parts([x[:, :10]])
    with pytest.raises(ValueError, match="chunk_mb must be positive"):
        JLProjection(10, 2, chunk_mb=0)


def test_trak_features_do_not_depend_on_the_projection_budget():
    model = ChannelsLast().eval()
    train, targets = _problem()
    kw = dict(proj_dim=64, lam=1e-2, progress=False, output="logits")
    big = A.TRAK(model, **kw).featurize(train)
    tiny = A.TRAK(model, proj_chunk_mb=1e-3, **kw).featurize(train)
    assert tiny.checkpoints[0].featurizer.projection._steps(20)[0] < 16384
    phi_big, out_big = big.checkpoints[0].featurizer(*train)
    phi_tiny, out_tiny = tiny.checkpoints[0].featurizer(*train)
    torch.testing.assert_close(phi_tiny, phi_big, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out_tiny, out_big)
    scores = big.score(targets).scores
    torch.testing.assert_close(
        tiny.score(targets).scores, scores, atol=1e-4 * float(scores.abs().max()), rtol=0
    )
    with pytest.raises(ValueError, match="proj_chunk_mb must be positive"):
        A.trak_scores(model, train, targets, proj_chunk_mb=0, **kw)


@pytest.mark.filterwarnings("ignore:There is a performance drop")
@pytest.mark.parametrize("case", ["vit_cls", "channels_last"])
def test_concept_attribution_on_a_token_or_channels_last_layer_equals_trak_by_hand(case):
    if case == "vit_cls":
        sess, layer, pool = vit_session(), VIT_BLOCK, "cls"
    else:
        sess, layer, pool = channels_last_session(), "fc", "mean"
    concept = _selection(sess)
    settings = dict(layers=(layer,), n_models=1, proj_dim=32, fit_split="train", pool=pool)
    r = A.concept_attribution(sess, concept, layer=layer, progress=False, **settings)
    probes = A.probe_layers(sess, concept, layers=[layer], pool=pool, fit_split="train")
    fn = A.ProbeLogit.from_probe(layer, probes._probes[0][0], pool=pool, neuron_axis=-1)
    X = sess.images(range(24), "train")
    y = concept["train"].long()
    t = torch.nonzero(concept["test"]).flatten()
    by_hand = A.trak_scores(
        sess.model,
        (X, y),
        (X[t], y[t]),
        output_fn=fn,
        proj_dim=32,
        reduce="mean",
        output=sess.output,
        progress=False,
    )
    # concept attribution leaves the probe's Q term out (out_to_loss="none")
    expected = by_hand.scores / by_hand.out_to_loss
    torch.testing.assert_close(r.scores, expected, atol=1e-4 * float(expected.abs().max()), rtol=0)
    assert r.params["pool"] == pool
