"""The explorer (rw.explore): panels hold what the engines give, and every action works.

Runs on the attribution tests' tiny trained session (shapes at 16 px, 8 neurons in
``features.conv4``), with DORA, INVERT and concept discovery at small sizes.
"""

from __future__ import annotations

import io
import json
import threading

import numpy as np
import pandas as pd
import pytest
import torch

from repwidgets.engines import neurons as N
from repwidgets.views.explorer import Explorer, explore
from repwidgets.views.explorer.data import _MEMORY, layer_results
from repwidgets.views.explorer.jobs import MODEL_LOCK, Cancelled, Jobs
from repwidgets.views.explorer.neurons import formula_matches

LAYER = "features.conv4"
SETTINGS = {
    "dora": {"n_signals": 1, "steps": 8, "signal_size": 16, "embedding": "mds"},
    "invert": {"max_length": 2, "beam_size": 3},
    "concepts": {"n_components": 4, "top_t": 20, "embedding": None},
}
ATTRIBUTION = {"proj_dim": 16, "max_train": 60, "n_targets": 4, "batch_size": 32}
RETRAIN = {"Cs": (0.1, 1.0)}
#: the classes the browser tests find the view's parts by.
CSS_CLASSES = [
    "rw-explorer",
    "rw-x-map",
    "rw-x-heatmap",
    "rw-x-search",
    "rw-x-neuron",
    "rw-x-formula",
    "rw-x-sams",
    "rw-x-top",
    "rw-x-midrange",
    "rw-x-band",
    "rw-x-enriched",
    "rw-x-loadings",
    "rw-x-attribute",
    "rw-x-progress",
    "rw-x-cancel",
    "rw-x-taught",
    "rw-x-sample",
    "rw-x-back",
    "rw-x-trail",
    "rw-x-flag-keep",
    "rw-x-flag-spurious",
    "rw-x-flag-exclude",
    "rw-x-export",
    "rw-x-retrain",
    "rw-x-retrain-table",
    "rw-x-retrain-plot",
    "rw-x-status",
]  # noqa: SIM905


@pytest.fixture(scope="module")
def results(attribution_session):
    torch.set_num_threads(1)
    return layer_results(attribution_session, LAYER, settings=SETTINGS)


@pytest.fixture
def x(attribution_session, results, tmp_path, fresh_curations):
    return explore(
        attribution_session,
        LAYER,
        **results,
        curation=tmp_path / "marks.json",
        attribution_options=ATTRIBUTION,
        retrain_options=RETRAIN,
    )


def test_selecting_a_neuron_fills_the_panels_with_what_the_engines_give(x, results):
    sess = x.sess
    unit = x.data.ids[-1]
    x.select_neuron(unit)
    assert x.neuron == unit and x.selected_neurons == [unit]
    inv = results["invert"]
    j = inv.neurons.tolist().index(unit)
    assert x.neuron_panel.formula.value == inv.formulas[j]["text"]
    assert x.neuron_panel.auc.value == f"AUC {float(inv.auc[j]):.3f}"
    assert x.neuron_panel.formula.tooltip  # the one-line explanation on hover
    clauses = x.data.clauses(unit)
    assert [c["concept"] for c in clauses] == x.data.formula_concepts(unit)
    assert [c["negated"] for c in clauses] == [c["negated"] for c in inv.formulas[j]["clauses"]]

    acts = sess.activations(LAYER, split="train").float()
    assert x.galleries["top"].ids == N.top_activating(acts, unit, k=16).tolist()
    band = N.quantile_band(acts[:, unit], x.data.band)
    expected = band[torch.argsort(acts[band, unit], descending=True)].tolist()
    assert x.galleries["midrange"].ids == expected[: len(x.galleries["midrange"].ids)]
    nd = x.data.neuron(unit)
    names = list(sess.concept_names)
    pd.testing.assert_frame_equal(
        nd.enriched, N.enrichment(sess.concepts("train").bool(), band, names)
    )
    pd.testing.assert_frame_equal(
        nd.loadings, N.concept_loadings(results["concepts"].vectors, unit)
    )
    assert nd.sams is not None and x.neuron_panel.sams.value == nd.sams

    # moving the band reselects the mid-range samples
    x.neuron_panel.band.value = (0.0, 0.2)
    low = N.quantile_band(acts[:, unit], (0.0, 0.2))
    assert set(x.galleries["midrange"].ids) <= set(low.tolist())


