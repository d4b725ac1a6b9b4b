"""The distributed runner: the rank context, the manifest, the job file, the store,
Session(store=), and whole jobs on one process, on two threads, on two torchrun
processes (gloo on the CPU), and killed mid-step then resumed.

The oracle throughout is the plain single-process session: the store's rows must be
exactly the session's activations (same batches), and every step's saved tensors on
two processes must equal (or, where sums reorder, be allclose to) those of one.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import repwidgets as rw
from repwidgets.distributed.context import Context, shard_range
from repwidgets.distributed.job import Job, JobError
from repwidgets.distributed.manifest import KILL_ENV, Manifest
from repwidgets.distributed.runner import run_job
from repwidgets.distributed.steps import STEPS
from repwidgets.distributed.store import ActivationStore
from tests.distributed_job import LAYERS, FakeWorld, tiny_data, tiny_model, torchrun, write_job

CHUNK = 16  # rows per extract unit: 6 units of train and 4 of test in the tiny data

#: Small settings for every analysis step, used when the step's module exists.
STEP_SETTINGS = {
    "invert": {"max_length": 2, "beam_size": 3, "top_k": 4},
    "dora": {"n_signals": 2, "steps": 3, "embedding": "mds"},
    "concepts": {"n_components": 4, "top_t": 16, "embedding": "pca"},
    "trak": {"targets": [0, 3, 5, 7], "proj_dim": 32},
}


#: The result type each analysis step saves (``Result.load`` reads its files), and
#: whether its widget draws the data's images (then it takes ``session=``).
RESULT_TYPES = {
    "invert": ("invert", "InvertResult", True),
    "dora": ("dora", "DoraResult", False),
    "concepts": ("concepts", "ConceptResult", True),
    "trak": ("attribution", "TRAKResult", False),
}


def available_steps() -> list[dict]:
    """extract, then every analysis step whose module is in this checkout."""
    steps = [{"name": "extract", "chunk": CHUNK}]
    for name, settings in STEP_SETTINGS.items():
        if importlib.util.find_spec(STEPS[name]) is not None:
            steps.append({"name": name, "layers": ["features.conv2"], **settings})
    return steps


def plain_session() -> rw.Session:
    return rw.Session(
        tiny_model(), tiny_data(), device="cpu", batch_size=16, precision="float32", progress=False
    )


def store_arrays(out: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(out)): np.load(p) for p in sorted((out / "store").glob("*/*.npy"))}


def result_tensors(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    return {
        str(p.relative_to(out)): load_file(str(p))
        for p in sorted((out / "results").rglob("*.safetensors"))
    }


# --- the context ----------------------------------------------------------------------
def test_shards_partition_the_range_in_order():
    for n in range(0, 23):
        for world in range(1, 6):
            blocks = [shard_range(n, r, world) for r in range(world)]
            assert [i for b in blocks for i in b] == list(range(n))
            assert max(len(b) for b in blocks) - min(len(b) for b in blocks) <= 1
    assert Context(rank=2, world=3).shard(10) == range(7, 10)


def test_single_context_collectives_are_the_identity_and_a_bare_world_refuses():
    ctx = Context.single()
    t = torch.arange(3.0)
    assert ctx.all_reduce_sum(t) is t and ctx.all_gather_object("a") == ["a"]
    assert ctx.broadcast_object(5) == 5 and ctx.is_main
    with pytest.raises(RuntimeError, match="from_env"):
        Context(rank=0, world=2).all_reduce_sum(t)
    with pytest.raises(ValueError, match="rank"):
        Context(rank=2, world=2)


def test_fake_world_collectives_combine_every_rank():
    def body(ctx):
        total = ctx.all_reduce_sum(torch.full((2,), float(ctx.rank + 1)))
        return total.tolist(), ctx.all_gather_object(ctx.rank * 10), ctx.broadcast_object(ctx.rank)

    results = FakeWorld(3).run(body)
    assert all(r == ([6.0, 6.0], [0, 10, 20], 0) for r in results)


# --- the manifest ---------------------------------------------------------------------
def test_manifest_merges_ranks_and_survives_a_restart(tmp_path):
    m0, m1 = Manifest(tmp_path, 0), Manifest(tmp_path, 1)
    m1.record("extract", "test:0-16", rank=1)
    assert m0.done("extract", "test:0-16") and not m0.done("extract", "test:16-32")
    assert m0.info("extract", "test:0-16") == {"rank": 1}
    assert not m1.step_done("extract")
    m0.mark_step_done("extract")
    assert m1.step_done("extract")
    again = Manifest(tmp_path, 1)  # a restarted rank 1 keeps its own records
    again.record("extract", "test:16-32")
    assert again.keys("extract") == {"test:0-16", "test:16-32"}
    assert json.loads((tmp_path / "manifest" / "rank-1.json").read_text())["extract"].keys() == {
        "test:0-16",
        "test:16-32",
    }


def test_manifest_kill_hook_rejects_a_bad_spec(tmp_path, monkeypatch):
    monkeypatch.setenv(KILL_ENV, "extract")
    with pytest.raises(ValueError, match=KILL_ENV):
        Manifest(tmp_path).record("extract", "a")


# --- the job file ---------------------------------------------------------------------
def test_job_file_errors_name_the_problem(tmp_path):
    path = write_job(tmp_path, steps=[{"name": "extrct"}])
    with pytest.raises(JobError, match="Did you mean 'extract'"):
        Job.load(path)
    path.write_text(path.read_text().replace('output = "out"\n', ""))
    with pytest.raises(JobError, match="needs output"):
        Job.load(path)
    path = write_job(tmp_path, session={"pol": "mean"})
    with pytest.raises(JobError, match="Did you mean 'pool'"):
        Job.load(path)
    path = write_job(tmp_path)
    path.write_text(path.read_text().replace("tests.distributed_job:tiny_model", "nope.mod:f"))
    job = Job.load(path)
    with pytest.raises(
        JobError, match=r"\[model\] factory = 'nope.mod:f'.*cannot import 'nope.mod'"
    ):
        job.build_model(None)
    path = write_job(tmp_path, steps=[{"name": "extract", "chunks": 3}])
    with pytest.raises(JobError, match="no setting"):
        run_job(path, Context.single())


def test_job_loads_a_registry_architecture_from_a_checkpoint(tmp_path):
    from repwidgets.models import zoo, zoo_extra

    data = tiny_data()
    entry = zoo_extra.entry("smallcnn")
    model = entry.builder(data.n_classes, zoo._input_channels(data), **entry.model_config)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    path = write_job(tmp_path)
    text = path.read_text().replace(
        'factory = "tests.distributed_job:tiny_model"',
        'checkpoint = "weights.pt"\narchitecture = "smallcnn"',
    )
    path.write_text(text)
    loaded = Job.load(path).build_model(data)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    path.write_text(text.replace('"smallcnn"', '"smalcnn"'))
    with pytest.raises(JobError, match="Did you mean 'smallcnn'"):
        Job.load(path).build_model(data)


def test_context_from_env_without_torchrun_is_one_process(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = Context.from_env()
    assert (ctx.rank, ctx.world, ctx.is_main) == (0, 1, True)
    assert ctx.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_run_command_reports_a_bad_job_file(tmp_path, capsys):
    from repwidgets.cli import main

    path = write_job(tmp_path, steps=[{"name": "inverse"}])
    assert main(["run", str(path)]) == 2
    assert "Did you mean 'invert'" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "missing.toml")]) == 2
    assert "No job file" in capsys.readouterr().err


def test_job_refuses_an_output_of_another_job(tmp_path):
    run_job(
        write_job(tmp_path, layers=["features.conv1"], steps=[{"name": "extract"}]),
        Context.single(),
    )
    with pytest.raises(JobError, match="another job"):
        run_job(write_job(tmp_path, layers=["features.conv2"]), Context.single())


# --- extract, the store and Session(store=) -----------------------------------------------
def test_extract_writes_the_sessions_activations_and_session_reads_them(tmp_path, one_thread):
    out = run_job(
        write_job(tmp_path, steps=[{"name": "extract", "chunk": CHUNK}]), Context.single()
    )
    plain = plain_session()
    store = ActivationStore(out / "store")
    for split in ("train", "test"):
        for layer in LAYERS:
            assert torch.equal(store.get(layer, split), plain.activations(layer, split))
    # The session answers from the store: change a stored row and it shows.
    marked = store.get("features.conv2", "test").clone()
    marked[3] = 42.0
    store.write_rows("features.conv2", "test", 0, marked)
    sess = rw.Session(
        tiny_model(), tiny_data(), device="cpu", batch_size=16, progress=False, store=out / "store"
    )
    assert torch.equal(sess.activations("features.conv2", "test"), marked)
    # Another pool is not in the store: computed, equal to the plain session's.
    assert torch.equal(
        sess.activations("features.conv2", "test", pool="max"),
        plain.activations("features.conv2", "test", pool="max"),
    )
    # Past the memory budget the stored rows stay a memory-mapped CPU tensor.
    small = rw.Session(
        tiny_model(),
        tiny_data(),
        device="cpu",
        progress=False,
        memory_budget_mb=1e-4,
        store=out / "store",
    )
    assert torch.equal(small.activations("features.conv2", "test"), marked)
    with pytest.raises(ValueError, match="do not fit"):
        store.write_rows("features.conv2", "test", 60, marked[:8])
    with pytest.raises(KeyError, match="no finished activations"):
        store.get("fc", "test")


def test_two_thread_ranks_write_the_same_store_as_one(tmp_path, one_thread):
    steps = [{"name": "extract", "chunk": CHUNK}]
    one = run_job(write_job(tmp_path / "one", steps=steps), Context.single())
    job = write_job(tmp_path / "two", steps=steps)
    FakeWorld(2).run(lambda ctx: run_job(job, ctx))
    a, b = store_arrays(one), store_arrays(tmp_path / "two" / "out")
    assert a.keys() == b.keys() and len(a) == 4
    assert all(np.array_equal(a[k], b[k]) for k in a)
    owners = {
        int(v["rank"])
        for r in range(2)
        for v in json.loads((tmp_path / "two/out/manifest" / f"rank-{r}.json").read_text())[
            "extract"
        ].values()
    }
    assert owners == {0, 1}


# --- real processes ------------------------------------------------------------------------
@pytest.mark.slow
def test_torchrun_two_processes_equal_one(tmp_path, one_thread):
    """Every step in this checkout, on two gloo processes, against one process."""
    steps = available_steps()
    one = run_job(write_job(tmp_path / "one", steps=steps), Context.single())
    job = write_job(tmp_path / "two", steps=steps)
    done = torchrun(job, nproc=2, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    two = tmp_path / "two" / "out"
    a, b = store_arrays(one), store_arrays(two)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    ra, rb = result_tensors(one), result_tensors(two)
    expected = {s["name"] for s in steps} - {"extract"}
    assert {Path(k).parts[1] for k in ra} == expected and ra.keys() == rb.keys()
    for name in ra:
        assert ra[name].keys() == rb[name].keys(), name
        for key, value in ra[name].items():
            other = rb[name][key]
            if value.is_floating_point():
                torch.testing.assert_close(
                    other, value, rtol=1e-4, atol=1e-5, equal_nan=True, msg=f"{name}:{key}"
                )
            else:
                assert torch.equal(other, value), f"{name}:{key}"
    for rank in (0, 1):
        assert (two / "manifest" / f"rank-{rank}.json").exists()
    # The notebook's view: each result loads with its type and shows as its widget,
    # images drawn by a session that reads the job's store.
    sess = rw.Session(
        tiny_model(), tiny_data(), device="cpu", batch_size=16, progress=False, store=two / "store"
    )
    for path in sorted((two / "results").rglob("*.safetensors")):
        package, name, images = RESULT_TYPES[path.parent.name]
        result = getattr(getattr(rw, package), name).load(path)
        assert len(result.to_frame()) > 0, path
        assert result.widget(**({"session": sess} if images else {})) is not None, path


@pytest.mark.slow
def test_killed_rank_resumes_to_the_same_store(tmp_path, one_thread):
    """Rank 1 SIGKILLs itself after its first chunk; the rerun (on one process) skips
    what was recorded and ends with the uninterrupted store."""
    steps = [{"name": "extract", "chunk": CHUNK}]
    one = run_job(write_job(tmp_path / "one", steps=steps), Context.single())
    job = write_job(tmp_path / "two", steps=steps)
    killed = torchrun(job, nproc=2, env={KILL_ENV: "extract:1:1"}, timeout=300)
    assert killed.returncode != 0
    out = tmp_path / "two" / "out"
    manifest = Manifest(out)
    assert not manifest.step_done("extract")
    recorded = manifest.keys("extract")
    assert 1 <= len(recorded) < 10  # stopped mid-step
    assert ActivationStore(out / "store").meta("features.conv1", "train") is None
    os.environ.pop(KILL_ENV, None)
    run_job(job, Context.single())
    a, b = store_arrays(one), store_arrays(out)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert Manifest(out).step_done("extract")
    by_rank = [
        set(json.loads((out / "manifest" / f"rank-{r}.json").read_text())["extract"])
        for r in (0, 1)
    ]
    assert by_rank[1] and not by_rank[0] & by_rank[1]  # rank 1's chunks were not redone
