"""What the explorer shows, computed once: the layer's results and each neuron's data.

:func:`layer_results` returns DORA, INVERT and concept discovery for ``(session, layer)``:
the results passed in, else those kept in memory for this session and layer, else
those saved in the ``cache`` folder, else computed now (and saved there). Re-opening an
explorer is then instant. :class:`ExplorerData` turns them into per-neuron arrays (the
map, the distances, the outlier score, formulas) and builds each neuron's panel data on its first
visit (top-activating samples, the mid-range band, its enriched concepts, the concept
vectors it loads on), cached so that switching back is immediate.

Example:
    >>> data = ExplorerData(sess, "features.conv4", **layer_results(sess, "features.conv4"))  # doctest: +SKIP
    >>> data.neuron(12).top[:4]                                                                # doctest: +SKIP
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from repwidgets.engines import neurons as neuron_engine
from repwidgets.views.explorer.jobs import MODEL_LOCK

if TYPE_CHECKING:
    from repwidgets.session import Session

__all__ = ["DEFAULT_SETTINGS", "ExplorerData", "NeuronData", "layer_results"]

#: Settings of the results computed at open (small: the explorer is interactive).
DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    "dora": {"n_signals": 1, "steps": 64, "signal_size": 32, "embedding": "mds"},
    "invert": {"max_length": 3, "beam_size": 5, "min_fraction": 0.01},
    "concepts": {"n_components": 16, "top_t": 100, "embedding": None},
}
_KINDS = ("dora", "invert", "concepts")

#: (id(session), layer) -> {kind: result}; an entry goes when its session is collected.
_MEMORY: dict[tuple[int, str], dict[str, Any]] = {}
_MEMORY_LOCK = threading.Lock()


def _remember(sess: Session, layer: str, kind: str, result: Any) -> None:
    key = (id(sess), layer)
    with _MEMORY_LOCK:
        if key not in _MEMORY:
            _MEMORY[key] = {}
            weakref.finalize(sess, _MEMORY.pop, key, None)
        _MEMORY[key][kind] = result


def _cache_file(cache: str | Path, layer: str, kind: str) -> Path:
    return Path(cache).expanduser() / f"{kind}-{layer.replace('/', '_')}.safetensors"


def _compute(sess: Session, layer: str, kind: str, settings: dict[str, Any]) -> Any:
    if kind == "dora":
        from repwidgets.engines import dora

        return dora.analyze(sess, layer, settings, progress=False)
    if kind == "invert":
        from repwidgets.engines import invert

        return invert.explain(sess, layer, progress=False, **settings)
    from repwidgets.engines import concepts

    return concepts.discover(sess, layer, progress=False, **settings)


def _result_class(kind: str) -> type:
    if kind == "dora":
        from repwidgets.engines.dora import DoraResult

        return DoraResult
    if kind == "invert":
        from repwidgets.engines.invert import InvertResult

        return InvertResult
    from repwidgets.engines.concepts import ConceptResult

    return ConceptResult


def layer_results(
    sess: Session,
    layer: str,
    *,
    dora: Any = None,
    invert: Any = None,
    concepts: Any = None,
    cache: str | Path | None = None,
    settings: dict[str, dict[str, Any]] | None = None,
    report: Any = None,
) -> dict[str, Any]:
    """DORA, INVERT and concept discovery for ``layer``: given, remembered, loaded or computed.

    Args:
        dora, invert, concepts: a result to use; None finds or computes it; False
            leaves it out (without DORA the map comes from INVERT, see
            :class:`ExplorerData`).
        cache: a folder where results are saved (those computed and those given) and
            loaded from next time (None: memory only).
        settings: per kind, the engine settings of a result computed here (merged over
            :data:`DEFAULT_SETTINGS`).
        report: optional ``report(done, total, stage)`` progress callback.

    Returns:
        ``{"dora": ..., "invert": ..., "concepts": ...}`` (None where left out).
    """
    given = {"dora": dora, "invert": invert, "concepts": concepts}
    memory = _MEMORY.get((id(sess), layer), {})
    out: dict[str, Any] = {}
    for step, kind in enumerate(_KINDS):
        value = given[kind]
        if value is False:
            out[kind] = None
            continue
        if value is None:
            value = memory.get(kind)
        path = _cache_file(cache, layer, kind) if cache is not None else None
        if value is None and path is not None and path.exists():
            value = _result_class(kind).load(path)
        if value is None:
            if report is not None:
                report(step, len(_KINDS), f"computing {kind}")
            opts = {**DEFAULT_SETTINGS[kind], **dict((settings or {}).get(kind, {}))}
            with MODEL_LOCK:
                value = _compute(sess, layer, kind, opts)
        if path is not None and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            value.save(path)
        _check_layer(value, layer, kind)
        _remember(sess, layer, kind, value)
        out[kind] = value
    return out


def _check_layer(result: Any, layer: str, kind: str) -> None:
    other = getattr(result, "layer", None)
    if other is not None and other != layer:
        raise ValueError(
            f"The {kind} result passed is for layer {other!r}, not {layer!r}. Pass the result "
            f"of that layer, or open the explorer on {other!r}."
        )


@dataclass
class NeuronData:
    """One neuron's panel data (train-split sample indices unless said otherwise).

    Attributes:
        unit: the neuron (channel index of the layer).
        formula, auc, fraction, p_value: its INVERT label (None without INVERT).
        top: its top-activating samples, highest first.
        band: the quantile band of :attr:`midrange` (low, high).
        midrange: samples whose activation lies in the band, highest first.
        enriched: concepts enriched in the band (the engine's table).
        loadings: the discovered concept vectors it loads on (the engine's table).
        sams: its s-AMS as one PNG (None without DORA signals).
    """

    unit: int
    formula: str | None = None
    auc: float | None = None
    fraction: float | None = None
    p_value: float | None = None
    top: list[int] = field(default_factory=list)
    band: tuple[float, float] = (0.5, 0.9)
    midrange: list[int] = field(default_factory=list)
    enriched: pd.DataFrame | None = None
    loadings: pd.DataFrame | None = None
    sams: bytes | None = None


class ExplorerData:
    """The layer's results as per-neuron arrays, and each neuron's data, cached.

    Args:
        sess: the session.
        layer: the layer.
        dora, invert, concepts: results (any may be None).
        split: the split whose samples are shown and curated ("train").
        top_k: top-activating samples per neuron.
        band: the default mid-range quantile band.
        cache: a folder where the layer's pooled activations on ``split`` are saved
            and read from next time (None: the session's cache only).

    Attributes:
        ids: the neurons, in map order (DORA's order, else 0..C-1).
        xy: float32 [C, 2], the map (DORA's embedding, else INVERT's per-concept AUC
            profiles embedded; dead neurons in a small block at the lower left).
        distances: float64 [C, C] (DORA's EA distances, else of the AUC profiles).
        outlier_score: float64 [C], the score DORA ranks and flags outliers by
            (``DoraResult.ranking_scores()``; NaN without DORA or for dead neurons).
        outlier_score_name: its name ("LOF" by default, "k-th-neighbour distance" with
            DORA's ``outlier="knn"``; "" without DORA); outlier_score_label: the same as
            a title ("LOF score").
        dead: bool [C].
        formulas: the formula text of each neuron ("" without INVERT).
    """

    def __init__(
        self,
        sess: Session,
        layer: str,
        dora: Any = None,
        invert: Any = None,
        concepts: Any = None,
        *,
        split: str = "train",
        top_k: int = 16,
        band: tuple[float, float] = (0.5, 0.9),
        cache: str | Path | None = None,
    ) -> None:
        if dora is None and invert is None:
            raise ValueError(
                "The explorer needs DORA or INVERT for the neuron map; pass dora= or invert= "
                "(or leave them as None to compute them)."
            )
        if split not in sess.splits:
            raise ValueError(f"split {split!r} is not in the session; splits: {sess.splits}.")
        self.sess, self.layer, self.split = sess, layer, split
        self.dora, self.invert, self.concepts = dora, invert, concepts
        self.top_k, self.band = int(top_k), (float(band[0]), float(band[1]))
        self.cache = cache
        self._acts: torch.Tensor | None = None
        self._neurons: dict[tuple[int, tuple[float, float]], NeuronData] = {}
        self._lock = threading.RLock()
        self._sams = None
        if dora is not None:
            self._from_dora(dora)
        else:
            self._from_invert(invert)
        self.formulas = [""] * len(self.ids)
        self._invert_col: dict[int, int] = {}
        if invert is not None:
            self._invert_col = {int(n): j for j, n in enumerate(invert.neurons.tolist())}
            for p, unit in enumerate(self.ids):
                j = self._invert_col.get(unit)
                if j is not None:
                    self.formulas[p] = str(invert.formulas[j]["text"])
        self.position = {u: p for p, u in enumerate(self.ids)}

    # --- the map ------------------------------------------------------------------------
    def _from_dora(self, dora: Any) -> None:
        self.ids = [int(i) for i in dora.neurons.tolist()]
        self.dead = dora.is_dead.numpy().astype(bool)
        self.outlier_score = np.asarray(dora.ranking_scores(), dtype=np.float64)
        self.outlier_score_name = str(dora.outlier_score_name)
        self.outlier_score_label = str(dora.outlier_score_label)
        self.outlier = dora.is_outlier.numpy().astype(bool)
        self.distances = np.nan_to_num(dora.distances.double().numpy(), nan=0.0)
        self.xy = _place_dead(dora.embedding.float().numpy(), self.dead)
        if getattr(dora, "signals", None) is not None:
            from repwidgets.views.dora import signal_thumbnails

            self._sams = signal_thumbnails(dora.signals, self.ids, 64)

    def _from_invert(self, invert: Any) -> None:
        from repwidgets.engines.embedding import embed_points
        from repwidgets.engines.ranks import auc_matrix

        self.ids = [int(i) for i in invert.neurons.tolist()]
        split = invert.split or "test"
        with MODEL_LOCK:
            acts = self.sess.activations(self.layer, split=split, pool=invert.pool or "mean")
        acts = acts.detach().float().cpu()[:, self.ids]
        masks = torch.as_tensor(self.sess.concepts(split)).bool().cpu()
        profile = auc_matrix(acts, masks).float()  # [C, K]
        xy, _ = embed_points(profile, "pca", 0)
        self.xy = np.asarray(xy, dtype=np.float32)
        self.distances = torch.cdist(profile.double(), profile.double()).numpy()
        self.dead = (acts.std(dim=0) <= 1e-8).numpy()
        self.outlier_score = np.full(len(self.ids), np.nan)
        self.outlier_score_name = self.outlier_score_label = ""
        self.outlier = np.zeros(len(self.ids), dtype=bool)

    # --- per-neuron -------------------------------------------------------------------
    def activations(self) -> torch.Tensor:
        """The layer's pooled activations on the split, [n, C] (CPU, float32)."""
        acts = self._acts
        if acts is None:
            # the model's lock first, then ours: the order every caller keeps
            with MODEL_LOCK, self._lock:
                if self._acts is None:
                    self._acts = self._read_activations()
                acts = self._acts
        return acts

    def _read_activations(self) -> torch.Tensor:
        """From the cache folder when saved there, else from the session (then saved)."""
        from safetensors.torch import load, save

        from repwidgets.atomic import atomic_write_bytes

        path = None
        if self.cache is not None:
            path = _cache_file(self.cache, self.layer, f"activations-{self.split}")
            if path.exists():
                acts = load(path.read_bytes())["activations"]
                if acts.shape[0] == self.sess.n(self.split):
                    return acts
        acts = self.sess.activations(self.layer, split=self.split, pool="mean")
        acts = acts.detach().float().cpu().contiguous()
        if path is not None:
            atomic_write_bytes(path, save({"activations": acts}))
        return acts

    def label(self, unit: int) -> dict[str, Any]:
        """The INVERT label of ``unit``: formula, auc, fraction, p_value (None without one)."""
        j = self._invert_col.get(int(unit))
        if j is None:
            return {"formula": None, "auc": None, "fraction": None, "p_value": None}
        r = self.invert
        return {
            "formula": str(r.formulas[j]["text"]),
            "auc": float(r.auc[j]),
            "fraction": float(r.fraction[j]),
            "p_value": float(r.p_value[j]),
        }

    def clauses(self, unit: int) -> list[dict[str, Any]]:
        """The literals of ``unit``'s formula: dicts with ``concept``, ``negated`` and
        ``op`` (INVERT's clauses; empty without INVERT).

        Example:
            >>> [c["concept"] for c in data.clauses(114) if c["negated"]]  # doctest: +SKIP
            ['watermark']
        """
        j = self._invert_col.get(int(unit))
        if j is None:
            return []
        return [dict(c) for c in self.invert.formulas[j].get("clauses", [])]

    def formula_concepts(self, unit: int) -> list[str]:
        """The concepts in ``unit``'s formula (empty without INVERT)."""
        j = self._invert_col.get(int(unit))
        if j is None:
            return []
        return [str(c["concept"]) for c in self.invert.formulas[j].get("clauses", [])]

    def check_unit(self, unit: Any) -> int:
        """``unit`` as an int, or a ValueError naming the valid neurons."""
        if isinstance(unit, bool) or not isinstance(unit, (int, np.integer)):
            raise TypeError(f"A neuron is an int (a channel of {self.layer}); got {unit!r}.")
        if int(unit) not in self.position:
            raise ValueError(
                f"Neuron {unit} is not in this explorer of {self.layer} (neurons "
                f"{min(self.ids)}..{max(self.ids)})."
            )
        return int(unit)

    def neuron(self, unit: int, band: tuple[float, float] | None = None) -> NeuronData:
        """``unit``'s panel data (computed on the first visit, then cached)."""
        unit = self.check_unit(unit)
        band = self.band if band is None else (float(band[0]), float(band[1]))
        key = (unit, band)
        self.activations()  # outside our lock (see activations)
        with self._lock:
            if key not in self._neurons:
                self._neurons[key] = self._build(unit, band)
            return self._neurons[key]

    def _build(self, unit: int, band: tuple[float, float]) -> NeuronData:
        acts = self.activations()
        names = list(self.sess.concept_names)
        concepts = torch.as_tensor(self.sess.concepts(self.split)).bool().cpu()
        top = neuron_engine.top_activating(acts, unit, k=self.top_k)
        values = acts[:, unit]
        band_idx = neuron_engine.quantile_band(values, band)
        enriched = neuron_engine.enrichment(concepts, band_idx, names) if names else None
        members = _by_value(band_idx, values)
        loadings = None
        if self.concepts is not None:
            loadings = neuron_engine.concept_loadings(self.concepts.vectors, unit)
        sams = self._sams([unit])[0] if self._sams is not None else None
        return NeuronData(
            unit=unit,
            **self.label(unit),
            top=[int(i) for i in np.asarray(top).ravel()],
            band=band,
            midrange=members,
            enriched=enriched,
            loadings=loadings,
            sams=sams,
        )

    def strongest(self, index: int, k: int = 8) -> pd.DataFrame:
        """The neurons that fire most on sample ``index`` (the engine's table)."""
        return neuron_engine.strongest_neurons(self.activations(), int(index), k=k)

    def sample_facts(self, index: int) -> dict[str, Any]:
        """Class, prediction and concepts of sample ``index`` of the split."""
        n = self.sess.n(self.split)
        if not 0 <= int(index) < n:
            raise ValueError(f"Sample {index} is not in split {self.split!r} (0..{n - 1}).")
        classes = list(self.sess.class_names)
        target = int(self.sess.targets(self.split)[index])
        pred = int(self.sess.predictions(self.split)[index])
        row = torch.as_tensor(self.sess.concepts(self.split))[index].bool()
        names = list(self.sess.concept_names)
        return {
            "sample": int(index),
            "class": classes[target] if target < len(classes) else str(target),
            "prediction": classes[pred] if pred < len(classes) else str(pred),
            "concepts": [names[c] for c in torch.nonzero(row).flatten().tolist()],
        }


def _by_value(indices: Any, values: torch.Tensor) -> list[int]:
    """``indices`` as ints, highest ``values`` first."""
    idx = torch.as_tensor(np.asarray(indices, dtype=np.int64).ravel())
    if idx.numel() == 0:
        return []
    order = torch.argsort(values[idx], descending=True)
    return [int(i) for i in idx[order].tolist()]


def _place_dead(xy: np.ndarray, dead: np.ndarray) -> np.ndarray:
    """A finite map: dead (NaN) neurons in a compact block at the live ones' lower left.

    A full-width row below the map reads as an axis; a small square block of points
    (grey in the score colourings, "dead" in the dead / alive one) does not.
    """
    xy = np.array(xy, dtype=np.float32)
    bad = dead | ~np.isfinite(xy).all(axis=1)
    live = xy[~bad]
    if live.size == 0:
        live = np.zeros((1, 2), dtype=np.float32)
    lo, hi = live.min(axis=0), live.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    m = int(bad.sum())
    if m:
        side = int(np.ceil(np.sqrt(m)))
        k = np.arange(m)
        step = 0.04 * span
        xy[bad, 0] = lo[0] - 0.08 * span[0] + step[0] * (k % side)
        xy[bad, 1] = lo[1] - 0.08 * span[1] + step[1] * (k // side)
    return xy