def test_search_selects_the_neurons_whose_formula_matches(x):
    inv = x.data.invert
    names = list(x.sess.concept_names)
    clauses = {int(u): f["clauses"] for u, f in zip(inv.neurons.tolist(), inv.formulas)}
    used = [c["concept"] for u in x.data.ids for c in clauses[u] if not c["negated"]]
    # a concept whose name is in no other concept's name: the clauses give the answer
    concept = next(c for c in used if sum(c.lower() in n.lower() for n in names) == 1)
    expected = [
        u
        for u in x.data.ids
        if any(c["concept"] == concept and not c["negated"] for c in clauses[u])
    ]
    assert x.search(concept.upper()) == expected
    assert x.selected_neurons == expected
    # the map follows the heatmap: its points are the same neurons
    assert [x.data.ids[p] for p in x.map.browser.selected] == expected
    assert formula_matches(["star AND red", "watermark"], " star  and ") == [0]
    assert x.search("no such concept") == []


def test_search_skips_negated_literals():
    formulas = ["star AND red", "NOT watermark", "star AND NOT (watermark OR red)", "watermark"]
    assert formula_matches(formulas, "watermark") == [3]
    assert formula_matches(formulas, "NOT  Watermark") == [1]
    assert formula_matches(formulas, "star AND") == [0, 2]
    assert formula_matches(formulas, "red") == [0]
    assert formula_matches(["cannot watermark"], "watermark") == [0]  # "not" inside a word


def test_map_colours_by_the_outlier_score_and_auc_on_a_ramp(x, results):
    dora, inv = results["dora"], results["invert"]
    cols = {c.name: c for c in x.map.browser._colorings}
    names = x.map.browser.coloring_names
    score_name = f"{dora.outlier_score_label} (grey: dead)"
    assert score_name in names and "INVERT AUC (grey: no label)" in names
    np.testing.assert_allclose(x.data.outlier_score, dora.ranking_scores())
    assert x.data.outlier_score_name == dora.outlier_score_name
    score = cols[score_name].codes  # 0 = missing (dead), 1..255 along the ramp
    finite = np.isfinite(dora.ranking_scores())
    assert (score[~finite] == 0).all() and (score[finite] > 0).all()
    order = np.argsort(dora.ranking_scores()[finite])
    assert (np.diff(score[finite][order].astype(int)) >= 0).all()
    assert score[finite].max() == 255 and score[finite].min() == 1
    # the heatmap shows the ids: its labels do not repeat them
    assert not any(label.startswith("#") for label in x.map.heatmap.labels)
    live = [p for p in range(len(x.data.ids)) if not x.data.dead[p]]
    assert all(dora.outlier_score_name in x.map.heatmap.labels[p] for p in live)
    auc = cols["INVERT AUC (grey: no label)"].codes
    # every neuron has a label: no grey; a higher AUC never gets a lower colour
    pos = [x.data.position[int(u)] for u in inv.neurons.tolist()]
    assert (auc[pos] > 0).all()
    order = np.argsort(inv.auc.numpy(), kind="stable")
    assert (np.diff(auc[pos][order].astype(int)) >= 0).all()


def test_flag_writes_the_marks_to_the_curation_file(x, tmp_path):
    x.select_samples([3, 5])
    x.flag("spurious")
    x.flag("keep", indices=[7])
    on_disk = json.loads((tmp_path / "marks.json").read_text())
    assert on_disk["split"] == "train"
    assert {m["sample"]: m["mark"] for m in on_disk["marks"]} == {
        3: "spurious",
        5: "spurious",
        7: "keep",
    }
    assert x.curation.selected["spurious"] == [3, 5]
    with pytest.raises(ValueError, match="mark must be one of"):
        x.flag("odd")


def test_export_csv_round_trips(x, tmp_path):
    x.select_neuron(x.data.ids[0])
    x.select_samples([4, 1, 9])
    x.flag("exclude", indices=[1])
    path = x.to_csv(tmp_path / "sel.csv")
    back = pd.read_csv(path, keep_default_na=False, na_values=[""])
    frame = x.selection
    assert back["sample"].tolist() == [4, 1, 9] == frame["sample"].tolist()
    assert back["mark"].fillna("").tolist() == ["", "exclude", ""]
    np.testing.assert_allclose(back["activation"], frame["activation"], rtol=1e-6)
    assert back["class"].tolist() == frame["class"].tolist()


def test_back_restores_the_previous_selection(x):
    a, b = x.data.ids[:2]
    x.select_neuron(a)
    x.select_neuron(b)
    x.back()
    assert x.selected_neurons == [a] and x.neuron == a
    x.select_samples([2])
    assert x.sample_panel.index == 2
    x.select_samples([5, 6])
    x.back()
    assert x.selected_samples == [2]
    x.back()
    assert x.selected_samples == [] and x.sample_panel.index is None
    assert x.trail[0] == f"neuron #{a}"


