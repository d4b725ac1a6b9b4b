"""The ``trak`` step: TRAK scores with the training set featurised on all ranks.

TRAK's cost is the featurisation: one per-sample gradient, projected to ``proj_dim``
numbers, for every training sample. The training rows are cut into chunks of the
feature store (:class:`~repwidgets.engines.attribution.FeatureStore`, one file per
chunk), and each rank featurises a contiguous run of chunks, writing only its own
files; a chunk is recorded in the manifest once its file is flushed and its Q terms
(out-to-loss) are saved, so a killed job featurises only the missing chunks again.
Then:

1. each rank sums ``Phi_r^T Phi_r`` [p, p] over its chunks (float64, read back from
   its files) and the kernels are all-reduced (``p^2`` numbers per rank);
2. every rank factorises ``K = Phi^T Phi + ridge I`` (the same matrix everywhere),
   featurises its share of the targets and solves ``A_r = K^-1 Phi_target,r^T``;
   the ``A_r`` [p, m_r] are gathered, so every rank holds ``A`` [p, m];
3. each rank scores its own training rows, ``Phi_r A``, into a file, and the main
   rank reads the rows and the Q terms of every rank (the output folder is shared by
   the ranks, as the manifest is) and multiplies them: the scores of
   :func:`~repwidgets.engines.attribution.trak_scores` with one model, up to the
   order of the kernel's sums.

With more features than training samples (``proj_dim`` None on a large model) the
kernel is the dual ``Phi Phi^T`` [n, n]: the main rank computes it from every
rank's chunk files (the output folder must then be shared by the ranks) and scores
alone.

Job file:

.. code-block:: toml

    [[steps]]
    name = "trak"
    proj_dim = 512           # any TRAKConfig setting
    train_split = "train"    # default; n_train = 1000 takes the first rows only
    target_split = "test"    # default; targets = [0, 5, 9] picks target samples

An ensemble (``checkpoints = ["a.pt", "b.pt", ...]``: weights files, relative to the
job file, loaded with ``weights_only=True`` into copies of the job's model; default the
job's one model) is the engine's unweighted ensemble: ``S = mean_c(Phi_c K_c^-1
Phi_c,target^T) * mean_c(Q_c)``, checkpoint ``c`` projected with ``seed + c``. It is
split one of two ways (``shard``):

* ``"checkpoints"``: rank ``r`` takes checkpoints ``r, r + R, ...`` and runs the whole
  one-process featurisation and solve for each (no communication; every rank reads
  the whole training set once per checkpoint). After each checkpoint it adds the
  kernel products [n, m] and the Q terms [n] to its running sums in
  ``<work>/partial-w<R>-r<r>.safetensors`` (atomic, with the checkpoints they hold)
  and records the checkpoint, so a rerun skips it; the main rank adds the ranks' sums.
* ``"samples"``: the path above, once per checkpoint (the ranks share each
  checkpoint's pass over the data, and all-reduce one ``p x p`` kernel per
  checkpoint); the main rank sums the kernel products and Q terms.
* ``"auto"`` (default): by checkpoint when there are several checkpoints and at least
  as many as ranks, else by samples (so the job's one model is split by samples, also
  on one process, where a killed run resumes chunk by chunk).

.. code-block:: toml

    [[steps]]
    name = "trak"
    proj_dim = 512
    checkpoints = ["ckpt/epoch10.pt", "ckpt/epoch20.pt", "ckpt/epoch30.pt"]
    shard = "auto"

The result, a :class:`~repwidgets.engines.attribution.TRAKResult`, is saved to
``<out>/results/trak/scores.safetensors``.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from repwidgets._progress import progress_counter
from repwidgets.atomic import atomic_write_text
from repwidgets.distributed.context import shard_range
from repwidgets.engines.attribution.config import TRAKConfig
from repwidgets.engines.attribution.data import collate, loader
from repwidgets.engines.attribution.featurize import Featurizer
from repwidgets.engines.attribution.outputs import as_output_fn
from repwidgets.engines.attribution.solve import Checkpoint, dual_gram, kernel_dtype, scores_one
from repwidgets.engines.attribution.store import FeatureStore
from repwidgets.engines.attribution.trak import TRAK, TRAKResult
from repwidgets.models.checkpoint import load_weights

from ._parts import engine_overrides, load_tensors, save_tensors, show_progress, step_id

__all__ = [
    "NAME",
    "RESULT",
    "SHARDS",
    "check",
    "checkpoint_paths",
    "run",
    "split_by_checkpoint",
    "trak_by_checkpoint",
    "trak_sharded",
]

NAME = "trak"
#: The result's file name under ``<out>/results/trak/``.
RESULT = "scores"
_OWN = ("train_split", "target_split", "n_train", "targets", "checkpoints", "shard")
#: How an ensemble is split over ranks (see the module docstring).
SHARDS = ("auto", "samples", "checkpoints")
_GRAM_ROWS = 4096  # rows per float64 product when summing a chunk's kernel


def check(job: Any, step: dict) -> None:
    """Raise for unknown or bad settings before any step runs (names get "did you mean";
    an unknown ``shard`` or a missing checkpoint file is named with the fix)."""
    TRAKConfig.resolve(None, engine_overrides(step, _OWN))
    for key in ("train_split", "target_split"):
        if not isinstance(step.get(key, "train"), str):
            raise ValueError(f"{key} must be a split name, got {step[key]!r}.")
    if step.get("shard", "auto") not in SHARDS:
        raise ValueError(
            f"trak shard must be one of {', '.join(repr(s) for s in SHARDS)}, got "
            f"{step['shard']!r}: 'checkpoints' gives each rank whole checkpoints, 'samples' "
            "shares every checkpoint's training samples out, 'auto' picks."
        )
    checkpoint_paths(job, step)


def checkpoint_paths(job: Any, step: dict) -> list[Path | None]:
    """The step's checkpoint files (absolute, relative ones taken from the job file's
    folder), or ``[None]`` for the job's one model; raises for a missing file."""
    names = step.get("checkpoints")
    if names is None:
        return [None]
    if isinstance(names, str) or not isinstance(names, list) or not names:
        raise ValueError(
            'trak checkpoints must be a non-empty list of files, e.g. checkpoints = ["a.pt", '
            f'"b.pt"]; got {names!r}.'
        )
    job_file = getattr(job, "path", None)
    base = Path(job_file).resolve().parent if job_file else Path.cwd()
    paths = []
    for name in names:
        if not isinstance(name, str):
            raise ValueError(f"trak checkpoints must be file names, got {name!r}.")
        path = (base / name).resolve()
        if not path.is_file():
            raise FileNotFoundError(
                f"trak checkpoint {name!r} not found (looked for {path}); checkpoint paths are "
                "relative to the job file's folder."
            )
        paths.append(path)
    return paths


