"""The invert, dora, concepts and trak steps of a distributed job, in one process.

Each step runs on a world of two (and three) ranks simulated by threads in this
process (``FakeWorld`` of ``tests/distributed_job.py``; every rank builds its own
session on its own copy of the model), and its saved result is compared with
the engine's single-process call: exactly where every unit's work is independent
(INVERT, per-neuron DORA signals), within floating-point reordering where sums are
split over ranks (Gram matrices, TRAK's kernel). The torchrun test of the runner
covers the same steps across real processes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import repwidgets as rw
from repwidgets.distributed.manifest import Manifest
from repwidgets.distributed.steps import _parts
from tests.distributed_job import FakeWorld, StandInJob, tiny_data, tiny_model

# ----------------------------------------------------------------- the job and the world


class TinyJob(StandInJob):
    """The job stand-in over the shared tiny model, whose untrained head then predicts
    two classes, not one."""

    def __init__(self, layers=("features.conv2",)) -> None:
        model = tiny_model(seed=1)
        with torch.no_grad():
            model.fc.bias.zero_()
        super().__init__(model, layers)


def run_world(module, job, step: dict, out: Path, world: int) -> list:
    """``module.run`` on every rank of a world of threads; the ranks' contexts."""

    def rank_main(ctx):
        module.run(ctx, job, dict(step), out, Manifest(out, ctx.rank))
        return ctx

    return FakeWorld(world).run(rank_main)


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


# ----------------------------------------------------------------- engine pieces


def test_invert_blocks_concatenate_to_the_whole(one_thread):
    gen = torch.Generator().manual_seed(3)
    concepts = torch.rand(300, 5, generator=gen) < 0.4
    acts = concepts[:, :3].float() @ torch.randn(3, 7, generator=gen)
    acts += 0.3 * torch.randn(300, 7, generator=gen)
    names = list("abcde")
    whole = rw.invert.explain_activations(acts, concepts, names, max_length=2, progress=False)
    parts = [
        rw.invert.explain_activations(
            acts, concepts, names, neurons=b, max_length=2, progress=False
        )
        for b in ([0, 1, 2], [3], [4, 5, 6])
    ]
    joined = rw.invert.concat_results(parts)
    _same_invert(joined, whole)
    other = rw.invert.explain_activations(acts, concepts, names, max_length=1, progress=False)
    with pytest.raises(ValueError, match="settings"):
        rw.invert.concat_results([whole, other])


def test_gram_of_row_shards_decomposes_as_the_whole(one_thread):
    gen = torch.Generator().manual_seed(4)
    X = torch.randn(200, 6, generator=gen) @ torch.randn(6, 6, generator=gen) + 2.0
    shards = [X[:70], X[70:71], X[71:]]
    gram = sum(rw.concepts.gram_matrix(s) for s in shards)
    mean = sum(s.sum(0, dtype=torch.float64) for s in shards) / 200
    for center in (False, True):
        V, S, share, mu = rw.concepts.decompose_gram(gram, mean, 200, 3, center)
        V1, S1, share1, mu1 = rw.concepts.decompose(X, 3, center)
        torch.testing.assert_close(S, S1)
        torch.testing.assert_close(share, share1)
        torch.testing.assert_close(mu, mu1)
        torch.testing.assert_close((V * V1).sum(1).abs(), torch.ones(3))  # same up to sign
    with pytest.raises(ValueError, match="gram must be"):
        rw.concepts.decompose_gram(gram[:3], mean, 200, 2)


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
    assert got.neurons.tolist() == list(range(16))
    keys = Manifest(tmp_path).keys("invert")
    n_blocks = len([k for k in keys if not k.endswith("result")])
    assert n_blocks == (world if block is None else 8)


def test_invert_resumes_from_recorded_blocks(job, tmp_path):
    """A rerun after a crash takes the recorded blocks as they are and redoes the rest."""
    import json

    from repwidgets.distributed.steps import invert as step_module

    step = {"name": "invert", "max_length": 1, "beam_size": 2}
    run_world(step_module, job, step, tmp_path, 2)
    block = tmp_path / "work/invert/features.conv2/neurons-0-8.safetensors"
    part = rw.invert.InvertResult.load(block)
    part.auc[0] = 0.123  # marks the block: a rerun that recomputed it would lose this
    part.save(block)
    (tmp_path / "work/invert/features.conv2/neurons-8-16.safetensors").unlink()
    for r in range(2):  # the crash: rank 1's block and the result were never recorded
        path = tmp_path / f"manifest/rank-{r}.json"
        records = json.loads(path.read_text())
        records["invert"] = {k: v for k, v in records["invert"].items() if "0-8" in k}
        path.write_text(json.dumps(records))
    run_world(step_module, job, step, tmp_path, 2)
    got = rw.invert.InvertResult.load(tmp_path / "results/invert/features.conv2.safetensors")
    ref = rw.invert.explain(job.session(), "features.conv2", max_length=1, beam_size=2)
    assert float(got.auc[0]) == pytest.approx(0.123)
    assert torch.equal(got.auc[1:], ref.auc[1:].to(got.auc.dtype))


