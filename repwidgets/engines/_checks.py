"""Argument checks that the session-level calls run before any activation is computed.

Each check reads only what is cheap to read (layer names, split sizes, label tables,
one sample's layer shapes) so that a wrong argument fails at once with a message
naming the problem and the fix, not after a pass over the data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from repwidgets.datasets.bundle import missing_concepts_message


def positive_int(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``; a ValueError naming the argument otherwise."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def optional_positive_int(name: str, value, minimum: int = 1) -> int | None:
    """Like :func:`positive_int`, but None passes through."""
    return None if value is None else positive_int(name, value, minimum)


def one_of(name: str, value, choices: Sequence) -> None:
    """Raise unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}.")


def fraction_range(min_fraction: float, max_fraction: float) -> None:
    """Raise unless 0 <= min_fraction <= max_fraction <= 1."""
    if not (0.0 <= float(min_fraction) <= float(max_fraction) <= 1.0):
        raise ValueError(
            f"Need 0 <= min_fraction <= max_fraction <= 1, got min_fraction={min_fraction}, "
            f"max_fraction={max_fraction}."
        )


def split_size(sess, split: str) -> int:
    """The number of samples of ``split`` (unknown splits list the available ones)."""
    n = len(sess.dataset(split))
    if n == 0:
        raise ValueError(f"Split {split!r} is empty: it has no samples to compute on.")
    return n


def layer_width(sess, layer: str, neuron_axis: int | None = None) -> int:
    """Neurons of ``layer`` as pooled activations count them: the size of its neuron axis
    (see :meth:`repwidgets.session.Session.layout`), from one sample."""
    layout = sess.layout(layer, neuron_axis)
    return int(sess.layer_shapes()[layer][layout.neuron_axis - 1])


def neuron_indices(neurons, width: int, layer: str, minimum: int = 1) -> None:
    """Raise unless ``neurons`` (None for all) are at least ``minimum`` valid channel ids."""
    if neurons is None:
        if width < minimum:
            raise ValueError(f"Layer {layer!r} has {width} neuron(s); at least {minimum} needed.")
        return
    idx = torch.as_tensor(neurons).flatten()
    if idx.is_floating_point() or idx.dtype == torch.bool:
        raise TypeError(f"neurons must be integer channel indices, got dtype {idx.dtype}.")
    if idx.numel() < minimum:
        raise ValueError(f"neurons lists {idx.numel()} neuron(s); at least {minimum} needed.")
    bad = idx[(idx < -width) | (idx >= width)]
    if bad.numel():
        raise ValueError(
            f"neurons {bad.tolist()[:10]} are out of range: layer {layer!r} has {width} "
            f"neurons (0..{width - 1})."
        )


def concept_table(sess, split: str, method: str) -> torch.Tensor:
    """The concept labels of ``split``; an error saying how to pass them when there are none."""
    data = sess.data
    if not list(getattr(data, "concept_names", [])):
        raise ValueError(
            f"{method} needs concept labels. " + missing_concepts_message(data.name, split)
        )
    concepts = sess.concepts(split)
    if concepts.shape[0] != split_size(sess, split):
        raise ValueError(
            f"Split {split!r} has {split_size(sess, split)} samples but {concepts.shape[0]} "
            "rows of concept labels; give one row per sample."
        )
    return concepts


def invert_params(
    max_length,
    beam_size,
    min_fraction,
    max_fraction,
    mode: str,
    modes: Sequence[str],
    max_operands=None,
    top_k: int = 16,
) -> None:
    """The parameter checks shared by ``invert.explain`` and ``invert.explain_activations``."""
    one_of("mode", mode, modes)
    positive_int("max_length", max_length)
    positive_int("beam_size", beam_size)
    fraction_range(min_fraction, max_fraction)
    optional_positive_int("max_operands", max_operands)
    positive_int("top_k", top_k, minimum=0)


def n_components(value, n: int, width: int | None = None, of: str = "X") -> None:
    """Raise unless ``value`` is a count in [1, min(n, width)] or a share in (0, 1).

    ``of`` names what holds the n samples and the width channels in the message.
    """
    if isinstance(value, float) and not value.is_integer():
        if not 0 < value < 1:
            raise ValueError(
                f"n_components={value}: give an int (number of directions) or a float in "
                "(0, 1) (share of variance to keep)."
            )
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer)):
        raise TypeError(f"n_components must be an int or a float in (0, 1), got {value!r}.")
    m = int(value)
    if m < 1:
        raise ValueError(f"n_components must be at least 1; got {value}.")
    if m > n:
        raise ValueError(
            f"n_components={m} but {of} has only n={n} samples: there are at most {n} "
            f"directions. Ask for n_components <= {n} or pass more samples."
        )
    if width is not None and m > width:
        raise ValueError(
            f"n_components={m} exceeds the C={width} channels of {of}. Ask for "
            f"n_components <= {width}."
        )