def split_by_checkpoint(shard: str, n_checkpoints: int, world: int) -> bool:
    """Whether ``shard`` splits the ensemble by checkpoint on ``world`` ranks ("auto":
    when there are several checkpoints and every rank gets at least one; one model is
    split by samples, which also resumes a killed run chunk by chunk)."""
    if shard == "auto":
        return n_checkpoints > 1 and world <= n_checkpoints
    return shard == "checkpoints"


def run(ctx: Any, job: Any, step: dict, out: Path, manifest: Any) -> None:
    """TRAK scores of the training split for the targets; the result in
    ``<out>/results/trak/scores.safetensors``.

    Args:
        ctx, job, out, manifest: as for every step (see :mod:`repwidgets.distributed.steps`).
        step: the step's table: settings of :class:`TRAKConfig`, plus ``train_split``,
            ``target_split``, ``n_train`` (the first rows of the training split),
            ``targets`` (indices into the target split; default all of it),
            ``checkpoints`` (an ensemble's weights files) and ``shard``.
    """
    name = step_id(job, step)
    check(job, step)
    cfg = TRAKConfig.resolve(None, engine_overrides(step, _OWN))
    paths = checkpoint_paths(job, step)
    key = f"{RESULT}:result"
    if manifest.done(name, key):
        return
    sess = job.session(ctx)
    for path in paths:  # weights that do not fit the job's model fail before any work
        _model(sess, path)
    train, targets = _datasets(sess, step)
    work = Path(out) / "work" / name
    if split_by_checkpoint(str(step.get("shard", "auto")), len(paths), ctx.world):
        result = trak_by_checkpoint(
            ctx, sess, train, targets, cfg, paths, manifest=manifest, work=work, name=name
        )
    else:
        result = trak_sharded(
            ctx, sess, train, targets, cfg, manifest=manifest, work=work, name=name, paths=paths
        )
    if ctx.is_main:
        path = Path(out) / "results" / name / f"{RESULT}.safetensors"
        result.save(path)
        manifest.record(name, key, path=str(path.relative_to(out)))
    ctx.barrier()