def test_back_is_enabled_only_with_a_step_to_go_back_to_and_the_trail_is_short(x):
    panel = x.sample_panel
    assert panel.back_button.disabled and panel.hint.layout.display != "none"
    a = x.data.ids[0]
    x.select_neuron(a)
    assert x.trail == [f"neuron #{a}"] and panel.back_button.disabled
    x.back()  # nothing to go back to: nothing changes
    assert x.neuron == a
    samples = [3, 4, 5, 6, 7, 8]
    for i in samples:
        x.select_samples([i])
    assert panel.hint.layout.display == "none" and not panel.back_button.disabled
    assert len(x.trail) == 1 + len(samples)
    assert panel.trail.value.startswith("… › ")
    assert panel.trail.value.split(" › ")[1:] == [f"sample #{i}" for i in samples[-4:]]
    for _ in samples:
        x.back()
    assert x.sample_panel.index is None and panel.back_button.disabled
    assert panel.hint.layout.display != "none"


def test_opening_a_sample_shows_its_facts(x):
    sess = x.sess
    facts = x.show_sample(11)
    target = int(sess.targets("train")[11])
    assert facts["class"] == sess.class_names[target]
    assert x.sample_panel.klass.value == f"class: {facts['class']}"
    strongest = N.strongest_neurons(sess.activations(LAYER, split="train").float(), 11, k=8)
    assert facts["strongest"] == strongest["neuron"].tolist()


def test_attribute_fills_the_taught_panel(x):
    unit = x.data.ids[0]
    x.select_neuron(unit)
    result = x.attribute(wait=True)
    assert x.attributions[unit] is result
    expected = result.to_frame()["sample"].head(len(x.galleries["taught"].ids)).tolist()
    assert x.galleries["taught"].ids == expected
    best = int(expected[0])
    facts = x.show_sample(best)
    assert facts["attribution score"] == pytest.approx(float(result.to_frame()["score"].iloc[0]))
    assert x.attribute(wait=True) is result  # cached per neuron
    # the progress showed beside the button that started it, and is hidden once done
    assert x.neuron_panel.job_slot.children == (x.jobs.box,) and not x.actions.job_slot.children
    assert x.jobs.progress.layout.display == "none" and x.jobs.progress.value == 0
    assert "done" in x.jobs.status.value
    assert x.galleries["taught"].sort_by == "TRAK"


def test_cancel_stops_a_running_job(x):
    x.select_neuron(x.data.ids[1])
    assert x.jobs.current.wait(60)  # the activations read at open
    with MODEL_LOCK:  # the job waits for the model, so the cancel surely comes first
        job = x.attribute(wait=False)
        x.jobs.cancel()
    assert job.wait(60)
    assert job.state == "cancelled" and x.data.ids[1] not in x.attributions
    assert "cancelled" in x.jobs.status.value

    jobs, started = Jobs(), threading.Event()

    def work(report, cancel):
        started.set()
        for step in range(10_000):
            if cancel.wait(0.01):
                raise Cancelled("test")
            report(step, 10_000, "looping")
        return "finished"

    job = jobs.start("loop", work)
    assert started.wait(10)
    jobs.cancel()
    assert job.wait(10) and job.state == "cancelled" and job.result is None


def test_retrain_gives_erm_curated_and_oracle(x):
    from repwidgets.engines.midrange import evaluate

    sess = x.sess
    y = sess.targets("train")
    x.flag("keep", indices=torch.nonzero(y == 0).flatten()[:10].tolist())
    comparison = x.retrain(wait=True)
    table = comparison.to_frame()
    assert {"ERM", "curated", "oracle"} <= set(table.index)
    erm = evaluate(sess, None, split="test").loc["before", "accuracy"]
    assert table.loc["ERM", "accuracy_mean"] == pytest.approx(erm)
    assert x.comparison is comparison and x.actions.plot.value[:4] == b"\x89PNG"
    # the plot reads in both themes: a transparent background, no white in its corners
    from PIL import Image

    img = Image.open(io.BytesIO(x.actions.plot.value))
    assert img.mode == "RGBA" and img.getpixel((img.width - 1, img.height - 1))[3] == 0
    assert x.actions.job_slot.children == (x.jobs.box,)
    assert x.jobs.progress.layout.display == "none"


