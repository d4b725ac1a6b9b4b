"""The invert, dora, concepts and trak steps of a distributed job, in one process.

Each step runs on a world of two (and three) ranks simulated by threads in this
process (:class:`ThreadWorld`: the collectives meet at a barrier, every rank builds
its own session on its own copy of the model), and its saved result is compared with
the engine's single-process call: exactly where every unit's work is independent
(INVERT, per-neuron DORA signals), within floating-point reordering where sums are
split over ranks (Gram matrices, TRAK's kernel). The torchrun test of the runner
covers the same steps across real processes.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

import repwidgets as rw
from repwidgets.distributed.context import Context
from repwidgets.distributed.manifest import Manifest
from repwidgets.distributed.steps import _parts

# ----------------------------------------------------------------- tiny model and data


class TinyNet(nn.Module):
    """Two conv blocks, pooled, a linear head: 3 classes from 3 x 12 x 12 images."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(3, 6, 3, padding=1),
                relu1=nn.ReLU(),
                conv2=nn.Conv2d(6, 8, 3, padding=1),
                relu2=nn.ReLU(),
            )
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def tiny_bundle(n_train: int = 48, n_test: int = 40):
    """Random images whose concepts are read off their pixels (so neurons can detect them)."""
    gen = torch.Generator().manual_seed(0)
    splits, concepts, names = {}, {}, ["red", "green", "bright", "left"]
    for split, n in (("train", n_train), ("test", n_test)):
        X = torch.rand(n, 3, 12, 12, generator=gen)
        c = torch.stack(
            [
                X[:, 0].mean((1, 2)) > 0.5,
                X[:, 1].mean((1, 2)) > 0.5,
                X.mean((1, 2, 3)) > 0.5,
                X[:, :, :, :6].mean((1, 2, 3)) > X[:, :, :, 6:].mean((1, 2, 3)),
            ],
            dim=1,
        )
        y = torch.randint(0, 3, (n,), generator=gen)
        splits[split] = rw.datasets.TensorImageDataset(X, y)
        concepts[split] = c
    return rw.datasets.DataBundle("tiny", splits, ["a", "b", "c"], names, concepts=concepts)


class TinyJob:
    """What a step needs of a job: its layers and a session per rank (own model copy)."""

    def __init__(self, layers=("features.conv2",)) -> None:
        torch.manual_seed(0)
        self.model = TinyNet().eval()
        self.data = tiny_bundle()
        self.layers = list(layers)

    def session(self, ctx=None) -> rw.Session:
        return rw.Session(
            copy.deepcopy(self.model),
            self.data,
            device="cpu",
            batch_size=16,
            progress=False,
            precision="float32",
        )


# ----------------------------------------------------------------- a world of threads


class ThreadContext(Context):
    """A rank of a world whose ranks are threads of this process."""

    def __init__(self, rank: int, world: int, hub: dict) -> None:
        super().__init__(rank, world, "cpu")
        self._hub = hub

    def all_gather_object(self, obj):
        hub = self._hub
        hub["slots"][self.rank] = obj
        hub["barrier"].wait()
        out = list(hub["slots"])
        hub["barrier"].wait()
        return out

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        parts = self.all_gather_object(t.detach().clone())
        total = parts[0].clone()
        for p in parts[1:]:
            total += p.to(total.device)
        self.bytes_communicated += t.numel() * t.element_size()
        return total

    def broadcast_object(self, obj, src: int = 0):
        return self.all_gather_object(obj)[src]

    def barrier(self) -> None:
        self._hub["barrier"].wait()


def run_world(module, job, step: dict, out: Path, world: int) -> list:
    """``module.run`` on every rank of a thread world; the ranks' contexts."""
    hub = {"barrier": threading.Barrier(world, timeout=120), "slots": [None] * world}
    contexts = [ThreadContext(r, world, hub) for r in range(world)]
    errors: list = []

    def rank_main(ctx):
        try:
            module.run(ctx, job, dict(step), out, Manifest(out, ctx.rank))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            hub["barrier"].abort()

    threads = [threading.Thread(target=rank_main, args=(c,)) for c in contexts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return contexts


@pytest.fixture(scope="module")
def job():
    torch.set_num_threads(1)
    return TinyJob()


def test_blocks_partition_in_order():
    for n, world, size in [(10, 3, None), (10, 2, 3), (3, 4, None), (17, 3, 2)]:
        got = [b for r in range(world) for b in _parts.blocks(n, world, r, size)]
        assert [i for b in got for i in b] == list(range(n))
        runs = [_parts.blocks(n, world, r, size) for r in range(world)]
        assert max(len(r) for r in runs) - min(len(r) for r in runs) <= 1


# ----------------------------------------------------------------- invert


def _same_invert(a, b) -> None:
    assert [f["text"] for f in a.formulas] == [f["text"] for f in b.formulas]
    for name in ("auc", "fraction", "p_value", "log10_p", "neurons", "top_indices", "top_values"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.params == b.params


@pytest.mark.parametrize("world,block", [(2, None), (3, 2)])
def test_invert_step_equals_one_process(job, tmp_path, world, block):
    from repwidgets.distributed.steps import invert as step_module

    step = {"name": "invert", "max_length": 2, "beam_size": 3, "top_k": 4}
    if block:
        step["block"] = block
    run_world(step_module, job, step, tmp_path, world)
    got = rw.invert.InvertResult.load(tmp_path / "results/invert/features.conv2.safetensors")
    ref = rw.invert.explain(job.session(), "features.conv2", max_length=2, beam_size=3, top_k=4)
    ref = rw.invert.InvertResult.load(ref.save(tmp_path / "ref.safetensors"))
    _same_invert(got, ref)
    assert got.neurons.tolist() == list(range(8))
    keys = Manifest(tmp_path).keys("invert")
    n_blocks = len([k for k in keys if not k.endswith("result")])
    assert n_blocks == (world if block is None else 4)
