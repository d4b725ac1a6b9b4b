"""The Session: the one owner of a model, its data, the device, hooks and caches.

Engines and widgets never run the model themselves: they ask the session for
activations, logits, labels and thumbnails, which it computes once and caches.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import io
import math
import os
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from repwidgets._progress import bars_enabled, progress_bar
from repwidgets.cache import cache_dir
from repwidgets.datasets.batches import (
    SpillFile,
    available_memory,
    batch_loader,
    batch_size_for,
    discard_unfinished,
    finished_tensor,
    finite_checked,
    prefetched,
)
from repwidgets.datasets.bundle import class_id
from repwidgets.distributed.store import ActivationStore
from repwidgets.hooks import Capture, StopForward, hooked
from repwidgets.layouts import POOLS, Layout, choose_axis, feature_width, normalise_axis

_PENULTIMATE = "<penultimate>"
_LOGITS = "<logits>"
_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Tanh, nn.Sigmoid)

PRECISIONS = ("auto", "float32", "tf32", "bf16")
#: The largest relative error of activations and logits computed at each precision:
#: ``||A - A32|| / ||A32||`` (Frobenius norms over the whole [n, C] result) against the
#: same model in float32 on the CPU. The ``gpu`` tests hold the session to it.
PRECISION_TOLERANCE = {"float32": 1e-4, "tf32": 1e-2, "bf16": 4e-2}
_CPU_BATCH = 256  # the most samples per pass on the CPU (more does not run faster there)
_GPU_BATCH = 1024


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"``: "bf16" on CUDA (bf16 autocast, TF32 for what stays float32), else
    "float32"; other names are checked and returned."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "float32"
    return precision


@contextlib.contextmanager
def _tf32(allowed: bool):
    """TF32 matmuls and convolutions on CUDA allowed (or not) in the block, then restored."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


@contextlib.contextmanager
def precision_context(precision: str, device: torch.device, enabled: bool = True):
    """The numerics of ``precision`` (see :data:`PRECISIONS`) on ``device`` for a block."""
    with contextlib.ExitStack() as stack:
        if enabled and device.type == "cuda":
            stack.enter_context(_tf32(precision != "float32"))
        if enabled and precision == "bf16":
            stack.enter_context(torch.autocast(device.type, dtype=torch.bfloat16))
        yield


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"`` into CUDA when present (else Apple's MPS, else the CPU)."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def pool_activations(output: torch.Tensor, pool: str | None, neuron_axis: int = 1) -> torch.Tensor:
    """Pool a layer output over every axis but the batch and the neurons (dim 1 unless
    ``neuron_axis`` says otherwise): ``[b, C]``; see :class:`repwidgets.layouts.Layout`."""
    if output.ndim < 2:
        return output
    layout = Layout(normalise_axis(neuron_axis, output.ndim), output.ndim)
    return layout.pool(output, pool)


def _pooled(output: torch.Tensor, layout: Layout, pool: str | None) -> torch.Tensor:
    return layout.pool(output.detach().float(), pool)


def _flat_features(inputs: torch.Tensor) -> torch.Tensor:
    return inputs.detach().flatten(1).float()


def _shape_recorder(name: str, shapes: dict, widths: dict, last: list):
    """A hook noting the per-sample shape of a module's (first) tensor output and the
    width of the last parametrised layer that ran up to it (see :mod:`repwidgets.layouts`)."""

    def record(module, _inputs, output):
        width = feature_width(module)
        if width is not None:
            last[0] = width
        if isinstance(output, (tuple, list)) and output:
            output = output[0]
        if isinstance(output, torch.Tensor):
            shapes[name] = tuple(output.shape[1:])
            widths[name] = last[0]

    return record


def describe_output(output) -> str:
    """What a model returned, in a few words (for the error that asks for ``output=``)."""
    if isinstance(output, Mapping):
        return f"a {type(output).__name__} with keys {list(output)[:8]}"
    if isinstance(output, (tuple, list)):
        kinds = ", ".join(type(v).__name__ for v in output[:6])
        return f"a {type(output).__name__} of {len(output)} items ({kinds})"
    tensors = [k for k, v in getattr(output, "__dict__", {}).items() if isinstance(v, torch.Tensor)]
    found = f" with tensor attributes {tensors[:8]}" if tensors else ""
    return f"a {type(output).__name__}{found}"


