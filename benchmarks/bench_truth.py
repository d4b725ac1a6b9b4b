"""Truth across models: each method's check on several architectures and artifacts.

For every model of :mod:`repwidgets.models.zoo_extra` (the demo SmallCNN with its
watermark, a narrow ResNet with a border, a plain GELU VGG with a patch, a GroupNorm
net with a watermark on another class), trained on its own ``rw.datasets.shapes()``
data and cached, the session-level API is used as a user would, with the registry's
default layers:

- DORA (``rw.dora.analyze`` + ``rw.dora.validate``): Spearman correlation of the EA
  distances with the neurons' functional distance on test images, the artifact
  detectors' within- vs between-distance AUC, their outlier-score AUC (LOF by default),
  the same score's AUC for each detector alone among the other neurons, and both outlier
  figures again on the functional distances of the test images (what the score makes of
  the neurons' behaviour on data);
- INVERT (``rw.invert.explain`` on ``pool``): share of the artifact detectors (AUC >= 0.95
  for the artifact alone) labelled with a formula that contains the artifact;
- concept discovery (``rw.concepts.discover``): the best concept AUC for the artifact;
- mid-range (``rw.midrange.select`` / ``auto_curate`` / ``compare``, engine defaults):
  worst-group test accuracy of ERM, random, curated and the group oracle;
- attribution (``rw.attribution.concept_attribution``): precision@100 of the top
  attributed training samples for the artifact at each probed layer (with the base rate
  and the probe's balanced accuracy).

    python benchmarks/bench_truth.py                 # every model and method (1,000 attributed samples)
    python benchmarks/bench_truth.py --quick         # fewer DORA steps, 500 attributed samples
    python benchmarks/bench_truth.py --full          # attribution over the whole training split
    python benchmarks/bench_truth.py --models resnet vgg --methods dora invert
    python benchmarks/bench_truth.py --methods dora --dora-layer vgg=features.conv4_2

DORA is measured with the run's settings and, on the same s-AMS, with each analysis
variant of ``--dora-variants`` (default :data:`DORA_VARIANTS`: the k-th-neighbour score
on centred responses, the k-th neighbour alone, centred LOF, equalised signals).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import numpy as np
import torch
from _common import emit

import repwidgets as rw
from repwidgets.engines import midrange as mr
from repwidgets.engines.ranks import auc_matrix
from repwidgets.models import zoo_extra

METHODS = ("dora", "invert", "concepts", "midrange", "attribution")


def _r(x: float, nd: int = 4) -> float | None:
    """Rounded float, None for NaN (JSON has no NaN)."""
    x = float(x)
    return None if not np.isfinite(x) else round(x, nd)


#: Analysis settings measured on the same s-AMS as the run's own (``--dora-variants``):
#: the k-th-neighbour outlier score on centred responses (the option for groups of
#: detectors), the k-th neighbour alone, centred responses with LOF, and equalised
#: centred signals with the k-th neighbour.
DORA_VARIANTS = {
    "knn_centred": {"outlier": "knn", "center": True},
    "knn": {"outlier": "knn", "center": False},
    "centred_lof": {"outlier": "lof", "center": True},
    "equalised_knn": {"equalise_signals": True, "center": True, "outlier": "knn"},
}


def _dora_check(sess, r, artifact: str) -> dict:
    """The validation figures of one DORA result."""
    v = rw.dora.validate(sess, r, concept=artifact)
    return {
        "spearman": _r(v["spearman"]),
        "n_live": v["n_live"],
        "n_dead": v["n_dead"],
        "n_detectors": v["n_detectors"],
        "within_between_auc": _r(v["within_between_auc"]),
        "outlier_auc": _r(v["outlier_auc"]),
        "lof_auc": _r(v["lof_auc"]),
        "detectors_in_top": v["detectors_in_top"],
        "outlier_auc_on_data": _r(v["outlier_auc_on_data"]),
        "single_detector_auc": _r(v["single_detector_auc"]),
        "single_detector_auc_on_data": _r(v["single_detector_auc_on_data"]),
    }


def dora_figures(sess, e, args) -> dict:
    """EA-vs-functional Spearman, detector grouping and outlier AUC on the DORA layer,
    for the run's settings and, on the same s-AMS, for each analysis variant."""
    layer = dict(args.dora_layer).get(e.name, e.layers["dora"])
    t0 = time.perf_counter()
    r = rw.dora.analyze(
        sess,
        layer,
        n_signals=args.dora_signals,
        steps=args.dora_steps,
        signal_size=args.signal_size,
        embedding="mds",
        progress=False,
        **json.loads(args.dora_kwargs),
    )
    out = {"layer": layer, **_dora_check(sess, r, e.artifact)}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    variants = {}
    for name, options in json.loads(args.dora_variants).items():
        variants[name] = _dora_check(sess, rw.dora.reanalyze(r, **options), e.artifact)
    if variants:
        out["variants"] = variants
    return out


