"""Last-layer retraining (repwidgets.engines.midrange.fit / retraining): the head equals
scikit-learn's, the strategies equal their named wrappers, the result saves and loads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from repwidgets.curation_store import Curation, VanishedMarksWarning
from repwidgets.engines import midrange as mr

pytestmark = pytest.mark.usefixtures("fresh_curations")


def test_vanished_marks_are_reported_not_dropped(tmp_path, synth):
    path = tmp_path / "cur.json"
    n = synth.n("train")
    cur = Curation.open(path, split="train")
    cur.mark_many([5, 6], "keep")
    cur.mark_many([n + 10, n + 20], "spurious")
    Curation._forget()
    with pytest.warns(VanishedMarksWarning, match="2 marked sample"):
        again = Curation.open(path, split="train", n_samples=n)
    assert again.vanished == [n + 10, n + 20]
    assert again.to_frame()["vanished"].sum() == 2
    again.mark(7, "keep")  # a later write keeps them in the file
    on_disk = {e["sample"] for e in json.loads(path.read_text())["marks"]}
    assert {n + 10, n + 20} <= on_disk
    with pytest.warns(VanishedMarksWarning, match="ignored in retraining"):
        head = mr.retrain_last_layer(synth, again, C=1.0)
    assert head.retrain_info["marks"] == {"keep": 3, "spurious": 0, "exclude": 0}


def test_oracle_retraining_equals_direct_sklearn_fit(synth):
    """Oracle: our head equals scikit-learn's standardised logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    for mode in ("subsample", "reweight"):
        head = mr.retrain_oracle(synth, C=0.3, seed=4, mode=mode)
        idx, w = mr.oracle_training_set(
            synth.groups("train"), synth.targets("train"), seed=4, mode=mode
        )
        X = synth.penultimate("train").double().numpy()[idx]
        y = synth.targets("train").numpy()[idx]
        pipe = make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=2000))
        pipe.fit(X, y, logisticregression__sample_weight=w)
        scaler, clf = pipe[0], pipe[1]
        expect_w = clf.coef_ / scaler.scale_[None, :]
        assert np.allclose(head.weight.detach().double().numpy(), expect_w, rtol=1e-4, atol=1e-5)
        Xt = synth.penultimate("test")
        ours = head(Xt).argmax(1).numpy()
        assert (ours == pipe.predict(Xt.double().numpy())).mean() > 0.998
        decision = pipe.decision_function(Xt.double().numpy())
        assert np.allclose(head(Xt).detach().double().numpy(), decision, atol=1e-3)
    # group-balanced subsample: the same number of every group
    idx, _ = mr.oracle_training_set(synth.groups("train"), synth.targets("train"), mode="subsample")
    counts = np.bincount(synth.groups("train").numpy()[idx])
    assert counts.min() == counts.max()


def test_fit_last_layer_binary_matches_sklearn():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 5))
    y = (X[:, 0] + 0.3 * rng.normal(size=200) > 0).astype(int)
    head = mr.fit_last_layer(torch.from_numpy(X), torch.from_numpy(y), C=0.5, standardize=False)
    clf = LogisticRegression(C=0.5, max_iter=2000).fit(X, y)
    logits = head(torch.from_numpy(X).float()).detach().double().numpy()
    assert np.allclose(logits[:, 1] - logits[:, 0], clf.decision_function(X), atol=1e-4)
    with pytest.raises(ValueError, match="lacks classes"):
        mr.fit_last_layer(torch.from_numpy(X), torch.zeros(200, dtype=torch.long), n_classes=2)


def test_base_model_untouched_and_model_with_head(synth):
    before = {k: v.clone() for k, v in synth.model.state_dict().items()}
    head = mr.retrain_last_layer(synth, {"keep": list(range(0, 300, 3))}, C=1.0)
    after = synth.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert head is not synth.last_linear()[1]
    model = mr.model_with_head(synth, head)
    x = torch.stack([synth.dataset("test")[i][0] for i in range(20)])
    assert torch.allclose(model(x), head(synth.penultimate("test")[:20]), atol=1e-5)


def test_bad_retraining_inputs_give_clear_errors(synth):
    with pytest.raises(TypeError, match="Cannot retrain"):
        mr.retrain_last_layer(synth, 3.5)
    with pytest.raises(ValueError, match="nothing to"):
        mr.retrain_last_layer(synth, {"exclude": [1, 2]})
    with pytest.raises(ValueError, match="strategy must be one of"):
        mr.retrain(synth, [1, 2], strategy="best")
    with pytest.raises(ValueError, match="strategy='random' needs"):
        mr.retrain(synth, None, strategy="random")
    with pytest.raises(TypeError, match="RetrainConfig has no setting 'seeds'.*'seed'"):
        mr.retrain(synth, [1, 2], seeds=3)
    with pytest.raises(ValueError, match=r"Samples \[\d+\] are not in split 'train'"):
        mr.retrain(synth, [1, synth.n("train") + 5], strategy="random")