def _datasets(sess: Any, step: dict) -> tuple[Dataset, Dataset]:
    """The training set and the targets the step's settings pick from the session."""
    train = sess.dataset(str(step.get("train_split", "train")))
    if step.get("n_train") is not None:
        n_train = int(step["n_train"])
        if not 1 <= n_train <= len(train):
            raise ValueError(f"n_train must be in [1, {len(train)}], got {n_train}.")
        train = Subset(train, list(range(n_train)))
    targets = sess.dataset(str(step.get("target_split", "test")))
    if step.get("targets") is not None:
        picked = [int(i) for i in step["targets"]]
        bad = [i for i in picked if not 0 <= i < len(targets)]
        if bad or not picked:
            raise ValueError(
                f"targets must be indices in [0, {len(targets)}) of the target split; "
                f"got {bad[:10] or 'none'}."
            )
        targets = Subset(targets, picked)
    return train, targets


def _model(sess: Any, path: Path | None) -> torch.nn.Module:
    """The session's model, or a copy of it holding the weights at ``path``."""
    if path is None:
        return sess.model
    return load_weights(copy.deepcopy(sess.model), path, map_location=torch.device("cpu"))


def trak_sharded(
    ctx: Any,
    sess: Any,
    train: Dataset,
    targets: Dataset,
    cfg: TRAKConfig,
    *,
    manifest: Any,
    work: Path,
    name: str = NAME,
    paths: list[Path | None] | None = None,
) -> TRAKResult | None:
    """TRAK (the class margin) with the training chunks and the targets split over
    ranks, once per checkpoint (``paths``; default the session's model); the result on
    the main rank (None elsewhere). Every rank must call it (it reduces and gathers).

    Example:
        >>> r = trak_sharded(Context.single(), sess, train, targets, TRAKConfig(proj_dim=64),
        ...                  work=Path("out/work/trak"))  # doctest: +SKIP
    """
    paths = [None] if paths is None else list(paths)
    total = q = None
    dims: list[int] = []
    names: list[str] = []
    for c, path in enumerate(paths):
        one = len(paths) == 1
        part = _sharded_one(
            ctx,
            sess,
            _model(sess, path),
            train,
            targets,
            cfg.replace(seed=int(cfg.seed) + c),
            manifest=manifest,
            work=Path(work) if one else Path(work) / f"c{c:03d}",
            name=name,
            tag="" if one else f"c{c}_",
        )
        if part is None:
            continue
        total = part[0] if total is None else total + part[0]
        q = part[1] if q is None else q + part[1]
        dims.append(part[2])
        names = names or part[3]
    if not ctx.is_main:
        return None
    return _result(cfg, total, q, len(paths), dims, names, len(targets))


