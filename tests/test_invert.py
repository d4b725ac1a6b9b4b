"""INVERT engine: oracles (sklearn AUROC, scipy Mann-Whitney, a brute-force beam search,
planted formulas) and the behaviour a user relies on (filters, dedup, errors, results)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from reference_invert import reference_explain
from scipy.stats import mannwhitneyu
from sklearn.metrics import roc_auc_score

from repwidgets.engines import invert
from repwidgets.engines.invert import (
    InvertConfig,
    explain_activations,
    formula_mask,
)


def _concepts(n=800, K=8, seed=0):
    rng = np.random.default_rng(seed)
    C = rng.random((n, K)) < rng.uniform(0.08, 0.5, K)
    return C, [f"c{k}" for k in range(K)]


# ------------------------------------------------------------------------- oracles


@pytest.mark.parametrize("mode, min_f, max_f", [("positive", 0.0, 0.5), ("negative", 0.03, 0.45)])
def test_engine_equals_brute_force_reference(mode, min_f, max_f):
    C, names = _concepts(n=500, K=7, seed=1)
    C[:, 5] = C[:, 2]  # a duplicate concept column
    C[:, 6] = ~C[:, 3]  # a complementary concept column
    rng = np.random.default_rng(2)
    acts = rng.normal(size=(500, 3))
    acts[:, 0] += 2.0 * ((C[:, 0] & ~C[:, 1]) | C[:, 4])
    acts[:, 1] = np.round(acts[:, 1] + 1.5 * C[:, 4], 0)  # heavy ties
    acts[:, 2] = np.maximum(acts[:, 2], 0) * C[:, 3]  # mostly zeros
    r = explain_activations(
        torch.tensor(acts),
        torch.tensor(C),
        names,
        max_length=3,
        beam_size=4,
        min_fraction=min_f,
        max_fraction=max_f,
        mode=mode,
        return_beam=True,
        progress=False,
    )
    for j in range(acts.shape[1]):
        a = acts[:, j] if mode == "positive" else -acts[:, j]
        ref = reference_explain(a, C, names, 3, 4, min_f, max_f)
        ours = [(e["text"], e["auc"] if mode == "positive" else 1 - e["auc"]) for e in r.beams[j]]
        assert [t for t, _ in ours] == [t for t, _ in ref], (j, min_f)
        np.testing.assert_allclose([x for _, x in ours], [x for _, x in ref], atol=1e-12)


def test_aucs_equal_sklearn_with_ties_and_p_values_equal_scipy():
    C, names = _concepts(n=600, K=6, seed=3)
    rng = np.random.default_rng(4)
    acts = np.round(rng.normal(size=(600, 5)) + C[:, :5], 1)  # ties everywhere
    r = explain_activations(
        torch.tensor(acts), torch.tensor(C), names, return_beam=True, progress=False
    )
    for j in range(5):
        for e in r.beams[j]:
            mask = formula_mask(e, torch.tensor(C)).numpy()
            assert e["fraction"] == pytest.approx(mask.mean())
            assert e["auc"] == pytest.approx(roc_auc_score(mask, acts[:, j]), abs=1e-12)
            ref = mannwhitneyu(acts[mask, j], acts[~mask, j], method="asymptotic").pvalue
            assert e["p_value"] == pytest.approx(ref, rel=1e-8, abs=1e-300)
            assert e["log10_p"] == pytest.approx(math.log10(ref), rel=1e-8)
    # the best formula of each neuron is the first entry of its beam
    assert r.to_frame().formula.tolist() == [b[0]["text"] for b in r.beams]


def test_scipy_continuity_choice_is_followed():
    C, names = _concepts(n=400, K=4, seed=5)
    acts = torch.randn(400, 2, generator=torch.Generator().manual_seed(0)) + torch.tensor(C[:, :2])
    r = explain_activations(acts, C, names, continuity=False, max_length=1, progress=False)
    for j in range(2):
        mask = formula_mask(r.formulas[j], torch.tensor(C))
        ref = mannwhitneyu(
            acts[mask, j], acts[~mask, j], method="asymptotic", use_continuity=False
        ).pvalue
        assert float(r.p_value[j]) == pytest.approx(ref, rel=1e-8)


def test_planted_length_three_formula_is_recovered():
    rng = np.random.default_rng(6)
    n = 4000
    names = ["red", "circle", "stripes", "large", "blue", "dots"]
    C = np.stack([rng.random(n) < p for p in (0.4, 0.5, 0.12, 0.3, 0.25, 0.2)], axis=1)
    planted = (C[:, 0] & ~C[:, 1]) | C[:, 2]  # red AND NOT circle, OR stripes
    acts = np.stack(
        [
            planted + 0.01 * rng.random(n),  # high exactly on the planted mask
            -1.0 * planted + 0.3 * rng.normal(size=n),  # a negative detector of it
        ],
        axis=1,
    )
    r = explain_activations(
        torch.tensor(acts),
        torch.tensor(C),
        names,
        max_length=3,
        beam_size=5,
        max_fraction=0.5,
        progress=False,
    )
    mask = formula_mask(r.formulas[0], torch.tensor(C)).numpy()
    np.testing.assert_array_equal(mask, planted)
    # both commuted forms have this mask; the lexicographically first text is kept
    assert r.formulas[0]["text"] == "(NOT circle AND red) OR stripes"
    assert float(r.auc[0]) == 1.0
    assert r.formulas[0]["length"] == 3
    assert [c["negated"] for c in r.formulas[0]["clauses"]] == [True, False, False]
    neg = explain_activations(
        torch.tensor(acts[:, 1:]), torch.tensor(C), names, mode="negative", progress=False
    )
    np.testing.assert_array_equal(formula_mask(neg.formulas[0], torch.tensor(C)).numpy(), planted)
    assert float(neg.auc[0]) < 0.1  # low activation on the formula


def test_not_atom_auc_is_one_minus_concept_auc():
    C, names = _concepts(n=500, K=3, seed=7)
    acts = torch.randn(500, 1, generator=torch.Generator().manual_seed(1)) - 2.0 * torch.tensor(
        C[:, :1]
    )
    r = explain_activations(acts, C, names, max_length=1, max_fraction=1.0, progress=False)
    assert r.formulas[0]["text"] == "NOT c0"
    assert float(r.auc[0]) == pytest.approx(1.0 - roc_auc_score(C[:, 0], acts[:, 0]), abs=1e-12)


def test_fraction_filters_hold():
    C, names = _concepts(n=900, K=7, seed=8)
    acts = torch.randn(900, 6, generator=torch.Generator().manual_seed(2))
    for lo, hi in [(0.0, 0.5), (0.05, 0.2), (0.2, 0.3)]:
        r = explain_activations(
            acts, C, names, min_fraction=lo, max_fraction=hi, return_beam=True, progress=False
        )
        fractions = [e["fraction"] for beam in r.beams for e in beam]
        assert fractions and min(fractions) >= lo - 1e-12 and max(fractions) <= hi + 1e-12
        for beam in r.beams:  # reported fractions are the masks' true fractions
            for e in beam:
                assert formula_mask(e, torch.tensor(C)).double().mean() == pytest.approx(
                    e["fraction"]
                )


def test_no_two_formulas_in_a_beam_share_a_mask():
    rng = np.random.default_rng(9)
    n = 500
    C = rng.random((n, 6)) < 0.3
    C[:, 5] = C[:, 0] & C[:, 1]  # a concept equal to a conjunction of two others
    names = ["a", "b", "c", "d", "e", "ab"]
    acts = torch.tensor(C[:, :1] & C[:, 1:2], dtype=torch.float64) + 0.1 * torch.randn(n, 1)
    acts = torch.cat([acts, torch.randn(n, 3)], dim=1)
    r = explain_activations(
        acts, C, names, max_length=3, beam_size=8, return_beam=True, progress=False
    )
    for beam in r.beams:
        masks = {formula_mask(e, torch.tensor(C)).numpy().tobytes() for e in beam}
        assert len(masks) == len(beam)
    # "a AND b" has the same mask as the atom "ab": the shorter formula wins
    assert r.formulas[0]["text"] == "ab"


def test_duplicate_concepts_keep_the_lexicographically_first_name():
    rng = np.random.default_rng(10)
    C = rng.random((300, 3)) < 0.3
    C[:, 2] = C[:, 0]
    names = ["zeta", "other", "alpha"]  # "alpha" == "zeta" as masks
    acts = torch.tensor(C[:, :1], dtype=torch.float32) + 0.01 * torch.rand(300, 1)
    r = explain_activations(acts, C, names, max_length=2, progress=False)
    assert r.formulas[0]["text"] == "alpha"


def test_max_operands_limits_the_concepts_used():
    C, names = _concepts(n=600, K=8, seed=11)
    acts = torch.randn(600, 5, generator=torch.Generator().manual_seed(3)) + torch.tensor(
        C[:, :5] * 1.0
    )
    aucs = torch.tensor([[roc_auc_score(C[:, k], acts[:, j]) for k in range(8)] for j in range(5)])
    r = explain_activations(acts, C, names, max_operands=2, return_beam=True, progress=False)
    for j, beam in enumerate(r.beams):
        allowed = set(torch.topk((aucs[j] - 0.5).abs(), 2).indices.tolist())
        for e in beam:
            later = [c["index"] for c in e["clauses"][1:]]  # operands added by the search
            assert set(later) <= allowed


def test_top_indices_are_the_top_activating_samples():
    C, names = _concepts(n=300, K=4, seed=12)
    acts = torch.randn(300, 3, generator=torch.Generator().manual_seed(4))
    r = explain_activations(acts, C, names, top_k=5, progress=False)
    assert r.top_indices.shape == (3, 5)
    for j in range(3):
        expected = torch.argsort(acts[:, j], descending=True)[:5]
        assert r.top_indices[j].tolist() == expected.tolist()
        assert torch.equal(r.top_values[j], acts[expected, j])


def test_neuron_subset_and_batches_give_the_same_answers():
    C, names = _concepts(n=500, K=6, seed=13)
    acts = torch.randn(500, 7, generator=torch.Generator().manual_seed(5)) + torch.tensor(
        np.concatenate([C, C[:, :1]], axis=1)[:, :7] * 0.8
    )
    full = explain_activations(acts, C, names, progress=False)
    sub = explain_activations(acts, C, names, neurons=[5, 1], progress=False, batch_size=1)
    assert sub.neurons.tolist() == [5, 1]
    assert [f["text"] for f in sub.formulas] == [full.formulas[5]["text"], full.formulas[1]["text"]]
    torch.testing.assert_close(sub.auc, full.auc[[5, 1]])


# ------------------------------------------------------------------------- errors


def test_clear_errors_for_bad_input():
    C, names = _concepts(n=100, K=3, seed=14)
    acts = torch.randn(100, 4)
    with pytest.raises(ValueError, match="100 samples but concepts has 99"):
        explain_activations(acts, C[:99], names, progress=False)
    with pytest.raises(ValueError, match="concept_names has 2 names"):
        explain_activations(acts, C, names[:2], progress=False)
    bad = acts.clone()
    bad[3, 1] = float("nan")
    bad[7, 3] = float("nan")
    with pytest.raises(ValueError, match=r"NaN for neurons \[1, 3\]"):
        explain_activations(bad, C, names, progress=False)
    with pytest.raises(ValueError, match="No concept .* fraction"):
        explain_activations(acts, np.zeros((100, 3), dtype=bool), names, progress=False)
    with pytest.raises(ValueError, match="No concept .* fraction"):
        few = np.zeros((100, 2), dtype=bool)
        few[:10] = True
        explain_activations(
            acts, few, ["x", "y"], min_fraction=0.3, max_fraction=0.4, progress=False
        )
    with pytest.raises(ValueError, match="mode"):
        explain_activations(acts, C, names, mode="up", progress=False)
    with pytest.raises(ValueError, match="max_length"):
        explain_activations(acts, C, names, max_length=0, progress=False)
    with pytest.raises(ValueError, match="min_fraction"):
        explain_activations(acts, C, names, min_fraction=0.6, max_fraction=0.5, progress=False)
    with pytest.raises(ValueError, match="out of range"):
        explain_activations(acts, C, names, neurons=[4], progress=False)
    with pytest.raises(ValueError, match="2-D"):
        explain_activations(torch.randn(100, 2, 3), C, names, progress=False)
    with pytest.raises(TypeError, match="boolean"):
        explain_activations(acts, np.full((100, 3), 0.5), names, progress=False)


# ------------------------------------------------------------------------- results


def test_unknown_setting_names_the_close_one():
    C, names = _concepts(n=100, K=3, seed=14)
    acts = torch.randn(100, 2)
    with pytest.raises(TypeError, match=r"InvertConfig has no setting 'max_lenght'.*'max_length'"):
        explain_activations(acts, C, names, max_lenght=2, progress=False)
    with pytest.raises(TypeError, match=r"no setting 'beam'"):
        InvertConfig().replace(beam=3)
    sess = _FakeSession(acts, torch.tensor(C), names)
    with pytest.raises(TypeError, match=r"no setting 'min_frac'.*'min_fraction'"):
        invert.explain(sess, "layer", min_frac=0.1)
    with pytest.raises(TypeError, match="config must be a InvertConfig"):
        invert.explain(sess, "layer", 3)


class _FakeSession:
    """The few Session methods the entry point uses, over fixed tensors."""

    def __init__(self, acts, concepts, names):
        self._acts, self._concepts, self.concept_names = acts, concepts, names
        self.device = torch.device("cpu")
        self.progress = False

    @property
    def data(self):
        return SimpleNamespace(name="fixed", concept_names=self.concept_names)

    def module(self, layer):
        if layer != "layer":
            raise ValueError(f"Unknown layer {layer!r}. Available layers: layer.")

    def dataset(self, split="test"):
        return range(self._acts.shape[0])

    def layer_shapes(self):
        return {"layer": (self._acts.shape[1],)}

    def activations(self, layer, split="test", pool="mean", neuron_axis=None):
        self.extracted = True
        return self._acts

    def layout(self, layer, neuron_axis=None):
        from repwidgets.layouts import Layout

        return Layout(neuron_axis=1, ndim=2)

    def concepts(self, split="test"):
        return self._concepts

    class_names = ["zero", "one"]

    def targets(self, split="test"):
        return (self._concepts[:, 0]).long()

    def thumbnails(self, indices, split="test", size=64, fmt="png"):
        return [b"\x89PNG" + str(int(i)).encode() for i in indices]


def test_session_entry_point_uses_the_session():
    C, names = _concepts(n=300, K=4, seed=16)
    acts = torch.tensor(C[:, 1:2] * 1.0) + 0.1 * torch.randn(300, 1)
    sess = _FakeSession(acts, torch.tensor(C), names)
    r = invert.explain(sess, "layer", max_length=2)
    assert r.formulas[0]["text"] == "c1" and r.layer == "layer" and r._session is sess
    with pytest.raises(ValueError, match="Available layers"):
        invert.explain(sess, "nope")
    with pytest.raises(ValueError, match="pool"):
        invert.explain(sess, "layer", pool=None)
