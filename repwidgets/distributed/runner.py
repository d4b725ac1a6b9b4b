"""Run a job file's steps on this rank: the loop behind ``repwidgets run job.toml``.

Every rank parses the job, builds the session (its own copy of the model and data,
on its device), checks that all ranks hold the same weights, then runs the steps in
order. A step the manifest marks done is skipped; after a step every rank meets at a
barrier and the main rank marks it done, noting the step's seconds and the bytes each
rank sent in collectives (the figures ``benchmarks/bench_distributed.py`` reports). Steps themselves skip their finished units,
so a job killed at any moment and started again ends as an uninterrupted run would.

Example:
    >>> run_job("job.toml")                       # doctest: +SKIP
    >>> # torchrun --nproc-per-node 4 -m repwidgets run job.toml
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import torch

from repwidgets.atomic import atomic_write_text
from repwidgets.distributed.context import Context
from repwidgets.distributed.job import Job, JobError
from repwidgets.distributed.manifest import Manifest
from repwidgets.distributed.steps import load_step

__all__ = ["run_job", "weights_digest"]


def weights_digest(model: torch.nn.Module) -> str:
    """A hash of a model's parameters and buffers (to check that ranks agree)."""
    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


def _claim_output(ctx: Context, job: Job) -> None:
    """Refuse an output folder written by a job with another model, data or layers."""
    path = job.output / "job.json"
    problem = None
    if ctx.is_main:
        if path.exists():
            old = json.loads(path.read_text()).get("fingerprint")
            if old != job.fingerprint():
                problem = (
                    f"The output folder {job.output} holds the results of another job (its "
                    "model, data, layers or session options differ). Choose another output or "
                    "delete that folder."
                )
        else:
            text = {"fingerprint": job.fingerprint(), "job": str(job.path)}
            atomic_write_text(path, json.dumps(text, indent=1))
    problem = ctx.broadcast_object(problem)
    if problem:
        raise JobError(problem)


def _check_same_weights(ctx: Context, job: Job) -> None:
    digests = ctx.all_gather_object(weights_digest(job.session(ctx).model))
    if len(set(digests)) > 1:
        raise JobError(
            f"The ranks built different model weights ({digests}): make the [model] factory "
            "deterministic (seed it) or load a checkpoint."
        )


def run_job(path: str | os.PathLike, ctx: Context | None = None) -> Path:
    """Run the job file at ``path`` on this rank; returns the job's output folder.

    Args:
        path: the job file (see :mod:`repwidgets.distributed.job`).
        ctx: this rank's context; default :meth:`Context.from_env` (torchrun's
            variables, or one process), closed at the end when made here.

    Every step's settings are checked before any step runs. Progress (bars, step
    lines) shows on the main rank only.
    """
    own = ctx is None
    ctx = ctx or Context.from_env()
    try:
        job = Job.load(path)
        modules = [load_step(step["name"]) for step in job.steps]
        for module, step in zip(modules, job.steps):
            if hasattr(module, "check"):
                module.check(job, step)
        _claim_output(ctx, job)
        _check_same_weights(ctx, job)
        manifest = Manifest(job.output, ctx.rank)
        for step_id, module, step in zip(job.step_ids(), modules, job.steps):
            if ctx.broadcast_object(manifest.step_done(step_id)):
                _say(ctx, f"{step_id}: done earlier, skipped")
                continue
            start, sent = time.perf_counter(), ctx.bytes_communicated
            module.run(ctx, job, step, job.output, manifest)
            ctx.barrier()
            seconds = round(time.perf_counter() - start, 3)
            by_rank = ctx.all_gather_object(ctx.bytes_communicated - sent)
            if ctx.is_main:
                manifest.mark_step_done(
                    step_id, seconds=seconds, world=ctx.world, bytes_sent_by_rank=by_rank
                )
            _say(ctx, f"{step_id}: {time.perf_counter() - start:.1f} s")
        ctx.barrier()
        return job.output
    finally:
        if own:
            ctx.close()


def _say(ctx: Context, line: str) -> None:
    if ctx.is_main:
        print(f"[repwidgets run] {line}", flush=True)
