"""INVERT engine speed: against a one-neuron-at-a-time reference, throughput, GEMM efficiency.

(a) reference: a straightforward implementation written here the way the published code
    works - one neuron at a time, every candidate formula's mask built and its AUROC
    computed by ``sklearn.metrics.roc_auc_score`` (a fresh sort per candidate) - on the
    same inputs as the engine; both must give the same beams (formulas and AUCs), and the
    speed ratio is reported (on the same neurons, and per neuron when the engine runs a
    whole layer at once).
(b) throughput in neurons per second for n samples x K concepts (L = 3, B = 5).
(c) how close the engine's AUC products run to the machine's matrix-product speed: the
    GFLOP/s of the products inside the engine against a plain float32 GEMM of the same
    shape measured in the same run, and the whole engine's products-per-second against it.
(d) the target: every neuron of a 512-neuron layer over 50,000 samples and 1,000
    concepts, with the reference's time for it estimated from its measured cost per
    candidate (running it would take hours).

    python benchmarks/bench_invert.py            # default sizes (about 3-5 min on 2 busy cores)
    python benchmarks/bench_invert.py --quick    # tiny
    python benchmarks/bench_invert.py --full     # 512 neurons at every size (longer)
"""

from __future__ import annotations

import argparse
import math
import resource
import time

import torch
from _common import emit
from reference_invert import reference_explain
from sklearn.metrics import roc_auc_score

from repwidgets.engines.invert import explain_activations


# ------------------------------------------------------------------------------ data
def synthetic(n: int, K: int, N: int, seed: int = 0):
    """Concept labels with fractions log-uniform in [0.002, 0.5] and ReLU neurons that
    respond to random 1-3 atom formulas plus noise (ties at zero, as in real layers)."""
    g = torch.Generator().manual_seed(seed)
    frac = torch.exp(torch.empty(K).uniform_(math.log(0.002), math.log(0.5), generator=g))
    C = torch.rand(n, K, generator=g) < frac
    acts = torch.randn(n, N, generator=g)
    for j in range(N):
        idx = torch.randint(0, K, (3,), generator=g)
        mask = C[:, idx[0]].clone()
        if j % 3 >= 1:
            mask &= ~C[:, idx[1]]
        if j % 3 == 2:
            mask |= C[:, idx[2]]
        acts[:, j] += (1.0 + 2.0 * torch.rand(1, generator=g)) * mask
    return torch.relu(acts - 0.5), C, [f"concept_{k}" for k in range(K)]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def part_reference(n, K, N_ref, L, B, min_fraction, device):
    """Reference and engine on the same N_ref neurons: equal beams, and the time ratio."""
    acts, C, names = synthetic(n, K, N_ref, seed=1)
    Cn = C.numpy()
    t0 = time.perf_counter()
    ref = [
        reference_explain(acts[:, j].numpy(), Cn, names, L, B, min_fraction, 0.5)
        for j in range(N_ref)
    ]
    t_ref = time.perf_counter() - t0
    kwargs = dict(max_length=L, beam_size=B, min_fraction=min_fraction, progress=False)
    explain_activations(acts[:, :1].to(device), C, names, **kwargs)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    ours = explain_activations(acts.to(device), C, names, return_beam=True, **kwargs)
    _sync(device)
    t_same = time.perf_counter() - t0
    same_best = same_beam = 0
    max_auc_diff = 0.0
    for j in range(N_ref):
        mine = [(e["text"], e["auc"]) for e in ours.beams[j]]
        same_best += mine[0][0] == ref[j][0][0]
        same_beam += [t for t, _ in mine] == [t for t, _ in ref[j]]
        if len(mine) == len(ref[j]):
            diff = max(abs(x - y) for (_, x), (_, y) in zip(mine, ref[j]))
            max_auc_diff = max(max_auc_diff, diff)
        else:
            max_auc_diff = float("inf")
    return {
        "n_samples": n,
        "n_concepts": K,
        "max_length": L,
        "beam_size": B,
        "reference_neurons_measured": N_ref,
        "reference_s_per_neuron": round(t_ref / N_ref, 3),
        "engine_s_same_neurons": round(t_same, 3),
        "speedup_same_neurons": round(t_ref / t_same, 1),
        "same_best_formula": f"{same_best}/{N_ref}",
        "same_beam": f"{same_beam}/{N_ref}",
        "max_abs_auc_difference": max_auc_diff,
    }


def reference_candidate_seconds(n, K, device, calls=40):
    """Measured cost of one reference candidate at n samples (build the mask, AUROC with
    a fresh sort), to estimate the reference's time where running it would take hours."""
    acts, C, _ = synthetic(n, min(K, 50), 1, seed=3)
    a, Cn = acts[:, 0].numpy(), C.numpy()
    roc_auc_score(Cn[:, 0], a)  # warm-up
    t0 = time.perf_counter()
    for i in range(calls):
        mask = Cn[:, i % Cn.shape[1]] & ~Cn[:, (i + 1) % Cn.shape[1]]
        if 0 < mask.sum() < n:
            roc_auc_score(mask, a)
        else:
            roc_auc_score(Cn[:, 0], a)
    return (time.perf_counter() - t0) / calls


def reference_candidates(K, L, B):
    """Candidates the reference scores per neuron (an upper bound: all pass the filter)."""
    return 2 * K + (L - 1) * B * 4 * K


