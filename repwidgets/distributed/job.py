"""A distributed job's description, read from a TOML file.

The file names the model, the data, the layers, the session's options, the output
folder and the steps::

    output = "runs/shapes"            # relative to the job file's folder
    layers = ["features.conv3"]

    [model]
    factory = "mypkg.models:build"    # a function returning an nn.Module
    # or: checkpoint = "best.pt" with architecture = "resnet" (repwidgets.models registry)
    # or: demo = true (the embedded default model)

    [data]
    factory = "mypkg.data:build"      # returns what rw.Session accepts as data
    # or: demo = true (the embedded shapes data)

    [session]
    batch_size = 256
    pool = "mean"
    precision = "auto"

    [[steps]]
    name = "extract"

    [[steps]]
    name = "invert"
    length = 3                        # settings: the engine's config overrides

``[model]`` and ``[data]`` may hold a ``kwargs`` table passed to the factory.
``[session]`` takes ``batch_size``, ``pool`` (of the stored activations: "mean", "max"
or "cls"), ``precision``, ``memory_budget_mb``, ``neuron_axis`` and ``output`` (where
the logits are in the model's output), as :class:`~repwidgets.session.Session` does. Every
rank builds the model and the data itself, so factories must be deterministic
(seeded); the runner checks that the ranks' weights agree.

Example:
    >>> job = Job.load("job.toml")                  # doctest: +SKIP
    >>> sess = job.session(Context.single())        # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from repwidgets.distributed.context import Context
from repwidgets.distributed.steps import STEPS, unknown_step_message
from repwidgets.layouts import POOLS
from repwidgets.session import PRECISIONS, Session

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as the tomli package
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        tomllib = None

__all__ = ["Job", "JobError", "import_factory"]

_TOP = ("output", "layers", "model", "data", "session", "steps")
_MODEL = ("factory", "kwargs", "checkpoint", "architecture", "demo")
_DATA = ("factory", "kwargs", "demo")
_SESSION = ("batch_size", "pool", "precision", "memory_budget_mb", "neuron_axis", "output")


class JobError(ValueError):
    """A job file that cannot be run as written (the message says what to change)."""


def _unknown_keys(table: Mapping, allowed: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise JobError(f"Unknown key {key!r} in {where}.{hint} Allowed: {', '.join(allowed)}.")


def import_factory(spec: str, where: str) -> Callable[..., Any]:
    """The function named by ``"package.module:function"`` (``where`` names the key in
    errors, e.g. ``"[model] factory"``)."""
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise JobError(f'{where} must look like "package.module:function", got {spec!r}.')
    module_name, attr = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise JobError(f"{where} = {spec!r}: cannot import {module_name!r} ({exc}).") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise JobError(f"{where} = {spec!r}: module {module_name!r} has no function {attr!r}.")
    return fn


@dataclass
class Job:
    """A parsed job file (see the module docstring for the format).

    Attributes:
        path: the job file (None for a job built from a dict).
        output: the output folder (absolute).
        layers: the layers the steps look at.
        model, data, session_options: the ``[model]``, ``[data]`` and ``[session]`` tables.
        steps: the ``[[steps]]`` tables, in order, each with its ``name``.
    """

    path: Path | None
    output: Path
    layers: list[str]
    model: dict[str, Any]
    data: dict[str, Any]
    session_options: dict[str, Any]
    steps: list[dict[str, Any]]
    _sessions: dict[str, Session] = field(default_factory=dict, repr=False, compare=False)

    # --- parsing ------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike) -> Job:
        """Read and check the job file at ``path`` (a JobError says what is wrong)."""
        path = Path(path).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"No job file at {path}.")
        if tomllib is None:
            raise ImportError("Reading a job file on Python 3.10 needs tomli: pip install tomli.")
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise JobError(f"{path} is not valid TOML: {exc}.") from exc
        return cls.from_dict(raw, base=path.parent, path=path)

    @classmethod
    def from_dict(
        cls, raw: Mapping[str, Any], base: str | os.PathLike = ".", path: Path | None = None
    ) -> Job:
        """A job from the parsed TOML ``raw``; relative paths are taken from ``base``."""
        base = Path(base).resolve()
        _unknown_keys(raw, _TOP, "the job file")
        for key in ("output", "layers", "model", "data", "steps"):
            if key not in raw:
                raise JobError(f"The job file needs {_EXAMPLES[key]}")
        layers = raw["layers"]
        if (
            not isinstance(layers, list)
            or not layers
            or not all(isinstance(x, str) for x in layers)
        ):
            raise JobError(f"layers must be a non-empty list of layer names, got {layers!r}.")
        model, data = dict(raw["model"]), dict(raw["data"])
        _unknown_keys(model, _MODEL, "[model]")
        _unknown_keys(data, _DATA, "[data]")
        sources = [k for k in ("factory", "checkpoint", "demo") if k in model]
        if len(sources) != 1:
            raise JobError(
                '[model] needs exactly one of factory = "pkg.mod:function", checkpoint = '
                '"path" (with architecture = "name") or demo = true; got '
                f"{sources or 'none'}."
            )
        if "checkpoint" in model:
            if "architecture" not in model:
                raise JobError('[model] checkpoint needs architecture = "name" to build the model.')
            model["checkpoint"] = str((base / model["checkpoint"]).resolve())
        if len([k for k in ("factory", "demo") if k in data]) != 1:
            raise JobError('[data] needs factory = "pkg.mod:function" or demo = true.')
        session = dict(raw.get("session", {}))
        _unknown_keys(session, _SESSION, "[session]")
        if session.get("pool", "mean") not in [p for p in POOLS if p is not None]:
            raise JobError(
                f"[session] pool must be one of {[p for p in POOLS if p]}, got "
                f"{session.get('pool')!r} (the store keeps pooled activations)."
            )
        if session.get("precision", "auto") not in PRECISIONS:
            raise JobError(f"[session] precision must be one of {PRECISIONS}.")
        steps = raw["steps"]
        if not isinstance(steps, list) or not steps:
            raise JobError("steps must be one or more [[steps]] tables, each with a name.")
        for i, step in enumerate(steps):
            if not isinstance(step, Mapping) or "name" not in step:
                raise JobError(
                    f'[[steps]] number {i + 1} needs name = "<step>" ({", ".join(STEPS)}).'
                )
            if step["name"] not in STEPS:
                raise JobError(f"[[steps]] number {i + 1}: {unknown_step_message(step['name'])}")
        if str(base) not in sys.path:  # factories may live beside the job file
            sys.path.append(str(base))
        return cls(
            path=path,
            output=(base / str(raw["output"])).resolve(),
            layers=list(layers),
            model=model,
            data=data,
            session_options=session,
            steps=[dict(s) for s in steps],
        )

    # --- what the steps use --------------------------------------------------------------
    @property
    def pool(self) -> str:
        """The pooling of the stored activations (``[session] pool``, default "mean")."""
        return str(self.session_options.get("pool", "mean"))

    def step_ids(self) -> list[str]:
        """A name per step for the manifest: the step's name, ``name-<i>`` when repeated."""
        names = [s["name"] for s in self.steps]
        return [n if names.count(n) == 1 else f"{n}-{i}" for i, n in enumerate(names)]

    def fingerprint(self) -> str:
        """A hash of what decides the activations (model, data, layers, session options):
        a job whose fingerprint differs must not resume another job's output."""
        what = [self.model, self.data, self.layers, self.session_options]
        return hashlib.sha1(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def build_data(self):
        """The data, as the ``[data]`` table says."""
        kwargs = dict(self.data.get("kwargs", {}))
        if self.data.get("demo"):
            from repwidgets import datasets

            return datasets.shapes(**kwargs)
        return import_factory(self.data["factory"], "[data] factory")(**kwargs)

    def build_model(self, data) -> nn.Module:
        """The model, as the ``[model]`` table says (``data`` sizes a registry model)."""
        kwargs = dict(self.model.get("kwargs", {}))
        if self.model.get("demo"):
            from repwidgets import models

            return models.demo_model(data, progress=False, **kwargs)
        if "checkpoint" in self.model:
            return _from_checkpoint(self.model["architecture"], self.model["checkpoint"], data)
        model = import_factory(self.model["factory"], "[model] factory")(**kwargs)
        if not isinstance(model, nn.Module):
            raise JobError(
                f"[model] factory = {self.model['factory']!r} returned "
                f"{type(model).__name__}, not a torch.nn.Module."
            )
        return model

    def session(self, ctx: Context) -> Session:
        """The session on ``ctx.device`` (built once per device), reading the job's store."""
        key = str(ctx.device)
        if key not in self._sessions:
            data = self.build_data()
            model = self.build_model(data)
            options = {k: v for k, v in self.session_options.items() if k != "pool"}
            options.setdefault("precision", "auto")
            self._sessions[key] = Session(
                model,
                data,
                device=ctx.device,
                progress=ctx.is_main,
                store=self.output / "store",
                **options,
            )
        return self._sessions[key]


_EXAMPLES = {
    "output": 'output = "folder" (where the store, results and manifest go).',
    "layers": 'layers = ["layer.name", ...] (the layers the steps look at).',
    "model": 'a [model] table with factory = "pkg.mod:function" (or checkpoint + architecture).',
    "data": 'a [data] table with factory = "pkg.mod:function" (or demo = true).',
    "steps": 'one or more [[steps]] tables, e.g. [[steps]] name = "extract".',
}


def _from_checkpoint(architecture: str, checkpoint: str, data) -> nn.Module:
    from repwidgets.datasets import as_bundle
    from repwidgets.models import load_weights, zoo, zoo_extra

    if architecture not in zoo_extra.names():
        close = difflib.get_close_matches(architecture, zoo_extra.names(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise JobError(
            f"[model] architecture {architecture!r} is not registered.{hint} "
            f'Registered: {", ".join(zoo_extra.names())}; or use factory = "pkg.mod:function".'
        )
    bundle = as_bundle(data)
    entry = zoo_extra.entry(architecture)
    model = entry.builder(bundle.n_classes, zoo._input_channels(bundle), **entry.model_config)
    return load_weights(model, checkpoint, map_location=torch.device("cpu"))
