"""DORA's tensor-level core: from the activation matrix A to dead neurons, EA distances,
local outlier factors and a 2-D map of the neurons."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from repwidgets.engines.dora.config import DoraConfig
from repwidgets.engines.dora.distance import compared_vectors, ea_distance
from repwidgets.engines.dora.result import DoraResult
from repwidgets.engines.embedding import embed_distances

__all__ = ["analyze_activations", "find_dead", "knn_scores", "lof_scores", "outlier_scores"]


def find_dead(A: Tensor, self_peak: Tensor | None = None, tol: float = 1e-3) -> Tensor:
    """Neurons that DORA cannot compare: BoolTensor [k].

    A neuron is dead when it is not active on its own s-AMS (``A[i, i] <= 0`` or
    ``self_peak[i] <= 0``), when its activation there is negligible (below ``tol`` x the
    median of the live neurons' own activations), or when it is constant (its column
    of A varies by less than ``tol`` x the typical variation).
    """
    A = A.detach().double().cpu()
    diag = A.diagonal()
    dead = ~(diag > 0)
    if self_peak is not None:
        dead |= ~(self_peak.detach().double().cpu() > 0)
    if (~dead).any():
        dead |= diag <= tol * diag[~dead].median()
    spread = A.amax(dim=0) - A.amin(dim=0)
    if (spread > 0).any():
        dead |= spread <= tol * spread[spread > 0].median()
    return dead


def lof_scores(
    D: np.ndarray, n_neighbors: int, contamination: float | str
) -> tuple[np.ndarray, np.ndarray]:
    """Local outlier factors of the points of a distance matrix ``D`` [m, m] (m >= 3).

    Returns (scores [m], about 1 for inliers and larger for outliers; flags [m], True
    for the points LOF flags at ``contamination``). The neighbourhood is capped at m - 1.
    """
    from sklearn.neighbors import LocalOutlierFactor

    m = D.shape[0]
    neighbours = max(1, min(int(n_neighbors), m - 1))
    cont = contamination if isinstance(contamination, str) else float(contamination)
    est = LocalOutlierFactor(n_neighbors=neighbours, metric="precomputed", contamination=cont)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate points: LOF warns, scores stay valid
        pred = est.fit_predict(D)
    return -est.negative_outlier_factor_, pred == -1


def knn_scores(
    D: np.ndarray, n_neighbors: int, contamination: float | str
) -> tuple[np.ndarray, np.ndarray]:
    """Outlier scores of the points of a distance matrix ``D`` [m, m] (m >= 2): each
    point's distance to its k-th nearest other point, k = ``n_neighbors`` (at most m - 1).

    LOF compares a point's density with its neighbours' and so takes a tight group of
    outliers, each the others' neighbour, for inliers when the group is larger than its
    neighbourhood. The k-th neighbour of a member of a group smaller than k lies outside
    the group, so a group far from the rest scores high as a whole.

    Returns (scores [m], larger for outliers; flags [m]: the ceil(contamination x m)
    largest scores, or with ``contamination="auto"`` the scores above the median plus
    three robust standard deviations (1.4826 x the median absolute deviation)).

    Example:
        >>> pts = np.r_[np.zeros(8), 0.5 + np.arange(8) / 100, [3.0, 3.01, 3.02]]
        >>> s, flags = knn_scores(np.abs(pts[:, None] - pts[None, :]), 5, 0.15)
        >>> flags.nonzero()[0].tolist()                          # the far group of three
        [16, 17, 18]
    """
    m = D.shape[0]
    k = min(max(1, int(n_neighbors)), m - 1)
    off = np.array(D, dtype=np.float64, copy=True)
    np.fill_diagonal(off, np.inf)
    scores = np.partition(off, k - 1, axis=1)[:, k - 1]
    if isinstance(contamination, str):
        med = np.median(scores)
        spread = 1.4826 * np.median(np.abs(scores - med))
        flags = scores > med + 3 * spread
    else:
        n_flag = int(np.ceil(float(contamination) * m))
        flags = np.zeros(m, dtype=bool)
        flags[np.argsort(-scores, kind="stable")[:n_flag]] = True
    return scores, flags


def outlier_scores(
    D: np.ndarray, outlier: str = "lof", n_neighbors: int = 20, contamination: float | str = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    """The outlier scores and flags of the points of a distance matrix ``D`` [m, m]
    (m >= 3) by the score's name: "lof" (:func:`lof_scores`) or "knn"
    (:func:`knn_scores`). Larger scores are more outlying.

    Example:
        >>> pts = np.r_[np.arange(10) / 10, [5.0]]
        >>> scores, flags = outlier_scores(np.abs(pts[:, None] - pts[None, :]), "lof", 5, 0.05)
        >>> int(np.argmax(scores)), flags.nonzero()[0].tolist()
        (10, [10])
    """
    if outlier == "knn":
        return knn_scores(D, n_neighbors, contamination)
    if outlier == "lof":
        return lof_scores(D, n_neighbors, contamination)
    raise ValueError(f"Unknown outlier score {outlier!r}; use 'lof' or 'knn'.")


def analyze_activations(
    A: Tensor | np.ndarray,
    neurons: Sequence[int] | Tensor | None = None,
    config: DoraConfig | dict | None = None,
    *,
    self_peak: Tensor | None = None,
    dead: Tensor | Sequence[bool] | None = None,
    layer: str | None = None,
    **overrides,
) -> DoraResult:
    """DORA on a given activation matrix: dead neurons, EA distances, LOF, 2-D map.

    Args:
        A: [k, k], ``A[i, j]`` = activation of neuron j on the signals of neuron i.
        neurons: ids of the k neurons (default ``0..k-1``).
        config: a :class:`DoraConfig` (or a dict of its settings); ``overrides`` change
            single settings. The ones used here:

            - ``contamination``: expected outlier fraction for the flags (the
              reference uses 0.01; "auto": LOF's own threshold, or for "knn" the median
              plus three robust standard deviations). The raw scores are always kept.
            - ``n_neighbors``: neighbourhood size of both outlier scores (capped at the
              live neurons - 1).
            - ``dead_tol``: relative tolerance of :func:`find_dead`.
            - ``embedding``: the 2-D map: "umap" (UMAP on the precomputed distances;
              MDS below 8 live neurons), "mds" (metric MDS, quick), or None (no map).
              UMAP compiles its kernels on first use in a process (tens of seconds on
              a small CPU).
            - ``umap_neighbors``: UMAP's neighbourhood size.
            - ``representation``: what is compared between neurons i and j:
              "responses" (default), their responses to all the s-AMS, i.e. columns i
              and j of A (``distances = ea_distance(A.T)``). This is the
              representation activation vector of the DORA paper, and it mirrors how
              neurons are compared on data (by their responses over the same inputs);
              on our shapes CNNs it agrees far better with the neurons' functional
              distance on real images (Spearman about 0.85 versus 0.6 for
              "signals"). "signals": the layer's response to their signals, rows i and
              j of A (``distances = ea_distance(A)``).
            - ``center`` (default False: the plain cosine of the specification):
              subtract each neuron's mean response over all the s-AMS (the mean of its
              column of A) before comparing, so that the cosine becomes a Pearson
              correlation, as in the functional distance on data; a neuron's offset (a
              bias, the floor of GELU or SiLU) then no longer counts. On the four models
              of ``benchmarks/bench_truth.py`` it raises the agreement with functional
              distance a little (README, "Truth across models").
            - ``equalise_signals``: give every s-AMS the same weight (each signal's
              responses over the layer scaled to unit norm, see
              :func:`~repwidgets.engines.dora.distance.compared_vectors`). It draws the
              artifact detectors closer together on every model of the benchmark but
              ranks them lower among the outliers on the demo CNN and the GroupNorm
              net; off by default.
            - ``outlier``: the score that ranks and flags the outliers
              (``outlier_scores``): "lof" (default, the specification's local outlier
              factor; ``outlier_scores`` is then ``lof_scores``) or "knn" (an option,
              :func:`knn_scores`: the distance to the ``n_neighbors``-th nearest live
              neuron). LOF compares a neuron's density with its neighbours' and so
              misses a tight group of detectors far from the rest (the GroupNorm net's
              19 watermark detectors of ``benchmarks/bench_truth.py``: LOF AUC about
              0.4, the k-th neighbour with ``center=True`` about 0.84). LOF's scores are
              kept in ``lof_scores`` either way.
            - ``seed``: seed of the map.
        self_peak: optional [k] peak activation of each neuron on its own signals.
        dead: a given dead mask [k] (default: :func:`find_dead`).
        layer: layer name stored in the result.

    Returns:
        DoraResult (without signals); its ``params`` are the config's settings, with
        ``embedding`` the map actually drawn ("mds" where UMAP had too few neurons,
        None for no map). Dead neurons get NaN scores and map positions and are never
        outliers; the distance matrix covers all k neurons.

    Example:
        >>> r = analyze_activations(torch.rand(30, 30), embedding=None)
        >>> r.distances.shape
        torch.Size([30, 30])
    """
    cfg = DoraConfig.resolve(config, overrides)
    A = _checked_matrix(A)
    k = A.shape[0]
    if isinstance(neurons, (DoraConfig, dict)):
        raise TypeError("neurons must be neuron ids; pass the settings as config=...")
    idx = torch.arange(k) if neurons is None else torch.as_tensor(neurons).long().cpu().flatten()
    if idx.numel() != k:
        raise ValueError(f"A has {k} rows but neurons lists {idx.numel()}.")
    D = ea_distance(compared_vectors(A, cfg.representation, cfg.center, cfg.equalise_signals))
    is_dead = _dead_mask(A, self_peak, dead, cfg.dead_tol)
    live = torch.nonzero(~is_dead).flatten().numpy()
    lof = np.full(k, np.nan)
    scores = np.full(k, np.nan)
    flags = np.zeros(k, dtype=bool)
    emb = np.full((k, 2), np.nan)
    method = "none"
    Dl = D.detach().double().cpu().numpy()[np.ix_(live, live)]
    if live.size >= 3:
        lof[live], flags[live] = lof_scores(Dl, cfg.n_neighbors, cfg.contamination)
        scores[live] = lof[live]  # the default: ranked and flagged by LOF
        if cfg.outlier != "lof":
            scores[live], flags[live] = outlier_scores(
                Dl, cfg.outlier, cfg.n_neighbors, cfg.contamination
            )
    elif live.size:
        warnings.warn(f"Only {live.size} live neurons: too few for outlier scores.", stacklevel=2)
    if cfg.embedding is not None and live.size:
        coords, method = embed_distances(Dl, cfg.embedding, cfg.seed, cfg.umap_neighbors)
        emb[live] = coords
    params = cfg.to_dict()
    params["embedding"] = None if method == "none" else method
    return DoraResult(
        layer=layer,
        neurons=idx,
        activations=A.cpu(),
        distances=D.cpu(),
        lof_scores=torch.from_numpy(lof).float(),
        outlier_scores=torch.from_numpy(scores).float(),
        is_outlier=torch.from_numpy(flags),
        is_dead=is_dead,
        embedding=torch.from_numpy(emb).float(),
        self_activation=A.diagonal().cpu().clone(),
        signals=None,
        params=params,
    )


def _checked_matrix(A: Tensor | np.ndarray) -> Tensor:
    """A as a float32 tensor [k, k] with k >= 2 and finite values; clear errors otherwise."""
    if isinstance(A, np.ndarray):
        A = torch.from_numpy(A)
    if not isinstance(A, Tensor):
        raise TypeError(f"A must be a tensor or numpy array, got {type(A).__name__}.")
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be a square matrix [k, k], got shape {tuple(A.shape)}.")
    k = A.shape[0]
    if k < 2:
        raise ValueError(f"DORA compares neurons with each other and needs k >= 2; got k = {k}.")
    A = A.detach().float()
    bad = torch.nonzero(~torch.isfinite(A).all(dim=1)).flatten()
    if bad.numel():
        raise ValueError(
            f"A has NaN or infinite values in the rows of neurons {bad[:10].tolist()}; "
            "check the model's outputs for these signals."
        )
    return A


def _dead_mask(
    A: Tensor, self_peak: Tensor | None, dead: Tensor | Sequence[bool] | None, tol: float
) -> Tensor:
    """The given dead mask [k] (checked), or :func:`find_dead`'s."""
    if dead is None:
        return find_dead(A, self_peak, tol)
    is_dead = torch.as_tensor(dead, dtype=torch.bool).cpu().flatten()
    if is_dead.numel() != A.shape[0]:
        raise ValueError(f"dead has {is_dead.numel()} entries; expected {A.shape[0]}.")
    return is_dead