def _mentions(formula: dict, concept: str) -> bool:
    """Whether an INVERT formula has a clause on ``concept``."""
    return any(c["concept"] == concept for c in formula["clauses"])


def invert_figures(sess, e, args) -> dict:
    """Share of the artifact detectors of ``pool`` whose formula contains the artifact."""
    layer = e.layers["invert"]
    r = rw.invert.explain(sess, layer, max_length=3, beam_size=5, min_fraction=0.01, progress=False)
    acts = sess.activations(layer, split=r.split or "test").detach().cpu()
    a = list(sess.concept_names).index(e.artifact)
    single = auc_matrix(acts, sess.concepts(r.split or "test"))[:, a]
    detectors = torch.nonzero(single >= 0.95).flatten().tolist()
    labelled = [j for j in detectors if _mentions(r.formulas[j], e.artifact)]
    return {
        "layer": layer,
        "n_neurons": int(acts.shape[1]),
        "n_detectors": len(detectors),
        "n_labelled": len(labelled),
        "labelled_fraction": _r(len(labelled) / len(detectors)) if detectors else None,
        "formulas_with_artifact": int(sum(_mentions(f, e.artifact) for f in r.formulas)),
    }


def concept_figures(sess, e, args) -> dict:
    """Best concept AUC for the artifact after SVD + clustering on the concepts layer."""
    layer = e.layers["concepts"]
    r = rw.concepts.discover(
        sess, layer, n_components=16, top_t=100, embedding="pca", progress=False
    )
    a = list(r.concept_names).index(e.artifact)
    best = float(r.concept_auc[:, a].max()) if r.n_concepts else float("nan")
    return {"layer": layer, "n_concepts": int(r.n_concepts), "best_artifact_auc": _r(best)}