def test_a_repeated_step_keeps_its_own_records_and_results(tmp_path):
    from repwidgets.distributed.steps import invert as step_module

    twice = TinyJob()
    twice.steps = [{"name": "invert", "max_length": 1}, {"name": "invert", "max_length": 2}]
    twice.step_ids = lambda: ["invert-0", "invert-1"]
    for step in twice.steps:
        run_world(step_module, twice, step, tmp_path, 2)
    got = [
        rw.invert.InvertResult.load(tmp_path / f"results/invert-{i}/features.conv2.safetensors")
        for i in (0, 1)
    ]
    assert [r.params["max_length"] for r in got] == [1, 2]
    assert max(f["length"] for f in got[1].formulas) == 2


# ----------------------------------------------------------------- dora


@pytest.mark.parametrize("world,neurons", [(2, None), (3, [1, 4, 5, 9, 12])])
def test_dora_step_equals_one_process(job, tmp_path, world, neurons):
    from repwidgets.distributed.steps import dora as step_module

    settings = {"n_signals": 2, "steps": 6, "embedding": "mds"}
    step = {"name": "dora", **settings, **({"neurons": neurons} if neurons else {})}
    run_world(step_module, job, step, tmp_path, world)
    got = rw.dora.DoraResult.load(tmp_path / "results/dora/features.conv2.safetensors")
    ref = rw.dora.analyze(
        job.session(), "features.conv2", neurons=neurons, progress=False, **settings
    )
    assert got.neurons.tolist() == (neurons or list(range(16)))
    torch.testing.assert_close(got.signals, ref.signals, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got.activations, ref.activations, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        torch.as_tensor(got.distances), torch.as_tensor(ref.distances), rtol=1e-4, atol=1e-5
    )
    assert got.outliers() == ref.outliers() and got.dead() == ref.dead()
    assert got.params == rw.dora.DoraResult.load(ref.save(tmp_path / "ref.safetensors")).params


# ----------------------------------------------------------------- concepts


@pytest.mark.parametrize("world", [2, 3])
def test_concepts_step_equals_one_process(job, tmp_path, world):
    from repwidgets.distributed.steps import concepts as step_module

    settings = {"n_components": 4, "top_t": 16, "embedding": "pca"}
    run_world(step_module, job, {"name": "concepts", **settings}, tmp_path, world)
    got = rw.concepts.ConceptResult.load(tmp_path / "results/concepts/features.conv2.safetensors")
    ref = rw.concepts.discover(job.session(), "features.conv2", progress=False, **settings)
    close = {"rtol": 1e-4, "atol": 1e-5}
    for name in ("singular_values", "explained_variance", "mean", "directions", "vectors"):
        torch.testing.assert_close(getattr(got, name), getattr(ref, name), **close, msg=name)
    torch.testing.assert_close(got.relevance, ref.relevance, **close, equal_nan=True)
    assert bool(torch.isfinite(ref.relevance).any())  # some classes are predicted
    torch.testing.assert_close(got.scores, ref.scores, **close)
    for name in ("source_direction", "source_sign", "dominant_class", "outlier_index"):
        assert torch.equal(torch.as_tensor(getattr(got, name)), torch.as_tensor(getattr(ref, name)))
    assert got.params == rw.concepts.ConceptResult.load(ref.save(tmp_path / "r.safetensors")).params


# ----------------------------------------------------------------- trak


@pytest.mark.parametrize(
    "world,settings",
    [(2, {"proj_dim": 32}), (3, {"proj_dim": 24, "lam": 0.5}), (2, {"proj_dim": None})],
)
def test_trak_step_equals_one_process(job, tmp_path, world, settings):
    from torch.utils.data import Subset

    from repwidgets.distributed.steps import trak as step_module

    grad_wrt = ["features.conv2", "fc"]  # 1,236 parameters: no projection is the dual kernel
    step = {"name": "trak", "targets": [0, 3, 5, 7, 11], "grad_wrt": grad_wrt, **settings}
    run_world(step_module, job, step, tmp_path, world)
    got = rw.attribution.TRAKResult.load(tmp_path / "results/trak/scores.safetensors")
    sess = job.session()
    targets = Subset(sess.dataset("test"), [0, 3, 5, 7, 11])
    cfg = {k: v for k, v in step.items() if k not in ("name", "targets")}
    ref = rw.attribution.trak_scores(
        sess.model, sess.dataset("train"), targets, progress=False, device="cpu", **cfg
    )
    assert got.scores.shape == (96, 5)
    p = settings["proj_dim"] or got.grad_dims[0]
    assert (p > 96) == (settings["proj_dim"] is None)  # no projection: the dual kernel
    torch.testing.assert_close(got.out_to_loss, ref.out_to_loss)
    scale = float(ref.scores.abs().max())
    torch.testing.assert_close(got.scores / scale, ref.scores / scale, rtol=1e-4, atol=1e-5)
    assert got.grad_params == ref.grad_params and got.lam == ref.lam
    loaded_ref = rw.attribution.TRAKResult.load(ref.save(tmp_path / "ref.safetensors"))
    assert got.params == loaded_ref.params
    chunks = [k for k in Manifest(tmp_path).keys("trak") if k.startswith("features")]
    assert len(chunks) == world  # every rank featurised its own chunk


