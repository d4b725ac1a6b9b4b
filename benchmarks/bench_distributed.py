"""One process against two on this machine's CPU: each step's seconds, the speed-up and
the bytes each rank sent in collectives.

Both runs go through ``torchrun`` (``--nproc-per-node 1`` and ``2``, gloo, one torch
thread per process) on the same job file: the tiny test model widened, generated
shapes data, and every step this checkout has (extract, then invert, dora, concepts,
trak with small settings). Step seconds and bytes are what the runner notes in the
manifest; ``wall_s`` includes process start-up and imports. On a machine whose cores
are shared with other work the speed-ups are noisy: read them next to ``load_average``.

    python benchmarks/bench_distributed.py [--n-train 2000] [--n-test 1000] [--width 32]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
import time
from pathlib import Path

from _common import emit

from repwidgets.distributed.steps import STEPS
from tests.distributed_job import torchrun, write_job

SETTINGS = {
    "extract": {"chunk": 128},
    "invert": {"max_length": 2, "beam_size": 3},
    "dora": {"n_signals": 2, "steps": 20},
    "concepts": {"n_components": 4, "embedding": "pca"},
    "trak": {"proj_dim": 256, "targets": list(range(16))},
}


def run(folder: Path, nproc: int, steps: list[dict], args) -> dict:
    job = write_job(
        folder,
        steps=steps,
        layers=["features.conv2"],
        session={"batch_size": 64},
        data_kwargs={"n_train": args.n_train, "n_test": args.n_test, "image_size": 64},
    )
    text = job.read_text().replace(
        'factory = "tests.distributed_job:tiny_model"',
        f'factory = "tests.distributed_job:tiny_model"\nkwargs = {{ width = {args.width} }}',
    )
    job.write_text(text)
    start = time.perf_counter()
    done = torchrun(job, nproc=nproc, timeout=3000, env={"TQDM_DISABLE": "1"})
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{nproc} process(es) failed:\n{done.stderr[-3000:]}")
    steps_info = json.loads((folder / "out" / "manifest" / "rank-0.json").read_text())["__steps__"]
    return {"wall_s": round(wall, 2), "steps": steps_info}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--width", type=int, default=32, help="channels of conv1 (conv2: 2x)")
    parser.add_argument("--steps", default="all", help="comma-separated step names or 'all'")
    args = parser.parse_args()
    names = list(SETTINGS) if args.steps == "all" else args.steps.split(",")
    names = [n for n in names if importlib.util.find_spec(STEPS[n]) is not None]
    steps = [{"name": n, **SETTINGS[n]} for n in names]
    with tempfile.TemporaryDirectory() as tmp:
        one = run(Path(tmp) / "one", 1, steps, args)
        two = run(Path(tmp) / "two", 2, steps, args)
    per_step = {
        name: {
            "seconds_1": one["steps"][name]["seconds"],
            "seconds_2": two["steps"][name]["seconds"],
            "speedup": round(
                one["steps"][name]["seconds"] / max(two["steps"][name]["seconds"], 1e-9), 2
            ),
            "bytes_sent_by_rank_2": two["steps"][name]["bytes_sent_by_rank"],
        }
        for name in names
    }
    emit(
        "distributed_runner",
        {
            "n_train": args.n_train,
            "n_test": args.n_test,
            "image_size": 64,
            "width": args.width,
            "layer": "features.conv2",
            "threads_per_process": 1,
            "load_average": os.getloadavg(),
            "wall_s_1": one["wall_s"],
            "wall_s_2": two["wall_s"],
            "steps": per_step,
        },
    )


if __name__ == "__main__":
    main()