def select_output(output, how: str | int | Callable | None):
    """The logits in a model's ``output``: the output itself when it is a tensor, else
    ``how`` applied to it (a key of a dict, an index of a tuple, an attribute name, or a
    function). Anything else raises a TypeError saying what to pass."""
    if how is not None:
        if callable(how):
            output = how(output)
        elif isinstance(output, Mapping):
            if how not in output:
                raise KeyError(f"output={how!r}: the model's output has keys {list(output)}.")
            output = output[how]
        elif isinstance(output, (tuple, list)) and isinstance(how, int):
            output = output[how]
        elif isinstance(how, str) and hasattr(output, how):
            output = getattr(output, how)
        elif not isinstance(output, torch.Tensor):
            raise TypeError(f"output={how!r} does not fit {describe_output(output)}.")
    if isinstance(output, torch.Tensor):
        return output
    hint = "output='logits'" if _has_logits(output) else "output=<key, index or function>"
    raise TypeError(
        f"The model returned {describe_output(output)}, not a tensor of logits. Tell the "
        f"session where the logits are: rw.Session(model, data, {hint}), for example "
        "output='logits' (a key or attribute), output=0 (a tuple item) or "
        "output=lambda out: out.logits."
    )


def _has_logits(output) -> bool:
    return (isinstance(output, Mapping) and "logits" in output) or hasattr(output, "logits")


def unknown_layer_message(layer, available: Sequence[str]) -> str:
    """The error text for a layer name that is not in ``available``: close matches, then all."""
    available = list(available)
    close: list[str] = []
    if isinstance(layer, str) and layer:
        close = [name for name in available if name.endswith("." + layer)]
        close += difflib.get_close_matches(layer, available, n=3, cutoff=0.6)
        close = list(dict.fromkeys(close))[:3]
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    listed = ", ".join(available) if available else "(the model has no submodules)"
    return f"Unknown layer {layer!r}.{hint} Available layers: {listed}."


def resolve_layer(model: nn.Module, layer: str) -> nn.Module:
    """The submodule of ``model`` called ``layer``.

    An unknown name raises a ValueError that suggests close matches and lists every
    layer; this is the one place where layer names are checked.

    Example:
        >>> resolve_layer(nn.Sequential(nn.Linear(2, 2)), "0")
        Linear(in_features=2, out_features=2, bias=True)
    """
    modules = dict(model.named_modules())
    if isinstance(layer, str) and layer and layer in modules:
        return modules[layer]
    raise ValueError(unknown_layer_message(layer, [name for name in modules if name]))


def check_layer_names(model: nn.Module, layers: Iterable[str]) -> None:
    """Raise the unknown-layer error for the first name in ``layers`` that ``model`` lacks."""
    for layer in layers:
        resolve_layer(model, layer)