@pytest.fixture(scope="module")
def marks(synth):
    Curation._forget()
    m = mr.select(synth, 0, band=(0.5, 0.85), within="all")
    return mr.auto_curate(m, rule="concepts").marks


def same_head(a: mr.RetrainResult, b: mr.RetrainResult) -> bool:
    return torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias) and a.C == b.C


@pytest.mark.parametrize("seed", [0, 3])
def test_each_strategy_equals_its_named_wrapper(synth, marks, seed):
    """retrain(strategy=...) and the three named functions give the same head, seed by seed."""
    curated = mr.retrain(synth, marks, "curated", seed=seed, Cs=(0.1, 1.0))
    assert same_head(curated, mr.retrain_last_layer(synth, marks, seed=seed, Cs=(0.1, 1.0)))
    assert curated.strategy == "curated" and curated.info["marks"]["spurious"] > 0
    idx = [i for i, v in marks.items() if v in ("keep", "spurious")]
    rnd = mr.retrain(synth, idx, "random", seed=seed, C=0.3)
    assert same_head(rnd, mr.retrain_random(synth, idx, seed=seed, C=0.3))
    # marks given to the random strategy: it copies their "keep" and "spurious" samples
    assert same_head(rnd, mr.retrain(synth, marks, "random", seed=seed, C=0.3))
    n_rnd = mr.retrain(synth, 200, "random", seed=seed, C=0.3)
    assert same_head(n_rnd, mr.retrain_random(synth, 200, seed=seed, C=0.3))
    sub = mr.retrain(synth, None, "oracle", oracle_mode="subsample", seed=seed, C=0.3)
    assert same_head(sub, mr.retrain_oracle(synth, mode="subsample", seed=seed, C=0.3))
    assert sub.info["method"] == "oracle (subsample)"
    config = mr.RetrainConfig(seed=seed, C=0.3, oracle_mode="subsample")
    assert same_head(sub, mr.retrain_oracle(synth, config))


def test_retraining_fits_the_strategy_training_set(synth, marks):
    """The head is the logistic regression on the training set its strategy builds, at
    the C the validation split chose (the retraining procedure, restated)."""
    r = mr.retrain(synth, marks, "curated", seed=2)
    idx, w = mr.curated_training_set(marks, synth.targets("train"), n_classes=3, seed=2)
    X, y = synth.penultimate("train")[idx], synth.targets("train")[idx]
    expect = mr.fit_last_layer(X, y, torch.as_tensor(w), n_classes=3, C=r.C)
    assert torch.allclose(r.weight, expect.weight) and torch.allclose(r.bias, expect.bias)
    scores = r.to_frame()
    assert list(scores.columns) == ["C", "accuracy", "worst_group_accuracy", "chosen"]
    assert scores["chosen"].sum() == 1 and float(scores.loc[scores["chosen"], "C"].iloc[0]) == r.C
    best = scores.sort_values(["worst_group_accuracy", "accuracy"], kind="stable").iloc[-1]
    assert (
        best["worst_group_accuracy"] == scores.loc[scores["chosen"], "worst_group_accuracy"].iloc[0]
    )
    assert r.params == mr.RetrainConfig(seed=2).to_dict()
    assert r.retrain_info is r.info and r.info["n_train"] == len(idx)


def test_retrain_result_is_the_head_and_saves(synth, marks, tmp_path):
    from bokeh.embed import json_item

    r = mr.retrain_last_layer(synth, marks, Cs=(0.1, 1.0))
    X = synth.penultimate("test")
    assert torch.equal(r(X), r.head(X)) and isinstance(r.head, nn.Linear)
    back = mr.RetrainResult.load(r.save(tmp_path / "head.safetensors"))
    assert back._session is None and back.strategy == "curated"
    assert torch.equal(back.weight, r.weight) and torch.equal(back.bias, r.bias)
    assert back.info == json.loads(json.dumps(r.info)) and back.params == r.params
    assert torch.allclose(back(X), r(X))
    assert back.to_frame().equals(r.to_frame())
    pd_eval = mr.evaluate(synth, {"saved": back, "live": r, "module": r.head})
    assert pd_eval.loc["saved", "accuracy"] == pd_eval.loc["live", "accuracy"]
    assert pd_eval.loc["module", "accuracy"] == pd_eval.loc["live", "accuracy"]
    model = mr.model_with_head(synth, back)
    x = torch.stack([synth.dataset("test")[i][0] for i in range(5)])
    assert torch.allclose(model(x), r(X[:5]), atol=1e-5)
    json_item(r.plot())
    fixed = mr.retrain_last_layer(synth, marks, C=1.0)
    assert fixed.to_frame()["C"].tolist() == [1.0] and "C=1.0" in repr(fixed)
    json_item(fixed.plot())