def _sharded_one(
    ctx: Any,
    sess: Any,
    model: torch.nn.Module,
    train: Dataset,
    targets: Dataset,
    cfg: TRAKConfig,
    *,
    manifest: Any,
    work: Path,
    name: str,
    tag: str = "",
) -> tuple[Tensor, Tensor, int, list[str]] | None:
    """One checkpoint, its samples split over ranks: on the main rank the kernel
    products ``Phi K^-1 Phi_target^T`` [n, m], the Q terms [n], the number of
    differentiated parameters and their names (None elsewhere). ``tag`` starts the
    feature store's name (and so its manifest keys), one per checkpoint."""
    device = torch.device(sess.device)
    fn = as_output_fn("margin")
    first = collate([train[0]])
    dtype = kernel_dtype(cfg.kernel_dtype, device)
    with fn.attached(model, device):
        feat = Featurizer(
            model,
            fn,
            cfg.grad_wrt,
            None if cfg.proj_dim is None else int(cfg.proj_dim),
            cfg.proj_kind,
            int(cfg.seed),
            device,
            sess.preprocess,
            (first[0][0], first[1][0]),
            cfg.proj_cache_mb,
            output=sess.output,
            chunk_mb=cfg.proj_chunk_mb,
        )
        n, p = len(train), feat.out_dim
        rows = min(int(cfg.chunk_rows), max(1, math.ceil(n / ctx.world)))
        store = FeatureStore(Path(work) / "features", f"{tag}train_r{rows}", n, p, chunk_rows=rows)
        mine = ctx.shard(store.n_chunks)
        bs = max(1, min(int(cfg.batch_size), int(cfg.memory_budget_mb * 2**20 // (feat.dim * 12))))
        _featurize(ctx, sess, feat, fn, train, store, mine, bs, manifest, Path(work), name)
        ck = Checkpoint(feat, store, torch.zeros(0), torch.zeros(0), dual=p > n)
        if ck.dual:
            ctx.barrier()  # every chunk file written: the main rank reads them all
            if not ctx.is_main:
                return None
            ck.gram = dual_gram(store, dtype, device)
            solve, _ = ck.solver(float(cfg.lam), bool(cfg.lam_relative))
            phi_t = _target_features(feat, targets, range(len(targets)), bs, device)
            total = scores_one(ck, phi_t, solve, n, dtype, device)
        else:
            ck.gram = ctx.all_reduce_sum(_own_gram(store, mine, dtype, device))
            solve, _ = ck.solver(float(cfg.lam), bool(cfg.lam_relative))
            t_rows = ctx.shard(len(targets))
            phi_t = _target_features(feat, targets, t_rows, bs, device)
            A_r = solve(phi_t.T).to(torch.float32).cpu() if len(t_rows) else torch.zeros(p, 0)
            A = torch.cat(ctx.all_gather_object(A_r), dim=1).to(device)
            own = [torch.as_tensor(np.asarray(store.chunk(k)), device=device) @ A for k in mine]
            own_scores = torch.cat(own).cpu() if own else torch.zeros(0, A.shape[1])
            save_tensors(_scores_path(work, store, mine), {"scores": own_scores})
            ctx.barrier()
            if not ctx.is_main:
                return None
            every = [shard_range(store.n_chunks, r, ctx.world) for r in range(ctx.world)]
            total = torch.cat([load_tensors(_scores_path(work, store, b))["scores"] for b in every])
    q = torch.cat([load_tensors(_q_path(work, store, k))["q"] for k in range(store.n_chunks)])
    return total, q, int(feat.dim), list(feat.names)


def _result(
    cfg: TRAKConfig,
    total: Tensor,
    q_sum: Tensor,
    n_models: int,
    dims: list[int],
    names: list[str],
    m: int,
) -> TRAKResult:
    """The engine's ensemble result from the kernel products and Q terms summed over
    ``n_models`` checkpoints: ``total / M * mean Q``."""
    q = q_sum / n_models
    return TRAKResult(
        scores=total / n_models * q[:, None],
        out_to_loss=q,
        n_models=n_models,
        proj_dim=None if cfg.proj_dim is None else int(cfg.proj_dim),
        proj_kind=cfg.proj_kind if cfg.proj_dim is not None else "none",
        lam=float(cfg.lam),
        lam_relative=bool(cfg.lam_relative),
        reduce=None,
        soft_threshold=None,
        n_targets=m,
        output="margin",
        grad_dims=[int(d) for d in dims],
        grad_params=list(names),
        seed=int(cfg.seed),
        params={**cfg.to_dict(), "reduce": None, "soft_threshold": None},
    )


def trak_by_checkpoint(
    ctx: Any,
    sess: Any,
    train: Dataset,
    targets: Dataset,
    cfg: TRAKConfig,
    paths: list[Path | None],
    *,
    manifest: Any,
    work: Path,
    name: str = NAME,
) -> TRAKResult | None:
    """TRAK over an ensemble with whole checkpoints dealt to the ranks (rank ``r``:
    checkpoints ``r, r + R, ...``), each run as on one process; the result on the main
    rank (None elsewhere). Every rank must call it (it meets the others once).

    A rank keeps its running sums (kernel products [n, m], Q terms [n], and which
    checkpoints they hold) in one file, rewritten atomically after each checkpoint and
    then recorded in the manifest; a rerun skips the checkpoints the file holds.

    Example:
        >>> r = trak_by_checkpoint(Context.single(), sess, train, targets, TRAKConfig(),
        ...                        [Path("a.pt"), Path("b.pt")], manifest=Manifest("out"),
        ...                        work=Path("out/work/trak"))  # doctest: +SKIP
    """
    work = Path(work)
    mine = range(ctx.rank, len(paths), ctx.world)
    part_path = _partial_path(work, ctx.world, ctx.rank)
    part = load_tensors(part_path) if part_path.exists() else None
    held = [] if part is None else [int(c) for c in part["checkpoints"]]
    show = show_progress(ctx, sess)
    for c in mine:
        key = f"checkpoint:{c}"
        if c in held:
            if not manifest.done(name, key):  # killed between the file and the record
                manifest.record(name, key, world=ctx.world)
            continue
        folder = work / f"features-c{c:03d}"
        shutil.rmtree(folder, ignore_errors=True)  # what a killed run left
        total, q, dim, names = _one_checkpoint(
            sess, _model(sess, paths[c]), train, targets, cfg.replace(seed=int(cfg.seed) + c),
            folder, show,
        )  # fmt: skip
        if c == 0:
            atomic_write_text(work / "grad-params.json", json.dumps(names))
        if part is not None:
            total, q = total + part["total"], q + part["q"]
            dim = torch.cat([part["grad_dims"], torch.tensor([dim])])
        held.append(c)
        part = {
            "total": total,
            "q": q,
            "checkpoints": torch.tensor(held, dtype=torch.int64),
            "grad_dims": torch.as_tensor(dim, dtype=torch.int64).reshape(-1),
        }
        save_tensors(part_path, part)
        manifest.record(name, key, world=ctx.world)
        shutil.rmtree(folder, ignore_errors=True)
    ctx.barrier()  # every rank's sums written (the output folder is shared)
    if not ctx.is_main:
        return None
    total = q = None
    dims = [0] * len(paths)
    for r in range(min(ctx.world, len(paths))):
        got = load_tensors(_partial_path(work, ctx.world, r))
        held = [int(c) for c in got["checkpoints"]]
        if sorted(held) != list(range(r, len(paths), ctx.world)):
            raise RuntimeError(f"Rank {r}'s TRAK sums hold checkpoints {held}; expected its own.")
        for c, d in zip(held, got["grad_dims"].tolist()):
            dims[c] = int(d)
        total = got["total"] if total is None else total + got["total"]
        q = got["q"] if q is None else q + got["q"]
    names = json.loads((work / "grad-params.json").read_text())
    return _result(cfg, total, q, len(paths), dims, names, len(targets))


def _partial_path(work: Path, world: int, rank: int) -> Path:
    """Rank ``rank``'s running sums over its checkpoints (on ``world`` ranks)."""
    return Path(work) / f"partial-w{world}-r{rank}.safetensors"


def _one_checkpoint(
    sess: Any,
    model: torch.nn.Module,
    train: Dataset,
    targets: Dataset,
    cfg: TRAKConfig,
    folder: Path,
    progress: bool,
) -> tuple[Tensor, Tensor, int, list[str]]:
    """One checkpoint as on one process (the engine's :class:`TRAK`): its kernel
    products [n, m], Q terms [n], number of differentiated parameters and their names."""
    trak = TRAK(
        model,
        "margin",
        cfg,
        device=sess.device,
        feature_dir=folder,
        preprocess=sess.preprocess,
        progress=progress,
        output=sess.output,
    )
    try:
        trak.featurize(train)
        ck = trak.checkpoints[0]
        phi_t = trak.target_features(0, targets)
        solve, _ = ck.solver(float(cfg.lam), bool(cfg.lam_relative))
        total = scores_one(ck, phi_t, solve, len(train), trak.kernel_dtype, trak.device)
        return total, ck.q.clone(), int(ck.featurizer.dim), list(ck.featurizer.names)
    finally:
        trak.close()


def _featurize(
    ctx: Any,
    sess: Any,
    feat: Featurizer,
    fn,
    train: Dataset,
    store: FeatureStore,
    mine: range,
    bs: int,
    manifest: Any,
    work: Path,
    name: str,
) -> None:
    """Featurise this rank's chunks (skipping recorded ones), each with its Q terms."""
    todo = sum(len(store.chunk_range(k)) for k in mine)
    show = show_progress(ctx, sess)
    with progress_counter(todo, "TRAK features", show, unit="sample") as bar:
        for k in mine:
            key = f"features:{store.name}:{k}"
            q_path = _q_path(work, store, k)
            if manifest.done(name, key) and q_path.exists():
                bar.update(len(store.chunk_range(k)))
                continue
            store.discard(k)  # a chunk file left by a killed run is written afresh
            rows = store.chunk_range(k)
            q = torch.empty(len(rows), dtype=torch.float32)
            done = 0
            for x, y in loader(Subset(train, list(rows)), bs):
                phi, out = feat(x, y)
                store.write(rows.start + done, phi)
                q[done : done + len(out)] = fn.out_to_loss(out, y.to(out.device)).cpu()
                done += len(out)
                bar.update(len(out))
            store.chunk(k)  # flushed before the record
            save_tensors(q_path, {"q": q})
            manifest.record(name, key, rows=[rows.start, rows.stop])


def _q_path(work: Path, store: FeatureStore, k: int) -> Path:
    """The file of chunk ``k``'s Q terms (out-to-loss) [rows]."""
    return Path(work) / f"q-{store.name}-{k:05d}.safetensors"


def _scores_path(work: Path, store: FeatureStore, chunks: range) -> Path:
    """The file of the scores [rows, m] of the training rows of ``chunks``."""
    return Path(work) / f"scores-{store.name}-{chunks.start}-{chunks.stop}.safetensors"


def _own_gram(store: FeatureStore, mine: range, dtype: torch.dtype, device) -> Tensor:
    """``Phi_r^T Phi_r`` [p, p] over this rank's chunks, read back from its files."""
    gram = torch.zeros(store.dim, store.dim, dtype=torch.float64, device=device)
    for k in mine:
        chunk = store.chunk(k)
        for lo in range(0, chunk.shape[0], _GRAM_ROWS):
            block = torch.as_tensor(np.asarray(chunk[lo : lo + _GRAM_ROWS]), device=device)
            block = block.to(torch.float64)
            gram.addmm_(block.T, block)
    return gram.to(dtype)


def _target_features(feat: Featurizer, targets: Dataset, rows: range, bs: int, device) -> Tensor:
    """Features [len(rows), p] of the targets ``rows`` (on ``device``)."""
    if len(rows) == 0:
        return torch.zeros(0, feat.out_dim, device=device)
    parts = [feat(x, y)[0] for x, y in loader(Subset(targets, list(rows)), bs)]
    return torch.cat(parts)