def gemm_gflops(m, k, nn, device, repeats=3):
    a = torch.randn(m, k, device=device)
    b = torch.randn(k, nn, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * m * k * nn / best / 1e9


def part_throughput(n, K, N, L, B, min_fraction, device):
    acts, C, names = synthetic(n, K, N, seed=2)
    acts = acts.to(device)
    explain_activations(acts[:, :2], C, names, max_length=L, beam_size=B, progress=False)
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    r = explain_activations(
        acts, C, names, max_length=L, beam_size=B, min_fraction=min_fraction, progress=False
    )
    _sync(device)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    tm = r.timings
    nb = int(tm["neurons_per_batch"])
    peak = gemm_gflops(2 * nb * B, n, K, device)
    products = tm["product_flops"] / max(tm["products_s"], 1e-12) / 1e9
    return {
        "n_samples": n,
        "n_concepts": K,
        "neurons": N,
        "seconds": round(total, 3),
        "process_cpu_seconds": round(cpu, 3),
        "neurons_per_s": round(N / total, 2),
        "median_auc": round(float(r.auc.median()), 4),
        "breakdown_s": {k: round(v, 3) for k, v in tm.items() if k.endswith("_s")},
        "retried_neurons": int(tm.get("retries", 0)),
        "neurons_per_batch": nb,
        "gemm_gflops_same_shape": round(peak, 1),
        "auc_products_gflops": round(products, 1),
        "auc_products_fraction_of_gemm": round(products / peak, 3),
        "whole_engine_fraction_of_gemm": round(tm["product_flops"] / total / 1e9 / peak, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="tiny sizes (seconds)")
    size.add_argument("--full", action="store_true", help="512 neurons at every size")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.add_argument("--min-fraction", type=float, default=0.0)
    args = parser.parse_args()
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    L, B = 3, 5
    # sizes: (samples, concepts, neurons); the last one is the target layer
    if args.quick:
        ref_cfg = dict(n=2000, K=50, N_ref=1)
        sizes = [(2000, 50, 32), (5000, 200, 64)]
    elif args.full:
        ref_cfg = dict(n=10_000, K=100, N_ref=4)
        sizes = [(10_000, 100, 512), (10_000, 1000, 512), (50_000, 100, 512), (50_000, 1000, 512)]
    else:
        ref_cfg = dict(n=10_000, K=100, N_ref=2)
        sizes = [(10_000, 100, 64), (10_000, 1000, 64), (50_000, 100, 64), (50_000, 1000, 512)]
    t0 = time.perf_counter()
    ref = part_reference(L=L, B=B, min_fraction=args.min_fraction, device=device, **ref_cfg)
    throughput = [part_throughput(n, K, N, L, B, args.min_fraction, device) for n, K, N in sizes]
    # the speed ratio per neuron when the engine explains a whole layer at the reference's size
    same = [
        t for t in throughput if (t["n_samples"], t["n_concepts"]) == (ref_cfg["n"], ref_cfg["K"])
    ]
    if same:
        per_neuron = same[0]["seconds"] / same[0]["neurons"]
        ref["engine_layer_neurons"] = same[0]["neurons"]
        ref["engine_s_per_neuron_in_layer"] = round(per_neuron, 5)
        ref["speedup_per_neuron_in_layer"] = round(ref["reference_s_per_neuron"] / per_neuron, 1)
    layer = throughput[-1]
    n_t, K_t, N_t = sizes[-1]
    # reference time for the target layer: its measured time per neuron at the reference
    # size, scaled by the measured cost of one candidate at both sizes and by the number
    # of candidates per neuron at both sizes
    unit_ref = reference_candidate_seconds(ref_cfg["n"], ref_cfg["K"], device)
    unit_t = reference_candidate_seconds(n_t, K_t, device)
    scale = (unit_t / unit_ref) * (
        reference_candidates(K_t, L, B) / reference_candidates(ref_cfg["K"], L, B)
    )
    ref_layer_s = ref["reference_s_per_neuron"] * scale * N_t
    target_layer = {
        "n_samples": n_t,
        "n_concepts": K_t,
        "neurons": N_t,
        "engine_seconds": layer["seconds"],
        "engine_process_cpu_seconds": layer["process_cpu_seconds"],
        "neurons_per_s": layer["neurons_per_s"],
        "reference_estimated_seconds": round(ref_layer_s, 1),
        "reference_estimated_hours": round(ref_layer_s / 3600, 2),
        "estimated_speedup": round(ref_layer_s / layer["seconds"], 1),
        "estimate_note": (
            "reference not run at this size (hours): its measured seconds per neuron at "
            f"n={ref_cfg['n']}, K={ref_cfg['K']} scaled by the measured cost of one candidate "
            f"(mask + roc_auc_score: {unit_ref:.2e} s at n={ref_cfg['n']}, {unit_t:.2e} s at "
            f"n={n_t}) and by the candidates per neuron (2K + (L-1)*4*B*K), times {N_t} neurons"
        ),
    }
    emit(
        "invert",
        {
            "device": str(device),
            "min_fraction": args.min_fraction,
            "machine_gemm_gflops_2048": round(gemm_gflops(2048, 2048, 2048, device), 1),
            "reference_vs_engine": ref,
            "reference_note": (
                "reference = one neuron at a time, every candidate's mask and AUROC "
                "(sklearn roc_auc_score, one sort each); measured on the first "
                f"{ref_cfg['N_ref']} neurons only and compared per neuron"
            ),
            "throughput": throughput,
            "target_layer": target_layer,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "benchmark_seconds": round(time.perf_counter() - t0, 1),
        },
    )


if __name__ == "__main__":
    main()