def midrange_figures(sess, e, args) -> dict:
    """Worst-group test accuracy: ERM, random, curated band, group oracle (defaults)."""
    k = int(e.data_config["spurious_class"])
    m = mr.select(sess, k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cur = mr.auto_curate(m)
    table = mr.compare(sess, cur, progress=False)
    wga = table["worst_group_accuracy_mean"]
    out = {"class": sess.class_names[k], "band_size": len(m), "marks": cur.counts()}
    out["worst_group_accuracy"] = {method: _r(wga[method]) for method in wga.index}
    if "oracle" in wga.index:
        gap = float(wga["oracle"] - wga["ERM"])
        out["gap_closed"] = _r((wga["curated"] - wga["ERM"]) / gap) if gap > 0 else None
    return out


def attribution_figures(sess, e, args) -> dict:
    """Precision@100 of the artifact's attributed training samples at each probe layer."""
    layers = list(e.layers["probes"])
    per_layer = {}
    models = zoo_extra.ensemble(e.name, range(args.n_models), bundle=sess.data)
    for layer in layers:
        t0 = time.perf_counter()
        r = rw.attribution.concept_attribution(
            sess,
            e.artifact,
            layer=layer,
            layers=layers,
            models=models,
            proj_dim=512,
            max_train=args.max_train,
            progress=False,
        )
        li = r.probe_layers.index(layer)
        lab = torch.as_tensor(r.concept_labels).numpy().astype(bool)
        with_q = torch.as_tensor(r.scores).numpy() * torch.as_tensor(r.out_to_loss).numpy()
        per_layer[layer] = {
            "precision_at_100": _r(r.precision_at(100)),
            "precision_at_100_with_probe_q": _r(
                lab[np.argsort(-with_q, kind="stable")[:100]].mean()
            ),
            "probe_q_median": float(f"{float(torch.as_tensor(r.out_to_loss).median()):.2e}"),
            "base_rate": _r(torch.as_tensor(r.concept_labels).float().mean()),
            "probe_balanced_accuracy": _r(np.mean(r.probe_balanced_accuracy[li])),
            "seconds": round(time.perf_counter() - t0, 1),
        }
    return {"n_models": args.n_models, "max_train": args.max_train, "layers": per_layer}


RUNNERS = {
    "dora": dora_figures,
    "invert": invert_figures,
    "concepts": concept_figures,
    "midrange": midrange_figures,
    "attribution": attribution_figures,
}


def run_model(name: str, methods, args) -> dict:
    """Every requested method's figures on one registered model."""
    e = zoo_extra.entry(name)
    t0 = time.perf_counter()
    sess = zoo_extra.session(name)
    _, hist = zoo_extra.load_or_train(name, 0, sess.data)
    ev = rw.models.evaluate(sess.model, sess.data, split="test")
    out = {
        "description": e.description,
        "artifact": e.artifact,
        "spurious_class": sess.class_names[int(e.data_config["spurious_class"])],
        "test_accuracy": _r(ev["accuracy"]),
        "test_worst_group_accuracy": _r(ev.get("worst_group_accuracy", float("nan"))),
        "train_seconds": round(hist.seconds, 1),
    }
    for method in methods:
        out[method] = RUNNERS[method](sess, e, args)
        print(name, method, json.dumps(out[method]), file=sys.stderr, flush=True)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer DORA steps, 500 train samples")
    p.add_argument("--full", action="store_true", help="attribute the whole training split")
    p.add_argument("--models", nargs="+", default=zoo_extra.names(), choices=zoo_extra.names())
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--dora-steps", type=int, default=None)
    p.add_argument("--dora-signals", type=int, default=1)
    p.add_argument("--signal-size", type=int, default=32)
    p.add_argument("--dora-kwargs", default="{}", help="JSON of extra rw.dora.analyze options")
    p.add_argument(
        "--dora-variants",
        default=json.dumps(DORA_VARIANTS),
        help="JSON {name: analysis options} measured on the same s-AMS ('{}': none)",
    )
    p.add_argument(
        "--dora-layer",
        action="append",
        default=[],
        type=lambda text: tuple(text.split("=", 1)),
        metavar="MODEL=LAYER",
        help="DORA on another layer than the registry's (e.g. vgg=features.conv4_2)",
    )
    p.add_argument("--n-models", type=int, default=1, help="TRAK ensemble size")
    p.add_argument("--max-train", type=int, default=1000, help="attributed training samples")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.dora_steps is None:
        args.dora_steps = 32 if args.quick else 64
    if args.quick:
        args.max_train = min(args.max_train, 500)
    if args.full:
        args.max_train = None
    figures = {name: run_model(name, args.methods, args) for name in args.models}
    settings = {
        "dora": {
            "n_signals": args.dora_signals,
            "steps": args.dora_steps,
            "signal_size": args.signal_size,
            **json.loads(args.dora_kwargs),
            "layers": dict(args.dora_layer),
            "variants": json.loads(args.dora_variants),
        },
        "attribution": {"n_models": args.n_models, "proj_dim": 512, "max_train": args.max_train},
    }
    emit("truth", {"settings": settings, "models": figures})


if __name__ == "__main__":
    main()