def test_results_are_remembered_and_cached_on_disk(attribution_session, results, tmp_path):
    sess = attribution_session
    again = layer_results(sess, LAYER)
    assert all(again[k] is results[k] for k in results)
    layer_results(sess, LAYER, **results, cache=tmp_path)
    key = (id(sess), LAYER)
    kept = _MEMORY.pop(key)
    try:
        loaded = layer_results(sess, LAYER, cache=tmp_path)
        assert loaded["dora"] is not results["dora"]
        torch.testing.assert_close(loaded["dora"].distances, results["dora"].distances)
        torch.testing.assert_close(loaded["concepts"].vectors, results["concepts"].vectors)
        assert loaded["invert"].formulas == results["invert"].formulas
        _MEMORY.pop(key)
        (tmp_path / "dora-features.conv4.safetensors").write_bytes(b"")  # a broken file
        with pytest.raises(ValueError, match="not a repwidgets result"):
            layer_results(sess, LAYER, cache=tmp_path)
    finally:
        _MEMORY[key] = kept


def test_results_of_another_layer_and_bad_input_are_refused(attribution_session, results, tmp_path):
    sess = attribution_session
    with pytest.raises(ValueError, match="not 'features.conv3'"):
        layer_results(sess, "features.conv3", dora=results["dora"], invert=False, concepts=False)
    with pytest.raises(ValueError, match="features.conv4"):
        explore(sess, "features.conv44", curation=tmp_path / "c.json")
    with pytest.raises(ValueError, match="split"):
        explore(sess, LAYER, split="nope")
    x = explore(sess, LAYER, **results, curation=tmp_path / "c.json")
    with pytest.raises(ValueError, match="not in this explorer"):
        x.select_neuron(999)
    with pytest.raises(ValueError, match="No samples to flag"):
        x.flag("keep")


def test_without_dora_the_map_comes_from_invert(attribution_session, results, tmp_path):
    x = explore(
        attribution_session,
        LAYER,
        dora=False,
        invert=results["invert"],
        concepts=False,
        curation=tmp_path / "c.json",
    )
    assert x.data.dora is None and x.data.xy.shape == (len(x.data.ids), 2)
    assert not any("LOF" in name for name in x.map.browser.coloring_names)
    assert "INVERT AUC (grey: no label)" in x.map.browser.coloring_names
    x.select_neuron(x.data.ids[0])
    assert x.data.neuron(x.data.ids[0]).loadings is None


def test_the_view_carries_the_stable_css_classes(x):
    seen: set[str] = set()

    def walk(w):
        seen.update(getattr(w, "_dom_classes", ()))
        for child in getattr(w, "children", ()):
            walk(child)

    walk(x)
    for css in CSS_CLASSES:
        assert css in seen, css


def test_the_magic_returns_an_explorer(attribution_session, results, tmp_path, monkeypatch):
    from repwidgets.magics import repwidgets_magic

    monkeypatch.chdir(tmp_path)
    x = repwidgets_magic(f"explore {LAYER} --session s", {"s": attribution_session})
    assert isinstance(x, Explorer) and x.layer == LAYER
    assert x.data.dora is results["dora"]  # remembered for this session and layer
    with pytest.raises(NameError, match="No session called 'sess'"):
        repwidgets_magic(f"explore {LAYER}", {})


def test_activations_are_saved_in_the_cache_folder(
    attribution_session, results, tmp_path, monkeypatch
):
    from repwidgets.views.explorer.data import ExplorerData

    sess = attribution_session
    x = explore(sess, LAYER, **results, cache=tmp_path, curation=tmp_path / "c.json")
    assert x.jobs.current.wait(60) and x.jobs.current.state == "done"
    expected = sess.activations(LAYER, split="train").float()
    assert (tmp_path / "activations-train-features.conv4.safetensors").exists()

    def no_model(*_args, **_kwargs):
        raise AssertionError("read from the cache folder, not from the model")

    monkeypatch.setattr(sess, "activations", no_model)
    data = ExplorerData(sess, LAYER, **results, cache=tmp_path)
    torch.testing.assert_close(data.activations(), expected)


def test_switching_neurons_gives_the_same_galleries_new_cards(x):
    first, second = x.data.ids[0], x.data.ids[-1]
    x.select_neuron(first)
    top, midrange = x.galleries["top"], x.galleries["midrange"]
    x.select_samples([top.ids[0]])
    x.select_neuron(second)
    assert x.galleries["top"] is top and x.galleries["midrange"] is midrange
    acts = x.sess.activations(LAYER, split="train").float()
    assert top.ids == N.top_activating(acts, second, k=16).tolist()
    assert str(second) in top.title and top.selected == []