class Session:
    """A trained model, its data and a device, with cached activations.

    Args:
        model: any ``torch.nn.Module`` mapping a batch of inputs to logits.
        data: a :class:`repwidgets.datasets.DataBundle`, a dict of split name to
            map-style Dataset, a single Dataset, torchvision's ImageFolder, or an
            ``(X, y)`` pair of tensors (see :func:`repwidgets.datasets.as_bundle`).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda:1"``, ...
        batch_size: samples per forward pass during extraction, or ``"auto"``: on a GPU
            the batch whose activations fill half the free device memory (measured by a
            forward pass on a few samples, at most 1024); on the CPU 256, or fewer when
            the layers' outputs would not fit in a quarter of the available memory.
        memory_budget_mb: activations cached on the device up to this size; a larger
            extraction is written batch by batch to a memory-mapped file in the cache
            folder (also with ``pool=None``: the raw maps are never held whole).
        preprocess: optional function applied to a batch of images in [0, 1] before
            the model (for example the model's input normalisation).
        progress: show progress bars on extraction.
        precision: ``"float32"``, ``"tf32"`` (TF32 matmuls and convolutions on CUDA),
            ``"bf16"`` (bf16 autocast, TF32 for the rest) or ``"auto"`` (bf16 on CUDA,
            float32 elsewhere). Applies to extraction and to :meth:`autocast` blocks;
            activations and logits are stored in float32 whatever the compute dtype.
            Their relative error against float32 (Frobenius norm of the difference over
            that of the float32 result) stays within :data:`PRECISION_TOLERANCE`:
            1e-4 for float32 (GPU against CPU), 1e-2 for tf32, 4e-2 for bf16.
        store: the folder of a distributed job's activation store (``<output>/store``,
            see :mod:`repwidgets.distributed`): activations it holds for a layer and
            split with the same pool and neuron axis are read from it, not recomputed.

    Example:
        >>> sess = Session(model, {"train": train_ds, "test": test_ds})  # doctest: +SKIP
        >>> sess.layers()[:3]                                            # doctest: +SKIP
        >>> acts = sess.activations("features.conv3", split="test")  # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        data,
        device: str | torch.device = "auto",
        batch_size: int | str = "auto",
        memory_budget_mb: float = 2048,
        preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
        progress: bool = True,
        *,
        output: str | int | Callable | None = None,
        neuron_axis: int | Mapping[str, int] | None = None,
        precision: str = "auto",
        store: str | os.PathLike | None = None,
    ) -> None:
        from repwidgets.datasets import as_bundle

        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.model = model.to(self.device).eval()
        with bars_enabled(progress):  # reading a dataset's labels may draw a bar
            self.data = as_bundle(data)
        self.batch_size = batch_size
        self.memory_budget = int(memory_budget_mb * 2**20)
        self.preprocess = preprocess or (lambda x: x)
        self.progress = progress
        self.output = output
        self.neuron_axis = self._checked_axes(neuron_axis)
        self._cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._thumbs: dict[tuple, bytes] = {}
        self._shapes: dict[str, tuple] | None = None
        self._widths: dict[str, tuple[int, str] | None] = {}
        self._checked_splits: set[str] = set()
        self._spilled: set[tuple] = set()
        self._id = uuid.uuid4().hex[:12]
        self.store = ActivationStore(store) if store is not None else None

    # --- data delegation -----------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        return list(self.data.class_names)

    @property
    def concept_names(self) -> list[str]:
        return list(self.data.concept_names)

    @property
    def splits(self) -> list[str]:
        return list(self.data.splits)

    def dataset(self, split: str = "test") -> Dataset:
        return self.data.dataset(split)

    def n(self, split: str = "test") -> int:
        return len(self.dataset(split))

    def targets(self, split: str = "test") -> torch.Tensor:
        """Class labels of a split, LongTensor [n] (CPU)."""
        with bars_enabled(self.progress):
            return self.data.targets(split)

    def concepts(self, split: str = "test") -> torch.Tensor:
        """Concept labels of a split, BoolTensor [n, K] (CPU)."""
        return self.data.concepts(split)

    def groups(self, split: str = "test") -> torch.Tensor | None:
        """Group ids (class x artifact) of a split, LongTensor [n], or None."""
        with bars_enabled(self.progress):
            return self.data.groups(split)

    def concept_index(self, name: str) -> int:
        """Column of concept ``name`` in :meth:`concepts`; a ValueError listing the names."""
        return self.data.concept_index(name)

    def concept(self, name: str, split: str = "test") -> torch.Tensor:
        """Labels of one concept over a split, BoolTensor [n] (CPU)."""
        return self.concepts(split)[:, self.concept_index(name)]

    # --- device and numerics ------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        """Samples per forward pass (chosen from free memory on first use when "auto")."""
        if self._batch_size is None:
            self._batch_size = self._auto_batch_size()
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int | str) -> None:
        if value == "auto":
            self._batch_size = None
        elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"batch_size must be 'auto' or an int >= 1, got {value!r}.")
        else:
            self._batch_size = int(value)

    def _auto_batch_size(self) -> int:
        free = available_memory(self.device)
        if self.device.type == "cuda":
            per_sample = self._probe_bytes_per_sample()
            free = max(free - self.memory_budget, free / 4)
            return batch_size_for(per_sample, free, cap=_GPU_BATCH)
        shapes = self.layer_shapes().values()
        per_sample = 4 * (math.prod(self.input_shape) + sum(math.prod(s) for s in shapes))
        return batch_size_for(per_sample, free, cap=_CPU_BATCH, fraction=0.25, multiple=1)

    def _probe_bytes_per_sample(self) -> int:
        """Peak device memory of a forward pass on a few samples, per sample (bytes)."""
        dataset = self.dataset(self._any_split())
        k = min(8, len(dataset))
        x = torch.stack([dataset[i][0] for i in range(k)]).to(self.device)
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        base = torch.cuda.memory_allocated(self.device)
        with torch.no_grad(), self.autocast():
            self._forward(x)
        peak = torch.cuda.max_memory_allocated(self.device) - base
        return max(int(peak / k), x[0].numel() * x.element_size())

    def autocast(self, enabled: bool = True) -> contextlib.AbstractContextManager:
        """A block running the model at the session's ``precision``.

        On CUDA with "auto" or "bf16": bf16 autocast (matmuls and convolutions in
        bfloat16, reductions in float32) and TF32 for the rest; "tf32": TF32 only;
        "float32": neither (TF32 switched off). The TF32 switches are restored at the
        end of the block. Outputs inside may be bfloat16: call ``.float()`` on what you
        keep. Gradients work as usual (bf16 needs no loss scaling). ``enabled=False``
        is a no-op block, for code that takes a flag.

        Example:
            >>> with sess.autocast():                       # doctest: +SKIP
            ...     logits = sess.forward(x).float()        # [b, n_classes]
        """
        return precision_context(self.precision, self.device, enabled)

    # --- model structure ---------------------------------------------------------------
    def layers(self) -> list[str]:
        """Names of the modules that can be hooked, in model order."""
        return [name for name, _ in self.model.named_modules() if name]

    def default_layer(self, activation: bool = True) -> str:
        """The layer a method looks at when none is named: the last convolution's
        activation (non-negative maps; with ``activation=False`` the convolution itself),
        else the last layer before the head.

        Example:
            >>> rw.demo_session().default_layer()   # doctest: +SKIP
            'features.relu4'
        """
        leaves = [(n, m) for n, m in self.model.named_modules() if n and not list(m.children())]
        last = None
        for i, (name, module) in enumerate(leaves):
            if isinstance(module, nn.Conv2d):
                last = name
                if not activation:
                    continue
                for nxt, nxt_mod in leaves[i + 1 : i + 4]:
                    if isinstance(nxt_mod, nn.Conv2d):
                        break
                    if isinstance(nxt_mod, _ACTIVATIONS):
                        last = nxt
                        break
        if last is not None:
            return last
        layers = self.layers()
        return layers[-2] if len(layers) > 1 else layers[-1]

    def module(self, layer: str) -> nn.Module:
        """The module called ``layer``; a clear error listing the layers otherwise."""
        return resolve_layer(self.model, layer)

    def last_linear(self) -> tuple[str, nn.Linear]:
        """The name and module of the model's last ``nn.Linear`` (its classification head)."""
        linears = [(n, m) for n, m in self.model.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(
                "The model has no nn.Linear layer, so it has no last layer to read or retrain."
            )
        return linears[-1]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample, e.g. (3, 64, 64)."""
        return tuple(self._first_item(self._any_split())[0].shape)

    def layer_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample output shape of every hookable layer (from one sample)."""
        if self._shapes is None:
            x = self._first_item(self._any_split())[0].unsqueeze(0)
            shapes: dict[str, tuple[int, ...]] = {}
            last: list = [None]
            with contextlib.ExitStack() as hooks, torch.no_grad():
                for name, module in self.model.named_modules():
                    if name:
                        record = _shape_recorder(name, shapes, self._widths, last)
                        hooks.enter_context(hooked(module, record))
                self._forward(x.to(self.device))
            self._shapes = {name: shapes[name] for name in self.layers() if name in shapes}
        return dict(self._shapes)

    def layout(self, layer: str, neuron_axis: int | None = None) -> Layout:
        """Where ``layer``'s neurons are: dim 1 for convolutions, the last dim for token
        layers ``[b, T, C]`` and channels-last blocks ``[b, H, W, C]``.

        Found from the model (see :mod:`repwidgets.layouts`); ``neuron_axis`` here, or
        the session's ``neuron_axis=``, overrides it. A layout nothing decides raises
        :class:`~repwidgets.layouts.AmbiguousLayout` naming the choices.

        Example:
            >>> sess.layout("encoder.layers.encoder_layer_3").kind   # doctest: +SKIP
            'tokens'
        """
        self.module(layer)
        shapes = self.layer_shapes()
        if layer not in shapes:
            raise ValueError(
                f"Layer {layer!r} did not output a tensor on a sample (or did not run): "
                "pick a layer whose output is an activation tensor."
            )
        ndim = len(shapes[layer]) + 1
        axis = neuron_axis if neuron_axis is not None else self._session_axis(layer)
        if axis is not None:
            return Layout(normalise_axis(axis, ndim), ndim)
        return Layout(choose_axis(layer, (1, *shapes[layer]), self._widths.get(layer)), ndim)

    def _session_axis(self, layer: str) -> int | None:
        if isinstance(self.neuron_axis, Mapping):
            return self.neuron_axis.get(layer)
        return self.neuron_axis

    @staticmethod
    def _checked_axes(neuron_axis):
        if neuron_axis is None or isinstance(neuron_axis, Mapping):
            return dict(neuron_axis) if neuron_axis is not None else None
        if isinstance(neuron_axis, bool) or not isinstance(neuron_axis, int):
            raise TypeError(
                "neuron_axis must be an int (e.g. -1) or a dict of layer name to int, got "
                f"{type(neuron_axis).__name__}."
            )
        return neuron_axis

    # --- forward passes --------------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            out = self.model(self.preprocess(x))
        except StopForward:  # a hook ended the pass at the layer it needed
            raise
        except Exception as exc:
            raise RuntimeError(
                f"The model failed on an input batch of shape {tuple(x.shape)} "
                f"(dtype {x.dtype}, device {x.device}): {exc}"
            ) from exc
        return select_output(out, self.output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of images in [0, 1] (moved to the session's device)."""
        return self._forward(x.to(self.device))

    def activations(
        self,
        layer: str,
        split: str = "test",
        pool: str | None = "mean",
        neuron_axis: int | None = None,
    ) -> torch.Tensor:
        """Activations of ``layer`` over a split: ``[n, C]`` pooled over positions (or
        tokens), or the layer's raw output with ``pool=None``.

        ``C`` is the neuron axis (see :meth:`layout`): dim 1 of a convolution's output,
        the last dim of a token or channels-last layer. ``pool`` is "mean", "max",
        "cls" (a token layer's class token) or None. Computed once per (layer, split,
        pool, axis) and cached; on the session's device unless it was larger than the
        memory budget, in which case it is a CPU tensor over a memory-mapped file.
        """
        return self.activations_many([layer], split, pool, neuron_axis)[layer]

    def activations_many(
        self,
        layers: Sequence[str],
        split: str = "test",
        pool: str | None = "mean",
        neuron_axis: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Activations of several layers, extracted together in one pass over the data."""
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}.")
        layouts = {layer: self.layout(layer, neuron_axis) for layer in layers}
        keys = {layer: self._key(layer, split, pool, layouts[layer]) for layer in layers}
        missing = [layer for layer in layers if keys[layer] not in self._cache]
        if missing and self.store is not None:
            missing = [m for m in missing if not self._stored(m, split, pool, layouts[m], keys[m])]
        if missing:
            self._extract(missing, split, pool, {k: layouts[k] for k in missing})
        for key in keys.values():
            self._cache.move_to_end(key)
        return {layer: self._cache[keys[layer]] for layer in layers}

    def _stored(self, layer: str, split: str, pool, layout: Layout, key: tuple) -> bool:
        """Cache ``layer``'s rows from the store when it holds them (same pool and axis)."""
        rows = self.store.lookup(layer, split, pool, layout.neuron_axis, self.n(split))
        if rows is None:
            return False
        nbytes = rows.numel() * rows.element_size()
        if nbytes <= self.memory_budget:
            self._make_room(nbytes)
            rows = rows.to(self.device, copy=True)
        else:  # stays a memory-mapped CPU tensor, like a spilled extraction
            self._spilled.add(key)
        self._remember(key, rows)
        return True

    def logits(self, split: str = "test") -> torch.Tensor:
        """Model outputs over a split, [n, n_classes]."""
        key = self._key(_LOGITS, split, None)
        if key not in self._cache:
            self._extract([], split, None)
        return self._cache[key]

    def predictions(self, split: str = "test") -> torch.Tensor:
        """Predicted classes over a split, LongTensor [n] (CPU)."""
        return self.logits(split).argmax(dim=1).cpu()

    def penultimate(self, split: str = "test") -> torch.Tensor:
        """Inputs of the last linear layer (frozen features) over a split, [n, D]."""
        key = self._key(_PENULTIMATE, split, None)
        if key not in self._cache:
            self._extract([_PENULTIMATE], split, None)
        return self._cache[key]

    def _extract(
        self,
        layers: list[str],
        split: str,
        pool: str | None,
        layouts: Mapping[str, Layout] | None = None,
    ) -> None:
        """One pass over ``split`` filling the cache for ``layers`` and the logits."""
        dataset = self._checked_dataset(split)
        n = len(dataset)
        layouts = {
            layer: (layouts or {}).get(layer) or self.layout(layer)
            for layer in layers
            if layer != _PENULTIMATE
        }
        captures = {layer: self._capture(layer, pool, layouts.get(layer)) for layer in layers}
        outputs: dict[str, torch.Tensor | SpillFile] = {}
        loader = batch_loader(dataset, self.batch_size, self.device)
        start = 0
        with contextlib.ExitStack() as hooks, torch.no_grad(), self.autocast():
            for capture in captures.values():
                hooks.enter_context(capture)
            hooks.callback(discard_unfinished, outputs)
            batches = progress_bar(
                prefetched(finite_checked(loader, split), device=self.device),
                total=math.ceil(n / self.batch_size),
                desc=f"activations ({split})",
                enable=self.progress,
            )
            for x, _y in batches:
                logits = self._forward(x.to(self.device, non_blocking=True)).float()
                batch = {name: capture.value for name, capture in captures.items()}
                batch[_LOGITS] = logits
                stop = start + x.shape[0]
                for name, value in batch.items():
                    if name not in outputs:
                        key = self._key(name, split, pool, layouts.get(name))
                        outputs[name] = self._allocate(key, n, value)
                    outputs[name][start:stop] = value
                start = stop
            finished = {name: finished_tensor(out) for name, out in outputs.items()}
            outputs.clear()
        for name, tensor in finished.items():
            self._remember(self._key(name, split, pool, layouts.get(name)), tensor)

    @staticmethod
    def _key(name: str, split: str, pool: str | None, layout: Layout | None = None) -> tuple:
        if name in (_LOGITS, _PENULTIMATE):
            return (name, split, None, None)
        return (name, split, pool, layout.neuron_axis if layout is not None else None)

    def _capture(self, layer: str, pool: str | None, layout: Layout | None) -> Capture:
        """A hook keeping ``layer``'s pooled output per batch (the head's input for the
        penultimate features)."""
        if layer == _PENULTIMATE:
            name, head = self.last_linear()
            return Capture(head, inputs=True, transform=_flat_features, name=name)
        transform = functools.partial(_pooled, layout=layout, pool=pool)
        return Capture(self.module(layer), transform=transform, name=layer)

    def _allocate(self, key: tuple, n: int, first: torch.Tensor) -> torch.Tensor | SpillFile:
        """Room for ``n`` rows like ``first``: a float32 tensor on the device within the
        memory budget, else a :class:`SpillFile` file written batch by batch."""
        shape = (n, *first.shape[1:])
        nbytes = math.prod(shape) * 4
        if nbytes <= self.memory_budget:
            self._make_room(nbytes)
            return torch.empty(shape, dtype=torch.float32, device=self.device)
        digest = hashlib.sha1(repr(key).encode()).hexdigest()[:16]
        self._spilled.add(key)
        return SpillFile(cache_dir("activations", self._id) / f"{digest}.npy", shape)

    def _make_room(self, nbytes: int) -> None:
        while self._cache and self._cached_bytes() + nbytes > self.memory_budget:
            key, _ = self._cache.popitem(last=False)
            self._spilled.discard(key)

    def _cached_bytes(self) -> int:
        return sum(
            t.numel() * t.element_size() for k, t in self._cache.items() if k not in self._spilled
        )

    def _remember(self, key: tuple, tensor: torch.Tensor) -> None:
        self._cache[key] = tensor
        self._cache.move_to_end(key)

    def clear_cache(self) -> None:
        """Forget cached activations and thumbnails (they are recomputed on demand)."""
        self._cache.clear()
        self._spilled.clear()
        self._thumbs.clear()

    # --- images ----------------------------------------------------------------------
    def images(self, indices: Sequence[int], split: str = "test") -> torch.Tensor:
        """The images of ``indices`` in a split, FloatTensor [m, C, H, W] in [0, 1] (CPU)."""
        self._checked_dataset(split)
        idx = [int(i) for i in indices]
        if not idx:
            return torch.empty((0, *self.input_shape))
        return self.data.images(idx, split)

    def thumbnails(
        self, indices: Sequence[int], split: str = "test", size: int | None = 64, fmt: str = "png"
    ) -> list[bytes]:
        """Encoded images (PNG or WebP bytes) of ``indices``, cached, for widgets and reports."""
        fmt = fmt.lower()
        if fmt not in ("png", "webp"):
            raise ValueError(f"fmt must be 'png' or 'webp', got {fmt!r}.")
        idx = [int(i) for i in indices]
        missing = [i for i in dict.fromkeys(idx) if (split, i, size, fmt) not in self._thumbs]
        if missing:
            for i, image in zip(missing, self.images(missing, split)):
                self._thumbs[(split, i, size, fmt)] = encode_image(image, size=size, fmt=fmt)
        return [self._thumbs[(split, i, size, fmt)] for i in idx]

    # --- validation ------------------------------------------------------------------------
    def _any_split(self) -> str:
        return "test" if "test" in self.data.splits else next(iter(self.data.splits))

    def _first_item(self, split: str):
        return self._checked_dataset(split)[0]

    def _checked_dataset(self, split: str) -> Dataset:
        dataset = self.data.dataset(split)
        if split not in self._checked_splits:
            if len(dataset) == 0:
                raise ValueError(f"Split {split!r} is empty: it has no samples to compute on.")
            check_item(dataset[0], split)
            self._checked_splits.add(split)
        return dataset

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={len(self.data.dataset(s))}" for s in self.data.splits)
        return (
            f"Session(model={type(self.model).__name__}, data={self.data.name!r} ({sizes}), "
            f"device={self.device})"
        )


def check_item(item, split: str = "test", index: int = 0) -> None:
    """Raise a clear error unless a dataset item is ``(image tensor, int target)``."""
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise TypeError(
            f"Items of split {split!r} must be (image tensor, int target) pairs; got "
            f"{type(item).__name__}. Wrap the dataset so __getitem__ returns (tensor, int)."
        )
    image, target = item[0], item[1]
    if not isinstance(image, torch.Tensor):
        raise TypeError(
            f"Items of split {split!r} must start with an image tensor; got "
            f"{type(image).__name__}. Add a transform such as torchvision.transforms.ToTensor()."
        )
    class_id(target, index, split)


def encode_image(image: torch.Tensor, size: int | None = 64, fmt: str = "png") -> bytes:
    """Encode an image tensor [C, H, W] in [0, 1] as PNG or WebP bytes, resized to ``size``."""
    from PIL import Image

    array = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    if array.ndim == 2:
        array = array.unsqueeze(0)
    if array.shape[0] == 1:
        pil = Image.fromarray(array[0].numpy(), mode="L")
    else:
        pil = Image.fromarray(array[:3].permute(1, 2, 0).numpy(), mode="RGB")
    if size is not None and max(pil.size) != size:
        scale = size / max(pil.size)
        new = (max(1, round(pil.size[0] * scale)), max(1, round(pil.size[1] * scale)))
        resample = Image.NEAREST if scale >= 1 else Image.BILINEAR
        pil = pil.resize(new, resample)
    buffer = io.BytesIO()
    pil.save(
        buffer, format=fmt.upper(), **({"lossless": False, "quality": 85} if fmt == "webp" else {})
    )
    return buffer.getvalue()


def demo_session(
    seed: int = 0, device: str = "auto", progress: bool = True, **data_kwargs
) -> Session:
    """The embedded default: the shapes dataset and the default CNN, trained once then cached.

    Example:
        >>> import repwidgets as rw
        >>> sess = rw.demo_session()           # doctest: +SKIP
        >>> sess.activations("features.conv3").shape   # doctest: +SKIP
    """
    from repwidgets import datasets, models

    data = datasets.shapes(seed=seed, **data_kwargs)
    model = models.demo_model(data, seed=seed, progress=progress)
    return Session(model, data, device=device, progress=progress)
