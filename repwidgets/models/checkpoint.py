"""Loading weights a user saved elsewhere into a model.

:func:`load_weights` reads a checkpoint with ``torch.load(..., weights_only=True)`` (no
code is run from the file), finds the state dict in it (a plain state dict, or a dict
holding one under ``"state_dict"``, ``"model"``, ``"model_state_dict"`` or
``"net"``), drops the ``"module."`` prefix that ``DataParallel`` and
``DistributedDataParallel`` add, and loads it, with errors that name the missing and
unexpected keys and the mismatched shapes.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

__all__ = ["CheckpointError", "load_weights", "state_dict_of"]

_NESTED = ("state_dict", "model", "model_state_dict", "net", "module")
_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / DDP, torch.compile
_SHOWN = 8


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or whose weights do not fit the model."""


def _listed(names: list[str]) -> str:
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def _is_state_dict(obj) -> bool:
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def state_dict_of(obj, source: str = "the checkpoint") -> dict[str, torch.Tensor]:
    """The state dict inside a loaded checkpoint ``obj``, without ``"module."`` prefixes.

    ``obj`` is a state dict, or a dict holding one under ``"state_dict"``, ``"model"``,
    ``"model_state_dict"``, ``"net"`` or ``"module"`` (other entries, such as an
    optimizer's state or the epoch, are ignored).
    """
    found = obj
    for _ in range(3):  # e.g. {"model": {"state_dict": {...}}}
        if _is_state_dict(found) or not isinstance(found, Mapping):
            break
        nested = [k for k in _NESTED if isinstance(found.get(k), Mapping)]
        if not nested:
            break
        found = found[nested[0]]
    if not _is_state_dict(found):
        keys = f" with keys {_listed([str(k) for k in obj])}" if isinstance(obj, Mapping) else ""
        raise CheckpointError(
            f"{source} holds a {type(obj).__name__}{keys}, not a state dict of parameter "
            "tensors. Save one with torch.save(model.state_dict(), path), or pass the dict "
            f"that holds it under one of the keys {list(_NESTED)}."
        )
    out = dict(found)
    for prefix in _PREFIXES:
        if out and all(k.startswith(prefix) for k in out):
            out = {k[len(prefix) :]: v for k, v in out.items()}
    return out


def _looks_like_torch_save(path: Path) -> bool:
    """A zip archive (torch.save since 1.6) or a pickle stream (the legacy format)."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def _refused_global(exc: Exception) -> str:
    text = str(exc)
    if "Unsupported global:" not in text:
        return ""
    name = text.split("Unsupported global:", 1)[1].split(" was not", 1)[0].strip()
    return f" ({name.removeprefix('GLOBAL ')})"


def _read(path: Path, map_location) -> object:
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {str(path)!r}.")
    not_checkpoint = (
        f"{str(path)!r} is not a PyTorch checkpoint (a file written by torch.save). Save the "
        "weights with torch.save(model.state_dict(), path)."
    )
    if not _looks_like_torch_save(path):
        raise CheckpointError(not_checkpoint)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{str(path)!r} holds objects other than tensors and plain containers"
            f"{_refused_global(exc)}, which are not loaded (torch.load with "
            "weights_only=True runs no code from the file). Save the weights alone: "
            "torch.save(model.state_dict(), path)."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        reason = str(exc).split(". ", 1)[0]
        raise CheckpointError(f"{not_checkpoint} ({type(exc).__name__}: {reason})") from None


def _check_fit(model: nn.Module, state: Mapping[str, torch.Tensor], strict: bool) -> None:
    """Raise a CheckpointError naming mismatched shapes, and (when ``strict``) missing and
    unexpected keys."""
    own = model.state_dict()
    shapes = [
        f"{k} (checkpoint {tuple(v.shape)}, model {tuple(own[k].shape)})"
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    problems = []
    if shapes:
        problems.append(f"shape mismatch: {_listed(shapes)}")
    if strict and missing:
        problems.append(f"missing from the checkpoint ({len(missing)}): {_listed(missing)}")
    if strict and unexpected:
        problems.append(f"not in the model ({len(unexpected)}): {_listed(unexpected)}")
    if not state.keys() & own.keys():
        problems.append("no key of the checkpoint is a key of the model")
    if problems:
        hint = ""
        if shapes:
            hint = " Is it the checkpoint of this architecture (same number of classes)?"
        elif strict and state.keys() & own.keys():
            hint = " Pass strict=False to load the keys that match."
        raise CheckpointError(
            f"The checkpoint does not fit {type(model).__name__}: {'; '.join(problems)}.{hint}"
        )


def load_weights(
    model: nn.Module,
    path: str | os.PathLike,
    strict: bool = True,
    map_location: str | torch.device | None = "cpu",
) -> nn.Module:
    """Load the weights saved at ``path`` into ``model`` (in place) and return the model.

    Args:
        model: the architecture, built as when the checkpoint was saved.
        path: a file written by ``torch.save``: a state dict, or a dict holding one
            under ``"state_dict"``, ``"model"``, ``"model_state_dict"``, ``"net"`` or
            ``"module"``; ``"module."`` prefixes (DataParallel, DDP) and ``"_orig_mod."``
            (torch.compile) are dropped. Read with ``weights_only=True``.
        strict: every key of the model must be in the checkpoint and every key of the
            checkpoint in the model; ``strict=False`` loads the keys that match (shapes
            must still agree).
        map_location: where the tensors are read to before they are copied into the
            model (the model keeps its device).

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: a file that is not a checkpoint, one without a state dict, or
            weights that do not fit (missing and unexpected keys listed, mismatched
            shapes named).

    Example:
        >>> model = torchvision.models.resnet50(num_classes=10)        # doctest: +SKIP
        >>> rw.models.load_weights(model, "runs/best.pt")              # doctest: +SKIP
    """
    path = Path(path)
    state = state_dict_of(_read(path, map_location), repr(str(path)))
    _check_fit(model, state, strict)
    model.load_state_dict(state, strict=strict)
    return model
