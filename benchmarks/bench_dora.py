"""DORA speed: s-AMS generation batched over the whole layer against a reference loop.

(a) s-AMS generation, time per (neuron, signal, optimisation step):
    - ``batched``: ``dora.generate_signals`` - every (neuron, signal) pair of the layer
      in as few batches as memory allows, the forward pass stopping at the layer;
    - ``reference``: written here the way the published code works - the tasks
      (neuron, signal) taken 16 at a time, each group optimised on its own with a fresh
      image parametrisation and optimiser, the whole model run forward with a hook
      on the layer;
    - ``limit``: the raw forward + backward pass (input gradients only, up to the
      layer) of the same batch on fixed images: what optimisation cannot go below.
    Ratios are measured in the same run on the same model and sizes.
(b) EA distance for k = 2,048 neurons (one k x k matrix product).

The network is a SmallCNN at 64 x 64 (the demo architecture) with its initial weights:
speed does not depend on the weights.

    python benchmarks/bench_dora.py            # default sizes (about 1-2 min on 2 cores)
    python benchmarks/bench_dora.py --quick    # tiny
    python benchmarks/bench_dora.py --full     # a whole 128-channel layer, 3 signals
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import best_of, emit

from repwidgets.engines import dora, featurevis
from repwidgets.engines.dora.layer import layer_fn, unit_responses
from repwidgets.hooks import Capture
from repwidgets.models import SmallCNN


def reference_generation(model, layer, neurons, n_signals, steps, shape, lr=0.05, group=16):
    """(neuron, signal) tasks 16 at a time, the full model forward with a hook."""
    tasks = [int(j) for j in neurons for _ in range(n_signals)]
    c, h, w = shape
    tf = featurevis.Transforms()
    out = []
    with Capture(layer) as capture:
        for start in range(0, len(tasks), group):
            chunk = torch.tensor(tasks[start : start + group])
            img = featurevis.FourierImage(
                len(chunk), c, h, w, generator=torch.Generator().manual_seed(start)
            )
            opt = torch.optim.Adam([img.params], lr=lr)
            gen = torch.Generator().manual_seed(start + 1)
            for _ in range(steps):
                opt.zero_grad()
                x = featurevis.random_affine(img.render(), (h, w), gen, tf)
                model(x)
                act = capture.value.mean(dim=(2, 3))
                loss = -act[torch.arange(len(chunk)), chunk].sum()
                loss.backward()
                opt.step()
            out.append(img.render().detach())
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--layer", default="features.conv3")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    k, n, steps = (16, 1, 4) if args.quick else (128, 3, 16) if args.full else (48, 2, 12)
    shape = (3, 64, 64)

    torch.manual_seed(0)
    model = SmallCNN(4).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    layer = dict(model.named_modules())[args.layer]
    neurons = list(range(k))
    pairs = k * n * steps

    start = time.perf_counter()
    dora.generate_signals(
        model, args.layer, neurons, n_signals=n, steps=steps, input_shape=shape, progress=False
    )
    batched = time.perf_counter() - start

    start = time.perf_counter()
    reference_generation(model, layer, neurons, n, steps, shape)
    reference = time.perf_counter() - start

    fn = layer_fn(model, args.layer)
    x = torch.rand(k * n, *shape)

    def raw_step():
        xi = x.clone().requires_grad_(True)
        unit_responses(fn(xi))[:, 0].sum().backward()

    limit = best_of(raw_step, repeats=3) * steps

    A = torch.rand(2048, 2048, generator=torch.Generator().manual_seed(0))
    dora.ea_distance(A)  # warm-up
    ea = best_of(lambda: dora.ea_distance(A), repeats=5)

    us = 1e6 / pairs
    emit(
        "dora",
        {
            "device": "cpu",
            "layer": args.layer,
            "input_shape": list(shape),
            "neurons": k,
            "signals_per_neuron": n,
            "steps": steps,
            "batched_us_per_neuron_signal_step": round(batched * us, 1),
            "reference_us_per_neuron_signal_step": round(reference * us, 1),
            "limit_us_per_neuron_signal_step": round(limit * us, 1),
            "speedup_batched_vs_reference": round(reference / batched, 2),
            "batched_over_limit": round(batched / limit, 2),
            "ea_distance_k2048_ms": round(ea * 1e3, 1),
        },
    )


if __name__ == "__main__":
    main()
