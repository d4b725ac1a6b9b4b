"""Mid-range curation with its defaults: how enriched the automatic band is, and what
curating it does to worst-group accuracy, over several artifacts and spurious classes.

For every setting (the embedded default: shapes with circles mostly watermarked; the
same small CNN trained on shapes with a border artifact on squares, a patch artifact on
triangles and a watermark on stars; digits with a border artifact) the band of the
spurious class is chosen by ``rw.midrange.select`` with its defaults (the automatic
band). Its **enrichment** is the share of confounders in the band (samples of the class
without the artifact, and samples of other classes with it; the group labels are used
here only to measure) divided by their share in the population the band was drawn from.
The band is then curated automatically (``auto_curate(rule="concepts")``) and the last
layer retrained: ERM (the model as trained), random samples, the curated band, and the
group-label oracle (DFR-style group balancing), each scored on the group-balanced test
split over several seeds. Also timed: a band query on cached logits, one curated
retraining (with the search over C on the validation split) and the feature extraction.
The models are trained once and cached (a few minutes each on two CPU cores).

    python benchmarks/bench_midrange.py            # every setting, 3 seeds
    python benchmarks/bench_midrange.py --quick    # the default shapes only, 2 seeds
    python benchmarks/bench_midrange.py --full     # every setting, 10 seeds
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from _common import best_of, emit

import repwidgets as rw
from repwidgets.engines import midrange as mr

#: Other shapes settings: (artifact, spurious class), smaller splits to keep training short.
SHAPES_SETTINGS = [("border", 1), ("patch", 2), ("watermark", 3)]
SHAPES_SIZES = {"n_train": 4000, "n_val": 1000, "n_test": 1000}


def confounders(sess, class_index: int, split: str = "train") -> torch.Tensor:
    """Samples of the class without the artifact and of other classes with it (group ids
    are class * 2 + artifact), BoolTensor [n]."""
    y, g = sess.targets(split), sess.groups(split)
    has_artifact = g % 2 == 1
    return ((y == class_index) & ~has_artifact) | ((y != class_index) & has_artifact)


def band_enrichment(sess, m, class_index: int) -> dict:
    """Confounder share in the band against their share in the band's population."""
    conf = confounders(sess, class_index, m.split)
    y = sess.targets(m.split)
    population = y == class_index if m.within == "class" else torch.ones_like(conf)
    base = float(conf[population].double().mean())
    share = float(conf[m.indices].double().mean()) if len(m) else 0.0
    return {
        "band_quantiles": [round(float(b), 4) for b in m.band],
        "band_limits": [round(float(v), 3) for v in m.limits],
        "within": m.within,
        "score": m.score,
        "band_size": len(m),
        "confounders_in_band": int(conf[m.indices].sum()),
        "confounders_total": int(conf[population].sum()),
        "confounder_share": round(share, 4),
        "base_rate": round(base, 4),
        "enrichment": round(share / base, 2) if base > 0 else None,
        "why": m.band_choice.get("reason", ""),
    }


def run(sess, name: str, seeds: list[int], class_index: int) -> dict:
    """Extraction, default band, curation, comparison table and timings for one session."""
    t0 = time.perf_counter()
    for split in ("train", "val", "test"):
        sess.penultimate(split)
        sess.logits(split)
    extraction = time.perf_counter() - t0

    query = best_of(lambda: mr.select(sess, class_index), repeats=5)
    m = mr.select(sess, class_index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cur = mr.auto_curate(m, rule="concepts")

    t1 = time.perf_counter()
    head = mr.retrain_last_layer(sess, cur, seed=0, progress=False)
    retrain = time.perf_counter() - t1

    t2 = time.perf_counter()
    table = mr.compare(sess, cur, seeds=seeds, progress=False).to_frame()
    compare_s = time.perf_counter() - t2
    methods = {
        method: {
            "accuracy_mean": round(float(row["accuracy_mean"]), 4),
            "accuracy_std": round(float(row["accuracy_std"]), 4),
            "worst_group_accuracy_mean": round(float(row["worst_group_accuracy_mean"]), 4),
            "worst_group_accuracy_std": round(float(row["worst_group_accuracy_std"]), 4),
        }
        for method, row in table.iterrows()
    }
    wga = table["worst_group_accuracy_mean"]
    return {
        "data": name,
        "class": sess.class_names[class_index],
        "n_train": sess.n("train"),
        "n_test": sess.n("test"),
        "default_band": band_enrichment(sess, m, class_index),
        "marks": cur.counts(),
        "typical_pattern": cur.context.get("typical_pattern", {}),
        "seeds": seeds,
        "worst_group_accuracy": {
            "ERM": round(float(wga["ERM"]), 4),
            "curated": round(float(wga["curated"]), 4),
            "oracle": round(float(wga["oracle"]), 4),
            "random": round(float(wga["random"]), 4),
        },
        "methods": methods,
        "chosen_C_curated_seed0": head.C,
        "seconds": {
            "feature_extraction_all_splits": round(extraction, 2),
            "band_query": round(query, 5),
            "curated_retraining_with_C_search": round(retrain, 3),
            "compare_table": round(compare_s, 2),
        },
    }


def trained_session(data, device: str) -> tuple:
    """A session on ``data`` with the default model trained on it (cached), and the time."""
    t = time.perf_counter()
    model = rw.models.demo_model(data, seed=0, progress=False)
    return rw.Session(model, data, device=device, progress=False), time.perf_counter() - t


def settings(quick: bool) -> list[tuple[str, object, int]]:
    """(name, data, spurious class) for every setting measured."""
    out: list[tuple[str, object, int]] = [("shapes watermark/circle (default)", None, 0)]
    if quick:
        return out
    for artifact, k in SHAPES_SETTINGS:
        data = rw.datasets.shapes(artifact=artifact, spurious_class=k, seed=0, **SHAPES_SIZES)
        out.append((f"shapes {artifact}/{data.class_names[k]}", data, k))
    out.append(("digits border/0", rw.datasets.digits(artifact="border", spurious_class=0), 0))
    return out


def summary_line(result: dict) -> str:
    """One line per setting: enrichment and worst-group accuracies."""
    band, wga = result["default_band"], result["worst_group_accuracy"]
    return (
        f"{result['data']:36s} enrichment {band['enrichment']:5.2f}x "
        f"({band['confounders_in_band']}/{band['band_size']} in band, base "
        f"{band['base_rate']:.3f}); worst group ERM {wga['ERM']:.2f} curated "
        f"{wga['curated']:.2f} oracle {wga['oracle']:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="default shapes only, 2 seeds")
    parser.add_argument("--full", action="store_true", help="10 seeds")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        torch.set_num_threads(min(2, torch.get_num_threads()))
    n_seeds = 2 if args.quick else 10 if args.full else 3
    seeds = list(range(n_seeds))
    start = time.perf_counter()
    results = []
    for name, data, k in settings(args.quick):
        if data is None:
            sess, training = rw.demo_session(seed=0, device=args.device, progress=False), 0.0
        else:
            sess, training = trained_session(data, args.device)
        out = run(sess, name, seeds, k)
        out["seconds"]["model_training_or_cache_load"] = round(training, 2)
        results.append(out)
    emit(
        "midrange_curation",
        {
            "size": "quick" if args.quick else "full" if args.full else "default",
            "device": str(sess.device),
            "summary": [summary_line(r) for r in results],
            "results": results,
            "total_seconds": round(time.perf_counter() - start, 1),
        },
    )


if __name__ == "__main__":
    main()
