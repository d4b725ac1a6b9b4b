"""The trak step over an ensemble of checkpoints, split by checkpoint or by samples
across thread ranks, against the engine's one-process ensemble scores."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import Subset

import repwidgets as rw
from repwidgets.distributed.manifest import Manifest
from repwidgets.distributed.steps import trak as step_module
from tests.distributed_job import FakeWorld, StandInJob, tiny_model

TARGETS = [0, 3, 5, 7]
SETTINGS = {"grad_wrt": ["features.conv2", "fc"], "proj_dim": 24, "lam": 0.5}


def checkpoint_models() -> list[torch.nn.Module]:
    """Three differently initialised tiny models (the head's bias zeroed, so each
    predicts more than one class)."""
    models = []
    for seed in (1, 2, 3):
        model = tiny_model(seed=seed)
        with torch.no_grad():
            model.fc.bias.zero_()
        models.append(model)
    return models


class EnsembleJob(StandInJob):
    """The job stand-in over the first checkpoint, with the job file's path (checkpoints
    are relative to its folder)."""

    def __init__(self, folder: Path) -> None:
        super().__init__(checkpoint_models()[0])
        self.path = Path(folder) / "job.toml"


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    """A folder with the three checkpoints, the job, and the one-process ensemble scores."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("ensemble")
    models = checkpoint_models()
    for i, model in enumerate(models):
        torch.save(model.state_dict(), folder / f"ck{i}.pt")
    job = EnsembleJob(folder)
    sess = job.session()
    targets = Subset(sess.dataset("test"), TARGETS)
    ref = rw.attribution.trak_scores(
        models, sess.dataset("train"), targets, progress=False, device="cpu", **SETTINGS
    )
    return job, ref


def step(**extra) -> dict:
    names = ["ck0.pt", "ck1.pt", "ck2.pt"]
    return {"name": "trak", "targets": TARGETS, "checkpoints": names, **SETTINGS, **extra}


def run_world(job, table: dict, out: Path, world: int) -> None:
    def rank_main(ctx):
        step_module.run(ctx, job, dict(table), out, Manifest(out, ctx.rank))

    FakeWorld(world).run(rank_main)


def assert_same_scores(got, ref) -> None:
    assert got.scores.shape == ref.scores.shape == (96, len(TARGETS))
    assert got.n_models == ref.n_models == 3
    torch.testing.assert_close(got.out_to_loss, ref.out_to_loss)
    scale = float(ref.scores.abs().max())
    torch.testing.assert_close(got.scores / scale, ref.scores / scale, rtol=1e-4, atol=1e-5)
    assert got.grad_dims == ref.grad_dims and got.grad_params == ref.grad_params


def load(out: Path):
    return rw.attribution.TRAKResult.load(out / "results/trak/scores.safetensors")


@pytest.mark.parametrize(
    "world,shard",
    [(1, "auto"), (2, "checkpoints"), (3, "auto"), (2, "samples"), (4, "checkpoints")],
)
def test_ensemble_step_equals_one_process(ensemble, tmp_path, world, shard):
    job, ref = ensemble
    run_world(job, step(shard=shard), tmp_path, world)
    assert_same_scores(load(tmp_path), ref)
    keys = Manifest(tmp_path).keys("trak")
    by_checkpoint = shard != "samples"
    assert step_module.split_by_checkpoint(shard, 3, world) == by_checkpoint
    assert {k for k in keys if k.startswith("checkpoint:")} == (
        {"checkpoint:0", "checkpoint:1", "checkpoint:2"} if by_checkpoint else set()
    )
    partials = sorted(p.name for p in (tmp_path / "work/trak").glob("partial-*"))
    expected = [f"partial-w{world}-r{r}.safetensors" for r in range(min(world, 3))]
    assert partials == (expected if by_checkpoint else [])


def test_auto_splits_by_samples_with_fewer_checkpoints_than_ranks():
    assert step_module.split_by_checkpoint("auto", 2, 3) is False
    assert step_module.split_by_checkpoint("auto", 3, 3) is True
    assert step_module.split_by_checkpoint("auto", 1, 1) is False  # one model: by samples
    assert step_module.split_by_checkpoint("checkpoints", 1, 4) is True