def concept_fractions(concepts: torch.Tensor, min_fraction: float, max_fraction: float) -> None:
    """Raise unless some concept (or its negation) covers a share of samples in the range."""
    n = int(concepts.shape[0])
    counts = concepts.bool().sum(0).long()
    lo = max(1, math.ceil(min_fraction * n - 1e-9))
    hi = min(n - 1, math.floor(max_fraction * n + 1e-9))
    fits = ((counts >= lo) & (counts <= hi)) | ((n - counts >= lo) & (n - counts <= hi))
    if not bool(fits.any()):
        share = counts.double() / max(n, 1)
        raise ValueError(
            f"No concept (or its negation) covers a fraction of samples within "
            f"[min_fraction={min_fraction}, max_fraction={max_fraction}] (at least 1 sample, "
            f"not all): concept fractions range from {float(share.min()):.4g} to "
            f"{float(share.max()):.4g}. Widen the fraction range."
        )


def dora_params(n_signals, steps, contamination, n_neighbors, embedding, representation) -> None:
    """The settings of ``dora.analyze`` that are otherwise read only after the s-AMS exist."""
    positive_int("n_signals", n_signals)
    positive_int("steps", steps)
    positive_int("n_neighbors", n_neighbors)
    one_of("embedding", embedding, ("umap", "mds", None))
    one_of("representation", representation, ("responses", "signals"))
    if isinstance(contamination, str):
        one_of("contamination", contamination, ("auto",))
    elif not 0 < float(contamination) <= 0.5:
        raise ValueError(f"contamination must be in (0, 0.5] or 'auto'; got {contamination}.")


def invert_inputs(acts, concepts, concept_names, neurons):
    """INVERT's tensors checked and normalised: (acts [n, N'], bool concepts, names, neuron ids)."""
    if not isinstance(acts, torch.Tensor):
        try:
            acts = torch.as_tensor(np.asarray(acts))
        except Exception as exc:
            raise TypeError(
                f"acts must be a tensor or array [n_samples, n_neurons], got {type(acts).__name__}."
            ) from exc
    if acts.ndim == 1:
        acts = acts[:, None]
    if acts.ndim != 2:
        raise ValueError(
            f"acts must be 2-D [n_samples, n_neurons], got shape {tuple(acts.shape)}. "
            "Pool spatial maps first (e.g. acts.mean(dim=(2, 3)))."
        )
    if acts.dtype == torch.bool:
        acts = acts.to(torch.uint8)
    if torch.is_complex(acts):
        raise TypeError("acts must be real numbers, not complex.")
    if not isinstance(concepts, torch.Tensor):
        concepts = torch.as_tensor(np.asarray(concepts))
    if concepts.ndim == 1:
        concepts = concepts[:, None]
    if concepts.ndim != 2:
        raise ValueError(
            f"concepts must be a boolean matrix [n_samples, n_concepts], got shape "
            f"{tuple(concepts.shape)}."
        )
    if acts.shape[0] != concepts.shape[0]:
        raise ValueError(
            f"acts has {acts.shape[0]} samples but concepts has {concepts.shape[0]}: both must "
            "be indexed by the same samples (rows), in the same order."
        )
    if concepts.dtype != torch.bool:
        if torch.is_floating_point(concepts) or torch.is_complex(concepts):
            ok = bool(((concepts == 0) | (concepts == 1)).all())
        else:
            ok = bool(((concepts == 0) | (concepts == 1)).all())
        if not ok:
            raise TypeError(
                "concepts must be boolean (or 0/1): concept k is present in sample i when "
                "concepts[i, k] is True."
            )
        concepts = concepts != 0
    n, k = concepts.shape
    if n < 2:
        raise ValueError(f"INVERT needs at least 2 samples, got {n}.")
    if k == 0:
        raise ValueError("concepts has no columns: INVERT needs at least one concept label.")
    if concept_names is None:
        concept_names = [f"concept_{i}" for i in range(k)]
    concept_names = [str(c) for c in concept_names]
    if len(concept_names) != k:
        raise ValueError(
            f"concept_names has {len(concept_names)} names but concepts has {k} columns; "
            "give one name per column."
        )
    n_neurons = acts.shape[1]
    if n_neurons == 0:
        raise ValueError(
            "acts has no neurons (0 columns): pass activations [n_samples, n_neurons]."
        )
    if neurons is None:
        idx = torch.arange(n_neurons)
    else:
        idx = torch.as_tensor(neurons).flatten().long().cpu()
        if idx.numel() == 0:
            raise ValueError("neurons is empty: pass None for all neurons, or some indices.")
        bad = idx[(idx < -n_neurons) | (idx >= n_neurons)]
        if bad.numel():
            raise ValueError(
                f"neurons {bad.tolist()[:10]} are out of range: the layer has {n_neurons} "
                f"neurons (0..{n_neurons - 1})."
            )
        idx = idx % n_neurons
        acts = acts[:, idx.to(acts.device)]
    if torch.is_floating_point(acts):
        nan = torch.isnan(acts).any(0).cpu()
        if bool(nan.any()):
            bad = idx[nan].tolist()
            raise ValueError(
                f"activations contain NaN for neurons {bad[:20]}"
                f"{' ...' if len(bad) > 20 else ''} ({len(bad)} of {len(idx)}). Fix the layer or "
                "leave those neurons out with neurons=[...]."
            )
    return acts, concepts, concept_names, idx