def test_trak_resumes_from_recorded_chunks(job, tmp_path):
    """A rerun featurises only the chunks that were not recorded, and the scores come out
    as those of an uninterrupted run."""
    import json

    from repwidgets.distributed.steps import trak as step_module

    step = {"name": "trak", "targets": [1, 2], "grad_wrt": ["fc"], "proj_dim": 16}
    run_world(step_module, job, step, tmp_path, 2)
    whole = rw.attribution.TRAKResult.load(tmp_path / "results/trak/scores.safetensors")
    work = tmp_path / "work/trak"
    q0 = work / "q-train_r48-00000.safetensors"
    marked = _parts.load_tensors(q0)["q"]
    marked[0] = 0.5  # a rerun that recomputed chunk 0 would lose this
    _parts.save_tensors(q0, {"q": marked})
    features = work / "features/train_r48.00001.npy"
    features.write_bytes(features.read_bytes()[:100])  # chunk 1 half written by a kill
    for r in range(2):
        path = tmp_path / f"manifest/rank-{r}.json"
        records = json.loads(path.read_text())
        records["trak"] = {k: v for k, v in records["trak"].items() if k.endswith(":0")}
        path.write_text(json.dumps(records))
    run_world(step_module, job, step, tmp_path, 2)
    got = rw.attribution.TRAKResult.load(tmp_path / "results/trak/scores.safetensors")
    assert float(got.out_to_loss[0]) == 0.5
    torch.testing.assert_close(got.out_to_loss[1:], whole.out_to_loss[1:])
    torch.testing.assert_close(got.scores[1:], whole.scores[1:])  # chunk 1 made again alike


def test_bad_settings_fail_before_any_work(job):
    from repwidgets.distributed.steps import concepts, dora, invert, trak

    cases = [
        (invert, {"name": "invert", "max_lenght": 2}, "max_length"),
        (dora, {"name": "dora", "n_signal": 2}, "n_signals"),
        (concepts, {"name": "concepts", "n_component": 3}, "n_components"),
        (concepts, {"name": "concepts", "objective": "logit"}, "objective"),
        (trak, {"name": "trak", "proj_dm": 8}, "proj_dim"),
    ]
    for module, step, named in cases:
        with pytest.raises((TypeError, ValueError), match=named):
            module.check(job, step)


@pytest.mark.slow
def test_trak_rank_killed_mid_step_resumes(tmp_path, one_thread):
    """Rank 1 SIGKILLs itself right after recording its chunk of TRAK features; the
    rerun (one process, the same chunks) keeps that chunk and ends with the one-process
    scores."""
    from torch.utils.data import Subset

    from repwidgets.distributed.context import Context
    from repwidgets.distributed.manifest import KILL_ENV
    from repwidgets.distributed.runner import run_job
    from tests.distributed_job import torchrun, write_job

    trak = {"name": "trak", "proj_dim": 16, "grad_wrt": ["fc"], "chunk_rows": 48}
    trak["targets"] = [0, 1, 2]
    job = write_job(tmp_path, steps=[trak])
    killed = torchrun(job, nproc=2, env={KILL_ENV: "trak:1:1"}, timeout=150)
    assert killed.returncode != 0
    out = tmp_path / "out"
    q1 = out / "work/trak/q-train_r48-00001.safetensors"
    assert Manifest(out).done("trak", "features:train_r48:1") and q1.exists()
    assert not (out / "results/trak/scores.safetensors").exists()
    stamp = q1.stat().st_mtime_ns
    run_job(job, Context.single())
    assert q1.stat().st_mtime_ns == stamp  # rank 1's chunk was not featurised again
    got = rw.attribution.TRAKResult.load(out / "results/trak/scores.safetensors")
    sess = rw.Session(tiny_model(), tiny_data(), device="cpu", batch_size=16, progress=False)
    settings = {k: v for k, v in trak.items() if k not in ("name", "targets")}
    targets = Subset(sess.dataset("test"), trak["targets"])
    ref = rw.attribution.trak_scores(
        sess.model, sess.dataset("train"), targets, progress=False, **settings
    )
    torch.testing.assert_close(got.out_to_loss, ref.out_to_loss)
    scale = float(ref.scores.abs().max())
    torch.testing.assert_close(got.scores / scale, ref.scores / scale, rtol=1e-4, atol=1e-5)
