"""TRAK featurisation throughput and attribution quality (LDS), against ``traker``, on the CPU.

Throughput: per-sample gradients of the class margin of the default CNN architecture,
projected to ``proj_dim`` (Rademacher JL), written to disk and turned into the kernel,
for our engine and for traker 0.3.2 (its CPU projector ``BasicProjector``; its CUDA
projectors do not run on a CPU), with the same model, images and projection size.
Also without projection (traker's ``NoOpProjector``), gradients only. Each measurement
runs in its own process (one thread) so that its peak memory (max RSS) is its own.
The raw batched forward+backward throughput of the same model is the limit reference.

Quality: the linear datamodeling score (LDS) of both on a small setting: scikit-learn's
digits (8x8), a small CNN, an ensemble of models trained on the full training set, and
models trained on random 50% subsets whose target margins the scores must predict.

    python benchmarks/bench_attribution.py            # default (about 3 min on 2 cores)
    python benchmarks/bench_attribution.py --quick    # tiny run
    python benchmarks/bench_attribution.py --full     # larger sizes, repeats
    python benchmarks/bench_attribution.py --projection   # the projection budget only
    python benchmarks/bench_attribution.py --neuron       # per-neuron attribution on the demo

Per-neuron attribution (TRAK on one neuron's pooled activation at a layer, see
``repwidgets.engines.attribution.neuron``): its time as a multiple of one raw batched
forward+backward pass over the same samples (training subset and targets), in the
default run on the throughput model and, with ``--neuron``, on the demo model (trained,
cached) at two layers for the neuron that best detects the watermark, with the
precision of its top 100 attributed training samples.

Projection budget: per-sample gradients of a D-parameter model (random, as a list of
parameter tensors) projected as before (concatenated to [B, D], whole blocks of P)
and in steps of ``proj_chunk_mb`` (pieces per tensor, int8 signs converted per step):
peak memory increase and time of each, and the largest difference of the features.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

SIZES = {
    "quick": dict(n=64, image=32, proj_dim=256, batch=32, repeats=1, n_noproj=32,
                  lds_subsets=8, lds_models=2, lds_targets=40, lds_proj=256, lds_epochs=4,
                 proj_params=250_000, proj_batch=8, proj_p=256, proj_chunk_mb=4),
    "default": dict(n=256, image=32, proj_dim=1024, batch=64, repeats=1, n_noproj=64,
                    lds_subsets=20, lds_models=3, lds_targets=100, lds_proj=512, lds_epochs=8,
                    proj_params=1_000_000, proj_batch=16, proj_p=1024, proj_chunk_mb=16),
    "full": dict(n=1024, image=64, proj_dim=2048, batch=64, repeats=3, n_noproj=128,
                 lds_subsets=50, lds_models=5, lds_targets=200, lds_proj=1024, lds_epochs=10,
                 proj_params=4_000_000, proj_batch=16, proj_p=2048, proj_chunk_mb=64),
}  # fmt: skip


# ----------------------------------------------------------------------------- children


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _throughput_setup(cfg: dict):
    import repwidgets as rw
    from repwidgets.models import SmallCNN

    torch.set_num_threads(1)
    data = rw.datasets.shapes(n_train=cfg["n"], n_test=8, n_val=0, image_size=cfg["image"])
    X = torch.stack([data.train[i][0] for i in range(cfg["n"])])
    y = data.targets("train")
    torch.manual_seed(0)
    model = SmallCNN(len(data.class_names)).eval()
    # one-time lazy imports inside torch.func (seconds), paid by both libraries alike
    w = torch.ones(2)
    torch.func.vmap(torch.func.grad(lambda w, x: (w * x).sum()), in_dims=(None, 0))(
        w, X[:3, 0, 0, :2]
    )
    return model, X, y


def child_raw(cfg: dict) -> dict:
    model, X, y = _throughput_setup(cfg)
    loss = torch.nn.CrossEntropyLoss()
    b = cfg["batch"]

    def run():
        for i in range(0, len(X), b):
            model.zero_grad()
            loss(model(X[i : i + b]), y[i : i + b]).backward()

    run()
    start = time.perf_counter()
    run()
    return {"samples_per_s": len(X) / (time.perf_counter() - start)}


def child_ours(cfg: dict) -> dict:
    from repwidgets.engines.attribution import TRAK

    n = cfg.get("n_override") or cfg["n"]
    model, X, y = _throughput_setup({**cfg, "n": n})
    base = _peak_mb()
    trak = TRAK(model, "margin", proj_dim=cfg["proj_dim"], batch_size=cfg["batch"],
                progress=False, device="cpu")  # fmt: skip
    start = time.perf_counter()
    trak.featurize((X, y))
    seconds = time.perf_counter() - start
    trak.close()
    return {"samples_per_s": n / seconds, "seconds": seconds, "peak_rss_mb": _peak_mb(),
            "peak_rss_increase_mb": _peak_mb() - base}  # fmt: skip


def _raw_seconds(model: torch.nn.Module, X: torch.Tensor, batch: int) -> float:
    """One batched forward+backward pass (summed logits) over ``X``, warm."""

    def run():
        for i in range(0, len(X), batch):
            model.zero_grad()
            model(X[i : i + batch]).sum().backward()

    run()
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def child_neuron(cfg: dict) -> dict:
    """Per-neuron attribution over every training sample of the throughput setting."""
    import repwidgets as rw
    from repwidgets.engines.attribution import neuron_attribution

    model, X, _y = _throughput_setup(cfg)
    data = rw.datasets.shapes(n_train=cfg["n"], n_test=8, n_val=0, image_size=cfg["image"])
    sess = rw.Session(model, data, device="cpu", progress=False)
    kw = dict(max_train=None, n_targets=8, proj_dim=min(512, cfg["proj_dim"]))
    neuron_attribution(sess, "features.relu4", 0, **{**kw, "max_train": 8}, progress=False)
    start = time.perf_counter()
    neuron_attribution(sess, "features.relu4", 0, **kw, progress=False)
    seconds = time.perf_counter() - start
    everything = torch.cat([X, torch.stack([data.test[i][0] for i in range(8)])])
    raw = _raw_seconds(model, everything, cfg["batch"])
    return {"seconds": seconds, "raw_forward_backward_seconds": raw, "samples": len(everything),
            "proj_dim": kw["proj_dim"], "multiple_of_raw": seconds / raw}  # fmt: skip


def neuron_demo(layers: list[str] | None = None) -> dict:
    """Per-neuron attribution on the demo model: time, multiple of raw, precision@100."""
    import repwidgets as rw
    from repwidgets.engines.attribution import neuron_attribution
    from repwidgets.engines.ranks import auc_matrix

    torch.set_num_threads(1)
    sess = rw.demo_session(progress=False)
    out = {}
    for layer in layers or [sess.default_layer(), "features.relu3"]:
        acts = sess.activations(layer, "test")
        auc = auc_matrix(acts, sess.concept("watermark", "test"))[:, 0]
        unit = int(torch.argmax(auc))
        start = time.perf_counter()
        r = neuron_attribution(sess, layer, unit, progress=False)
        seconds = time.perf_counter() - start
        X = torch.cat([
            sess.images(r.train_indices.tolist(), "train"),
            sess.images(r.target_indices.tolist(), r.target_split),
        ])  # fmt: skip
        raw = _raw_seconds(sess.model, X, 64)
        out[layer] = {
            "unit": unit,
            "watermark_auc": round(float(auc[unit]), 4),
            "n_train": len(r.train_indices),
            "n_targets": len(r.target_indices),
            "seconds": round(seconds, 2),
            "raw_forward_backward_seconds": round(raw, 2),
            "multiple_of_raw": round(seconds / raw, 2),
            "precision_at_100": round(r.precision_at(100, "watermark"), 3),
            "base_rate": round(float(r.labels("watermark").mean()), 3),
        }
    return {"params": r.params, "layers": out}


def child_traker(cfg: dict) -> dict:
    from trak import TRAKer
    from trak.projectors import BasicProjector, NoOpProjector, ProjectionType

    n = cfg.get("n_override") or cfg["n"]
    model, X, y = _throughput_setup({**cfg, "n": n})
    base = _peak_mb()
    D = sum(p.numel() for p in model.parameters())
    if cfg["proj_dim"] is None:
        projector = NoOpProjector(device="cpu")
    else:
        projector = BasicProjector(grad_dim=D, proj_dim=cfg["proj_dim"], seed=0,
                                   proj_type=ProjectionType.rademacher, device="cpu",
                                   dtype=torch.float32)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        tr = TRAKer(model=model, task="image_classification", train_set_size=n, save_dir=tmp,
                    device="cpu", projector=projector, use_half_precision=False,
                    logging_level=logging.ERROR)  # fmt: skip
        start = time.perf_counter()
        tr.load_checkpoint(model.state_dict(), model_id=0)
        b = cfg["batch"]
        for i in range(0, n, b):
            tr.featurize(batch=(X[i : i + b], y[i : i + b]), num_samples=len(X[i : i + b]))
        featurize = time.perf_counter() - start
        if cfg["proj_dim"] is not None:  # no finalize without projection: a D x D kernel
            tr.finalize_features()
        seconds = time.perf_counter() - start
    return {"samples_per_s": n / seconds, "seconds": seconds, "featurize_seconds": featurize,
            "peak_rss_mb": _peak_mb(), "peak_rss_increase_mb": _peak_mb() - base}  # fmt: skip


def child_projection(cfg: dict) -> dict:
    """Project per-sample gradients given as parameter pieces: whole or in steps."""
    from repwidgets.engines.projection import JLProjection

    torch.set_num_threads(1)
    D, B, p = cfg["proj_params"], cfg["proj_batch"], cfg["proj_p"]
    sizes = [D // 4, D // 2, D - D // 4 - D // 2]  # three parameter tensors
    g = torch.Generator().manual_seed(0)
    parts = [torch.randn(B, d, generator=g) for d in sizes]
    chunk = cfg["proj_chunk_mb"] if cfg["mode"] == "chunked" else None
    proj = JLProjection(D, p, seed=0, cache_mb=0, chunk_mb=chunk)
    base = _peak_mb()
    start = time.perf_counter()
    if cfg["mode"] == "chunked":
        phi = proj.project_parts(parts)
    else:
        phi = proj.project(torch.cat(parts, dim=1))
    seconds = time.perf_counter() - start
    path = Path(cfg["out"]) / f"{cfg['mode']}.pt"
    torch.save(phi, path)
    return {"seconds": seconds, "peak_rss_increase_mb": _peak_mb() - base, "path": str(path)}


def projection_budget(cfg: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        whole = run_child("projection", {**cfg, "mode": "whole", "out": tmp})
        chunked = run_child("projection", {**cfg, "mode": "chunked", "out": tmp})
        a = torch.load(whole["path"], weights_only=True)
        b = torch.load(chunked["path"], weights_only=True)
    return {
        "n_params": cfg["proj_params"],
        "batch": cfg["proj_batch"],
        "proj_dim": cfg["proj_p"],
        "proj_chunk_mb": cfg["proj_chunk_mb"],
        "whole_peak_rss_increase_mb": round(whole["peak_rss_increase_mb"], 1),
        "chunked_peak_rss_increase_mb": round(chunked["peak_rss_increase_mb"], 1),
        "chunked_time_ratio": round(chunked["seconds"] / whole["seconds"], 2),
        "max_abs_difference": float((a - b).abs().max()),
        "feature_scale": float(a.abs().max()),
    }


CHILDREN = {
    "raw": child_raw,
    "ours": child_ours,
    "traker": child_traker,
    "projection": child_projection,
    "neuron": child_neuron,
}


def run_child(kind: str, cfg: dict) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, json.dumps(cfg)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- LDS


def lds_setting(cfg: dict) -> dict:
    import repwidgets as rw
    from repwidgets.datasets.bundle import TensorImageDataset
    from repwidgets.engines import attribution as A
    from repwidgets.models import SmallCNN, train_model

    torch.set_num_threads(1)
    data = rw.datasets.digits(artifact=None, image_size=8, seed=0)
    X = torch.stack([data.train[i][0] for i in range(len(data.train))])
    y = data.targets("train")
    rng = np.random.default_rng(0)
    t_idx = np.sort(rng.choice(len(data.test), size=cfg["lds_targets"], replace=False))
    Xt = torch.stack([data.test[int(i)][0] for i in t_idx])
    yt = data.targets("test")[torch.as_tensor(t_idx)]
    train = TensorImageDataset(X, y)

    def train_fn(dataset, seed):
        torch.manual_seed(seed)
        model = SmallCNN(10, widths=(8, 16, 16, 16))
        train_model(model, dataset, epochs=cfg["lds_epochs"], lr=5e-3, batch_size=32,
                    seed=seed, progress=False)  # fmt: skip
        return model.eval()

    start = time.perf_counter()
    models = [train_fn(train, 1000 + s) for s in range(cfg["lds_models"])]
    masks, outputs = A.subset_outputs(train_fn, train, (Xt, yt), n_subsets=cfg["lds_subsets"],
                                      seed=0, progress=False)  # fmt: skip
    train_seconds = time.perf_counter() - start
    p = cfg["lds_proj"]
    D = sum(q.numel() for q in models[0].parameters())

    start = time.perf_counter()
    ours = A.trak_scores(models, (X, y), (Xt, yt), proj_dim=p, progress=False, device="cpu")
    ours_s = time.perf_counter() - start
    ours_lam0 = A.trak_scores(models, (X, y), (Xt, yt), proj_dim=p, lam=0.0, progress=False)
    ours_noproj = A.trak_scores(models, (X, y), (Xt, yt), proj_dim=None, progress=False)

    from trak import TRAKer
    from trak.projectors import BasicProjector, ProjectionType

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        projector = BasicProjector(grad_dim=D, proj_dim=p, seed=0,
                                   proj_type=ProjectionType.rademacher, device="cpu",
                                   dtype=torch.float32)  # fmt: skip
        tr = TRAKer(model=models[0], task="image_classification", train_set_size=len(X),
                    save_dir=tmp, device="cpu", projector=projector, use_half_precision=False,
                    logging_level=logging.ERROR)  # fmt: skip
        for mid, m in enumerate(models):
            tr.load_checkpoint(m.state_dict(), model_id=mid)
            for i in range(0, len(X), 64):
                tr.featurize(batch=(X[i : i + 64], y[i : i + 64]), num_samples=len(X[i : i + 64]))
        tr.finalize_features()
        for mid, m in enumerate(models):
            tr.start_scoring_checkpoint("lds", m.state_dict(), model_id=mid, num_targets=len(Xt))
            tr.score(batch=(Xt, yt), num_samples=len(Xt))
        ref = torch.as_tensor(np.asarray(tr.finalize_scores("lds"), dtype=np.float32))
    traker_s = time.perf_counter() - start

    return {
        "setting": {
            "data": "sklearn digits 8x8",
            "n_train": len(X),
            "n_targets": len(Xt),
            "n_params": D,
            "proj_dim": p,
            "ensemble_models": len(models),
            "subset_models": cfg["lds_subsets"],
            "subset_fraction": 0.5,
            "training_seconds": round(train_seconds, 1),
        },
        "lds_ours": round(A.lds(ours.scores, masks, outputs).lds, 4),
        "lds_ours_lam0": round(A.lds(ours_lam0.scores, masks, outputs).lds, 4),
        "lds_ours_no_projection": round(A.lds(ours_noproj.scores, masks, outputs).lds, 4),
        "lds_traker": round(A.lds(ref, masks, outputs).lds, 4),
        "scoring_seconds_ours": round(ours_s, 2),
        "scoring_seconds_traker": round(traker_s, 2),
    }


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--projection", action="store_true")
    parser.add_argument("--neuron", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "CONFIG"))
    args = parser.parse_args()
    if args.child:
        kind, cfg = args.child
        print(json.dumps(CHILDREN[kind](json.loads(cfg))))
        return

    from _common import emit

    size = "quick" if args.quick else "full" if args.full else "default"
    cfg = SIZES[size]
    if args.projection:
        emit("attribution_projection", {"size": size, "device": "cpu", **projection_budget(cfg)})
        return
    if args.neuron:
        emit("attribution_neuron", {"device": "cpu", "threads": 1, **neuron_demo()})
        return
    ours, ref = [], []
    for _ in range(cfg["repeats"]):  # interleaved, so load changes hit both alike
        ours.append(run_child("ours", cfg))
        ref.append(run_child("traker", cfg))
    best_ours = max(ours, key=lambda r: r["samples_per_s"])
    best_ref = max(ref, key=lambda r: r["samples_per_s"])
    raw = run_child("raw", cfg)
    noproj = {**cfg, "proj_dim": None, "n_override": cfg["n_noproj"]}
    ours_np = run_child("ours", noproj)
    ref_np = run_child("traker", noproj)
    neuron = run_child("neuron", cfg)
    lds = lds_setting(cfg)
    torch.manual_seed(0)
    from repwidgets.models import SmallCNN

    n_params = sum(p.numel() for p in SmallCNN(4).parameters())
    emit(
        "attribution_trak",
        {
            "size": size,
            "device": "cpu",
            "threads_per_measurement": 1,
            "throughput": {
                "model": f"SmallCNN (demo widths, {n_params} parameters)",
                "image_size": cfg["image"],
                "n_train": cfg["n"],
                "proj_dim": cfg["proj_dim"],
                "projection": "rademacher",
                "batch_size": cfg["batch"],
                "ours_samples_per_s": round(best_ours["samples_per_s"], 2),
                "traker_samples_per_s": round(best_ref["samples_per_s"], 2),
                "speedup_vs_traker": round(
                    best_ours["samples_per_s"] / best_ref["samples_per_s"], 2
                ),
                "raw_forward_backward_samples_per_s": round(raw["samples_per_s"], 2),
                "ours_fraction_of_raw": round(best_ours["samples_per_s"] / raw["samples_per_s"], 3),
                "ours_peak_rss_mb": round(best_ours["peak_rss_mb"], 1),
                "traker_peak_rss_mb": round(best_ref["peak_rss_mb"], 1),
                "ours_peak_rss_increase_mb": round(best_ours["peak_rss_increase_mb"], 1),
                "traker_peak_rss_increase_mb": round(best_ref["peak_rss_increase_mb"], 1),
            },
            "throughput_no_projection": {
                "n_train": cfg["n_noproj"],
                "ours_samples_per_s": round(ours_np["samples_per_s"], 2),
                "traker_samples_per_s": round(ref_np["samples_per_s"], 2),
                "speedup_vs_traker": round(ours_np["samples_per_s"] / ref_np["samples_per_s"], 2),
                "ours_peak_rss_increase_mb": round(ours_np["peak_rss_increase_mb"], 1),
                "traker_peak_rss_increase_mb": round(ref_np["peak_rss_increase_mb"], 1),
                "note": "gradients + storage only for traker (its kernel would be D x D)",
            },
            "neuron_attribution": {
                "layer": "features.relu4",
                "n_train": cfg["n"],
                "n_targets": 8,
                "proj_dim": neuron["proj_dim"],
                "seconds": round(neuron["seconds"], 2),
                "raw_forward_backward_seconds": round(neuron["raw_forward_backward_seconds"], 3),
                "multiple_of_raw": round(neuron["multiple_of_raw"], 2),
            },
            "lds": lds,
            "projection_budget": projection_budget(cfg),
        },
    )


if __name__ == "__main__":
    main()
