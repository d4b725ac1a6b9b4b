"""Mid-range curation: worst-group accuracy of last-layer retraining, and the cost of a query.

On the embedded default (shapes, circles mostly watermarked in training) and on digits
with a planted border artifact, the band of the spurious class's logit is curated
automatically (``auto_curate(rule="concepts")``) and the last layer is retrained four
ways: ERM (the model as trained), random samples, the curated band, and the group-label
oracle (DFR-style group balancing), each scored on the group-balanced test split over
several seeds (mean and standard deviation). Also timed: a band query on cached logits,
one curated retraining (with the search over C on the validation split) and the
feature extraction they need.

    python benchmarks/bench_midrange.py            # shapes + digits, 5 seeds
    python benchmarks/bench_midrange.py --quick    # shapes only, 2 seeds
    python benchmarks/bench_midrange.py --full     # shapes + digits, 10 seeds
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from _common import best_of, emit

import repwidgets as rw
from repwidgets.engines import midrange as mr


def run(sess, name: str, seeds: list[int], class_index: int) -> dict:
    """Extraction, band query, curation, comparison table and retraining time for one session."""
    t0 = time.perf_counter()
    for split in ("train", "val", "test"):
        sess.penultimate(split)
        sess.logits(split)
    extraction = time.perf_counter() - t0

    query = best_of(lambda: mr.select(sess, class_index, **mr.DEMO_BAND), repeats=5)
    m = mr.select(sess, class_index, **mr.DEMO_BAND)
    within = mr.select(sess, class_index, band=(0.0, 0.5), within="class")
    y, g = sess.targets("train"), sess.groups("train")
    base = float((g[y == class_index] % 2 == 0).double().mean())
    band_minority = float((within.groups % 2 == 0).double().mean())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cur = mr.auto_curate(m, rule="concepts")

    t1 = time.perf_counter()
    head = mr.retrain_last_layer(sess, cur, seed=0, progress=False)
    retrain = time.perf_counter() - t1

    t2 = time.perf_counter()
    table = mr.compare(sess, cur, seeds=seeds, progress=False)
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
        "band": mr.DEMO_BAND,
        "band_size": len(m),
        "marks": cur.counts(),
        "typical_pattern": cur.context.get("typical_pattern", {}),
        "within_class_band_minority_fraction": round(band_minority, 4),
        "class_minority_base_rate": round(base, 4),
        "seeds": seeds,
        "methods": methods,
        "curated_minus_erm_worst_group": round(float(wga["curated"] - wga["ERM"]), 4),
        "oracle_minus_curated_worst_group": round(float(wga["oracle"] - wga["curated"]), 4),
        "chosen_C_curated_seed0": head.retrain_info["C"],
        "seconds": {
            "feature_extraction_all_splits": round(extraction, 2),
            "band_query": round(query, 5),
            "curated_retraining_with_C_search": round(retrain, 3),
            "compare_table": round(compare_s, 2),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="shapes only, 2 seeds")
    parser.add_argument("--full", action="store_true", help="10 seeds")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        torch.set_num_threads(min(2, torch.get_num_threads()))
    n_seeds = 2 if args.quick else 10 if args.full else 5
    seeds = list(range(n_seeds))
    start = time.perf_counter()
    results = []

    sess = rw.demo_session(seed=0, device=args.device, progress=False)
    results.append(run(sess, "shapes (default)", seeds, int(sess.data.config["spurious_class"])))

    if not args.quick:
        t = time.perf_counter()
        data = rw.datasets.digits(artifact="border", spurious_class=0)
        model = rw.models.demo_model(data, seed=0, progress=False)
        training = time.perf_counter() - t
        dsess = rw.Session(model, data, device=args.device, progress=False)
        out = run(dsess, "digits + border artifact", seeds, 0)
        out["seconds"]["model_training_or_cache_load"] = round(training, 2)
        results.append(out)

    emit(
        "midrange_curation",
        {
            "size": "quick" if args.quick else "full" if args.full else "default",
            "device": str(sess.device),
            "results": results,
            "total_seconds": round(time.perf_counter() - start, 1),
        },
    )


if __name__ == "__main__":
    main()
