"""INVERT's entry points: the tensor-level core and the session-level call.

:func:`explain_activations` runs the beam search (:mod:`.search`) over batches of
neurons and collects the formulas with their significance (:mod:`.significance`);
:func:`explain` reads a layer's pooled activations and the concept labels from a
session and calls it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from repwidgets._progress import progress_counter
from repwidgets.engines import _checks
from repwidgets.engines.ranks import ranks_of_rows

from .config import InvertConfig
from .result import InvertResult
from .search import BeamSearch
from .significance import beam_statistics, collect_formulas

if TYPE_CHECKING:  # pragma: no cover
    from repwidgets.session import Session

__all__ = ["explain", "explain_activations"]

#: Poolings that give one value per sample and neuron.
POOLS = ("mean", "max", "cls")
_BEAM_KEYS = ("atoms", "ops", "length", "valid", "auc", "cnt")


def explain_activations(
    acts: torch.Tensor,
    concepts: torch.Tensor,
    concept_names: Sequence[str] | None = None,
    config: InvertConfig | Mapping[str, Any] | None = None,
    *,
    neurons: Sequence[int] | torch.Tensor | None = None,
    layer: str | None = None,
    progress: bool = True,
    **overrides: Any,
) -> InvertResult:
    """Explain every neuron of ``acts`` with its best formula over ``concepts``.

    Args:
        acts: [n, N] activations of N neurons on n samples (a 1-D [n] is one neuron).
            Computation runs on this tensor's device.
        concepts: bool [n, K]: concept k is present in sample i (0/1 accepted).
        concept_names: K names (default ``concept_0`` ...).
        config: an :class:`InvertConfig`, a dict of its settings (such as a saved
            result's ``params``) or None for the defaults.
        neurons: indices of the neurons to explain (default all).
        layer: name stored in the result.
        progress: show a progress bar over neuron batches.
        **overrides: settings of :class:`InvertConfig` (``max_length``, ``beam_size``,
            ``min_fraction``, ``max_fraction``, ``mode``, ``return_beam``, ...).

    Returns:
        :class:`InvertResult`; its ``params`` are the settings plus ``n_samples``.

    Raises:
        TypeError: an unknown setting (the message lists the settings).
        ValueError: mismatched lengths, NaN activations (naming the neurons), bad
            settings, or no concept whose fraction fits the filter.

    Example:
        >>> r = explain_activations(acts, concepts, names, max_length=2)   # doctest: +SKIP
        >>> r.to_frame().sort_values("auc", ascending=False).head()         # doctest: +SKIP
    """
    t_start = time.perf_counter()
    cfg = InvertConfig.resolve(config, overrides).normalised()
    acts, concepts, names, idx = _checks.invert_inputs(acts, concepts, concept_names, neurons)
    if acts.device.type == "meta":
        raise ValueError("acts are on the meta device; pass real activations.")
    concepts = concepts.to(acts.device)
    n = concepts.shape[0]
    timings: dict = {"ranks_s": 0.0, "products_s": 0.0, "select_s": 0.0, "product_flops": 0.0}

    t0 = time.perf_counter()
    search = _new_search(concepts, names, cfg, timings)
    timings["setup_s"] = time.perf_counter() - t0
    batch = _neurons_per_batch(n, acts.shape[1], concepts.shape[1], cfg)
    beam, ties = _search_batches(search, acts, cfg, batch, progress)

    stats = beam_statistics(beam["auc"], beam["cnt"], ties, n, cfg.mode, cfg.continuity)
    formulas, beams = collect_formulas(beam, stats, names, idx, cfg.return_beam)
    top_indices, top_values = _top_activating(acts, cfg)
    timings["total_s"] = time.perf_counter() - t_start
    timings["neurons_per_batch"] = batch
    return InvertResult(
        formulas=formulas,
        auc=stats["auc"][:, 0].contiguous(),
        fraction=stats["fraction"][:, 0].contiguous(),
        p_value=stats["p_value"][:, 0].contiguous(),
        log10_p=stats["log10_p"][:, 0].contiguous(),
        neurons=idx.clone(),
        concept_names=list(names),
        layer=layer,
        mode=cfg.mode,
        params={**cfg.to_dict(), "n_samples": int(n)},
        beams=beams,
        top_indices=top_indices,
        top_values=top_values,
        timings=timings,
    )


def _new_search(
    concepts: torch.Tensor, names: list[str], cfg: InvertConfig, timings: dict
) -> BeamSearch:
    """The beam search over ``concepts``; a ValueError when no atom fits the fractions."""
    search = BeamSearch(
        concepts,
        names,
        cfg.max_length,
        cfg.beam_size,
        cfg.min_fraction,
        cfg.max_fraction,
        cfg.max_operands,
        int(cfg.memory_budget_mb * 2**20),
        timings,
    )
    if not bool(search.atom_valid.any()):
        frac = search.cnt_c.double() / concepts.shape[0]
        raise ValueError(
            f"No concept (or its negation) covers a fraction of samples within "
            f"[min_fraction={cfg.min_fraction}, max_fraction={cfg.max_fraction}] (at least "
            f"1 sample, not all): concept fractions range from {float(frac.min()):.4g} to "
            f"{float(frac.max()):.4g}. Widen the fraction range."
        )
    return search


def _neurons_per_batch(n: int, N: int, K: int, cfg: InvertConfig) -> int:
    """Neurons searched together: ``cfg.batch_size``, or as many as the budget holds."""
    if cfg.batch_size:
        return int(cfg.batch_size)
    B = cfg.beam_size
    kk = min(K, max(1, cfg.max_operands or K))
    T = max(3 * B, B + 8)
    per_neuron = n * (40 + 9 * B + 10 * T) + 4 * B * kk * 40 + 2 * K * 8
    budget = int(cfg.memory_budget_mb * 2**20)
    return max(1, min(N, budget // max(per_neuron, 1)))


def _search_batches(
    search: BeamSearch, acts: torch.Tensor, cfg: InvertConfig, batch: int, progress: bool
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Run the search over batches of neurons: the final beams (CPU tensors [N, B, ...])
    and each neuron's tie term [N]."""
    N, device = acts.shape[1], acts.device
    parts: dict[str, list[torch.Tensor]] = {key: [] for key in _BEAM_KEYS}
    ties_parts = []
    prev = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # TF32 would spoil the shortlist products
    try:
        desc = f"INVERT ({N} neurons x {cfg.max_length} steps)"
        with progress_counter(N * cfg.max_length, desc, progress, unit="neuron-step") as bar:
            search.advance = bar.update  # called once per beam step with the batch width
            for lo in range(0, N, batch):
                t0 = time.perf_counter()
                q, ties = ranks_of_rows(acts[:, lo : lo + batch].T.contiguous().to(device))
                if cfg.mode == "negative":
                    q = q.neg_()
                search.timed("ranks_s", t0)
                beam = search.run(q)
                for key in _BEAM_KEYS:
                    parts[key].append(beam[key].cpu())
                ties_parts.append(ties.cpu())
    finally:
        torch.set_float32_matmul_precision(prev)
    return {key: torch.cat(value) for key, value in parts.items()}, torch.cat(ties_parts)


def _top_activating(
    acts: torch.Tensor, cfg: InvertConfig
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The ``top_k`` most active samples of each neuron (least active in negative mode):
    indices int64 [N, k] and activations float32 [N, k], or None for ``top_k=0``."""
    if cfg.top_k <= 0:
        return None, None
    sign = 1 if cfg.mode == "positive" else -1
    k = min(cfg.top_k, acts.shape[0])
    vals, ind = torch.topk(sign * acts.to(torch.float32), k, dim=0)
    return ind.T.contiguous().cpu(), (sign * vals).T.contiguous().cpu()


def explain(
    sess: Session,
    layer: str | None = None,
    config: InvertConfig | Mapping[str, Any] | None = None,
    *,
    split: str = "test",
    pool: str = "mean",
    neuron_axis: int | None = None,
    neurons: Sequence[int] | torch.Tensor | None = None,
    progress: bool | None = None,
    **overrides: Any,
) -> InvertResult:
    """Explain the neurons of ``layer`` of a session's model with concept formulas.

    Takes the layer's activations on ``split`` (pooled with ``pool``: "mean" or "max"
    over positions or tokens, or "cls", a token layer's class token) and the split's
    concept labels from the session, and runs
    :func:`explain_activations` on the session's device. Every setting is checked
    before any activation is computed.

    Args:
        sess: the session.
        layer: a name from ``sess.layers()`` (default: ``sess.default_layer()``).
        config: an :class:`InvertConfig`, a dict of its settings or None.
        split, pool: which activations to explain.
        neuron_axis: the axis of the layer's neurons where the session cannot tell it
            (see :meth:`repwidgets.Session.layout`); None: the session's.
        neurons: indices of the neurons to explain (default all).
        progress: progress bar (default: the session's setting).
        **overrides: settings of :class:`InvertConfig`.

    Example:
        >>> import repwidgets as rw
        >>> sess = rw.demo_session()                                   # doctest: +SKIP
        >>> r = rw.invert.explain(sess, "features.conv4", max_length=2)  # doctest: +SKIP
        >>> r.to_frame().sort_values("auc").tail()                      # doctest: +SKIP
    """
    cfg = InvertConfig.resolve(config, overrides)
    if pool not in POOLS:
        raise ValueError(
            f"INVERT needs one value per sample and neuron: use pool='mean', 'max' or 'cls', not {pool!r}."
        )
    cfg = cfg.normalised()
    layer = sess.default_layer() if layer is None else layer
    sess.module(layer)
    concepts = _checks.concept_table(sess, split, "INVERT")
    _checks.concept_fractions(concepts, cfg.min_fraction, cfg.max_fraction)
    if neurons is not None:
        _checks.neuron_indices(neurons, _checks.layer_width(sess, layer, neuron_axis), layer)
    acts = sess.activations(layer, split=split, pool=pool, neuron_axis=neuron_axis)
    progress = getattr(sess, "progress", True) if progress is None else progress
    device = getattr(sess, "device", acts.device)
    r = explain_activations(
        acts.to(device),
        concepts,
        sess.concept_names,
        cfg,
        neurons=neurons,
        layer=layer,
        progress=progress,
    )
    r.split, r.pool, r.neuron_axis = split, pool, neuron_axis
    r._session = sess
    return r