class Stopped(Exception):
    """A run stopped part way."""


def test_resume_skips_recorded_checkpoints(ensemble, tmp_path, monkeypatch):
    """A run stopped before rank 0's second checkpoint; the rerun computes only that
    one, and the scores are those of the one-process ensemble."""
    job, ref = ensemble
    real = step_module._one_checkpoint
    calls: list[int] = []

    def stop_at_two(sess, model, train, targets, cfg, folder, progress):
        c = int(cfg.seed) - int(rw.attribution.TRAKConfig().seed)
        if c == 2:
            raise Stopped("stopped")
        return real(sess, model, train, targets, cfg, folder, progress)

    monkeypatch.setattr(step_module, "_one_checkpoint", stop_at_two)
    with pytest.raises(Stopped):
        run_world(job, step(shard="checkpoints"), tmp_path, 2)
    assert Manifest(tmp_path).keys("trak") == {"checkpoint:0", "checkpoint:1"}
    assert not (tmp_path / "results/trak/scores.safetensors").exists()

    def counting(sess, model, train, targets, cfg, folder, progress):
        calls.append(int(cfg.seed) - int(rw.attribution.TRAKConfig().seed))
        return real(sess, model, train, targets, cfg, folder, progress)

    monkeypatch.setattr(step_module, "_one_checkpoint", counting)
    run_world(job, step(shard="checkpoints"), tmp_path, 2)
    assert calls == [2]
    assert_same_scores(load(tmp_path), ref)


@pytest.mark.parametrize(
    "extra,error,named",
    [
        ({"shard": "ranks"}, ValueError, "shard must be one of"),
        ({"checkpoints": ["ck0.pt", "missing.pt"]}, FileNotFoundError, "missing.pt"),
        ({"checkpoints": "ck0.pt"}, ValueError, "non-empty list"),
    ],
)
def test_bad_settings_fail_before_work(ensemble, tmp_path, extra, error, named):
    job, _ = ensemble
    with pytest.raises(error, match=named):
        step_module.check(job, step(**extra))

    class NoSession(EnsembleJob):
        def session(self, ctx=None):
            raise AssertionError("work started before the settings were checked")

    with pytest.raises(error, match=named):
        run_world(NoSession(job.path.parent), step(**extra), tmp_path, 2)


def test_job_file_names_checkpoints_beside_it(ensemble, tmp_path):
    """``repwidgets run job.toml`` on one process: checkpoint paths are read from the job
    file's folder, the job's model gives the architecture, and the scores are the
    one-process ensemble's."""
    import shutil

    from repwidgets.distributed.context import Context
    from repwidgets.distributed.runner import run_job
    from tests.distributed_job import write_job

    job, ref = ensemble
    (tmp_path / "ckpt").mkdir()
    for i in range(3):
        shutil.copy(job.path.parent / f"ck{i}.pt", tmp_path / "ckpt" / f"ck{i}.pt")
    table = step(checkpoints=[f"ckpt/ck{i}.pt" for i in range(3)])
    path = write_job(tmp_path, steps=[table], layers=["features.conv2"])
    out = run_job(path, Context.single())
    assert_same_scores(load(out), ref)
    assert Manifest(out).keys("trak") >= {"checkpoint:0", "checkpoint:1", "checkpoint:2"}


def test_weights_that_do_not_fit_fail_before_work(ensemble, tmp_path, monkeypatch):
    job, _ = ensemble
    torch.save(tiny_model(seed=0, width=4).state_dict(), tmp_path / "narrow.pt")
    table = step(checkpoints=["ck0.pt", str(tmp_path / "narrow.pt")])

    def no_work(*args, **kwargs):
        raise AssertionError("a checkpoint was featurised before every one was loaded")

    monkeypatch.setattr(step_module, "_one_checkpoint", no_work)
    with pytest.raises(rw.models.CheckpointError, match="narrow.pt|shape"):
        run_world(job, table, tmp_path / "out", 2)
