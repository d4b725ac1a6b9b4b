"""The tiny model, data and job files the distributed tests share, and two ways to run
a job on N ranks: :class:`FakeWorld` (N threads in this process, real collectives
between them) and :func:`torchrun` (``python -m torch.distributed.run``, gloo on the CPU).

Factories are named in job files as ``"tests.distributed_job:tiny_model"`` and
``"tests.distributed_job:tiny_data"``; the job's subprocesses run from the repository
root, so ``tests`` imports there.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from repwidgets.distributed.context import Context

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["features.conv1", "features.conv2"]
_SEEDED = threading.Lock()  # FakeWorld ranks are threads: one seeded build at a time


def tiny_model(seed: int = 0, n_classes: int = 4, width: int = 8) -> nn.Module:
    """Two conv blocks (``features.conv1``, ``features.conv2``) and a linear head,
    initialised from ``seed`` (the same weights on every rank, also on thread ranks)."""
    with _SEEDED:
        return _seeded_model(seed, n_classes, width)


def _seeded_model(seed: int, n_classes: int, width: int) -> nn.Module:
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = nn.Sequential()
        model.features = nn.Sequential()
        model.features.conv1 = nn.Conv2d(3, width, 3, padding=1)
        model.features.relu1 = nn.ReLU()
        model.features.pool1 = nn.MaxPool2d(2)
        model.features.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        model.features.relu2 = nn.ReLU()
        model.pool = nn.AdaptiveAvgPool2d(1)
        model.flatten = nn.Flatten()
        model.fc = nn.Linear(2 * width, n_classes)
    finally:
        torch.random.set_rng_state(gen_state)
    return model.eval()


def tiny_data(n_train: int = 96, n_test: int = 64, seed: int = 0, image_size: int = 32):
    """Generated shapes (4 classes, 20 concepts, a watermark artifact), small."""
    from repwidgets import datasets

    return datasets.shapes(
        n_train=n_train, n_test=n_test, n_val=0, seed=seed, image_size=image_size
    )


def write_job(
    folder: Path,
    steps: Sequence[dict] = ({"name": "extract"},),
    layers: Sequence[str] = tuple(LAYERS),
    output: str = "out",
    session: dict | None = None,
    data_kwargs: dict | None = None,
) -> Path:
    """A job file in ``folder`` over the tiny model and data; returns its path."""
    session = {"batch_size": 16, "pool": "mean", "precision": "float32", **(session or {})}

    def value(v) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return json.dumps(v)

    lines = [f"output = {value(output)}", f"layers = {value(list(layers))}", ""]
    lines += ["[model]", 'factory = "tests.distributed_job:tiny_model"', ""]
    lines += ["[data]", 'factory = "tests.distributed_job:tiny_data"']
    if data_kwargs:
        lines.append(f"kwargs = {value(data_kwargs)}")
    lines += ["", "[session]", *(f"{k} = {value(v)}" for k, v in session.items()), ""]
    for step in steps:
        lines += ["[[steps]]", *(f"{k} = {value(v)}" for k, v in step.items()), ""]
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = Path(folder) / "job.toml"
    path.write_text("\n".join(lines))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(
    job: Path, nproc: int = 2, env: dict | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc-per-node <nproc> -m repwidgets run job``
    from the repository root on the CPU (gloo), one thread per rank."""
    command = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
        "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{free_port()}",
        "--max-restarts=0", "-m", "repwidgets", "run", str(job),
    ]  # fmt: skip
    full_env = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        **(env or {}),
    }
    return subprocess.run(
        command, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout
    )


class FakeWorld:
    """``world`` ranks as threads of this process, with working collectives.

    ``FakeWorld(2).run(fn)`` calls ``fn(ctx)`` on a context per rank (each thread its
    own rank) and returns the results in rank order; an exception on any rank is
    raised after all threads end. Collectives combine in rank order, so sums are the
    same on every rank.
    """

    def __init__(self, world: int) -> None:
        self.world = world
        self._barrier = threading.Barrier(world)
        self._slots: list = [None] * world

    def context(self, rank: int) -> Context:
        return _ThreadContext(self, rank)

    def _exchange(self, rank: int, value) -> list:
        self._barrier.wait()
        self._slots[rank] = value
        self._barrier.wait()
        gathered = list(self._slots)
        self._barrier.wait()
        return gathered

    def run(self, fn: Callable[[Context], object]) -> list:
        results: list = [None] * self.world
        errors: list = []

        def target(rank: int) -> None:
            try:
                results[rank] = fn(self.context(rank))
            except BaseException as exc:  # noqa: BLE001 - reraised below
                errors.append(exc)
                self._barrier.abort()

        threads = [threading.Thread(target=target, args=(r,)) for r in range(self.world)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
        if real or errors:
            raise (real or errors)[0]
        return results


class _ThreadContext(Context):
    def __init__(self, world: FakeWorld, rank: int) -> None:
        super().__init__(rank, world.world, "cpu")
        self._fake = world

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        parts = self._fake._exchange(self.rank, t.detach().clone())
        self.bytes_communicated += t.numel() * t.element_size()
        total = parts[0].clone()
        for part in parts[1:]:
            total += part
        return total

    def all_gather_object(self, obj) -> list:
        return self._fake._exchange(self.rank, obj)

    def broadcast_object(self, obj, src: int = 0):
        return self._fake._exchange(self.rank, obj)[src]

    def barrier(self) -> None:
        self._fake._barrier.wait()


class StandInJob:
    """What a step needs of a job (its layers, pool and a session per rank) over a given
    model and the tiny data; every rank gets its own session and model copy, as the
    processes of a real run do."""

    def __init__(self, model: nn.Module, layers: Sequence[str] = ("features.conv2",)) -> None:
        self.model = model
        self.data = tiny_data()
        self.layers = list(layers)
        self.pool = "mean"

    def session(self, ctx=None):
        from repwidgets.session import Session

        return Session(
            copy.deepcopy(self.model),
            self.data,
            device="cpu",
            batch_size=16,
            progress=False,
            precision="float32",
        )
