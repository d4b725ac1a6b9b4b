"""Refining directions into concepts: clusters of each direction's top samples, outliers.

Ward's method with a distance threshold chooses the number of clusters: a merge is cut
when it would explain more than ``min_merge_share`` of the pool's sum of squares (or
above an absolute ``distance_threshold``); k-means refines the clusters from Ward's
centroids. Members farther from their centroid than ``median + outlier_mad * 1.4826 *
MAD`` of the cluster's distances are dropped as outliers; clusters smaller than
``min_cluster_size`` are dropped. A cluster whose members overlap an earlier concept's
(Jaccard >= ``dedupe_overlap``) is the same concept seen from another direction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from repwidgets._progress import progress_bar

__all__ = [
    "Found",
    "cluster_pool",
    "dominant_classes",
    "find_outliers",
    "membership",
    "refine",
]

_MAD_SCALE = 1.4826  # MAD -> standard deviation for normal data


def robust_cut(dist: np.ndarray, k_mad: float) -> tuple[float, float, float]:
    """(median, scale, cut) of distances to a centroid; members beyond ``cut`` are outliers."""
    med = float(np.median(dist))
    scale = _MAD_SCALE * float(np.median(np.abs(dist - med)))
    if scale <= 0:
        scale = max(1e-6 * med, 1e-12)
    return med, scale, med + k_mad * scale


def cluster_pool(
    Z: np.ndarray,
    *,
    distance_threshold: float | None,
    min_merge_share: float,
    max_clusters: int,
    min_size: int,
    outlier_mad: float,
    seed: int,
) -> list[np.ndarray]:
    """Cluster the rows of Z [t, C]; return the inlier member rows of each kept cluster."""
    from sklearn.cluster import AgglomerativeClustering, KMeans

    t = Z.shape[0]
    sse = float(((Z - Z.mean(axis=0)) ** 2).sum())
    if t < 2 or sse <= 0:
        return [np.arange(t)] if t >= min_size else []
    # A Ward merge of height h adds h^2 / 2 to the sum of squares, so cutting at
    # sqrt(2 * share * SSE) splits wherever one merge would explain more than `share`.
    thr = (
        distance_threshold
        if distance_threshold is not None
        else math.sqrt(2.0 * min_merge_share * sse)
    )
    ward = AgglomerativeClustering(n_clusters=None, distance_threshold=thr, linkage="ward")
    labels = ward.fit_predict(Z)
    k = int(labels.max()) + 1
    if k > max_clusters:
        labels = AgglomerativeClustering(n_clusters=max_clusters, linkage="ward").fit_predict(Z)
        k = max_clusters
    if k > 1:
        centroids = np.stack([Z[labels == c].mean(axis=0) for c in range(k)])
        km = KMeans(n_clusters=k, init=centroids, n_init=1, random_state=seed)
        labels = km.fit_predict(Z)
    clusters = []
    for c in range(k):
        rows = np.flatnonzero(labels == c)
        if rows.size == 0:
            continue
        dist = np.linalg.norm(Z[rows] - Z[rows].mean(axis=0), axis=1)
        _, _, cut = robust_cut(dist, outlier_mad)
        rows = rows[dist <= cut]
        if rows.size >= min_size:
            clusters.append(rows)
    return clusters


@dataclass
class Found:
    """A concept while it is being found (internal)."""

    members: np.ndarray  # sorted sample indices
    direction: int
    sign: int
    vector: np.ndarray  # unit-normalised centroid
    cosine: float
    centroid: np.ndarray
    med: float  # median distance of members to the centroid
    scale: float  # robust std of those distances
    zdist: np.ndarray  # robust z of each member's distance


def refine(
    rows,
    P: np.ndarray,
    V: np.ndarray,
    *,
    top_t: int,
    ends: str,
    dedupe_overlap: float,
    progress: bool,
    **cluster_kwargs,
) -> tuple[list[Found], list[np.ndarray]]:
    """Cluster the top_t samples of every direction; return the concepts and the pools."""
    found: list[Found] = []
    pools: list[np.ndarray] = []
    tasks = [(d, s) for d in range(P.shape[1]) for s in ((1, -1) if ends == "both" else (1,))]
    for d, s in progress_bar(tasks, total=len(tasks), desc="clustering", enable=progress):
        pool = np.argsort(-s * P[:, d], kind="stable")[:top_t]
        pools.append(pool)
        Z = rows(pool)
        for part in cluster_pool(Z, **cluster_kwargs):
            order = np.argsort(pool[part])
            members, Zm = pool[part][order], Z[part][order]
            if any(jaccard(members, c.members) >= dedupe_overlap for c in found):
                continue  # the same concept, seen from another direction
            centroid = Zm.mean(axis=0)
            norm = float(np.linalg.norm(centroid))
            if norm <= 0:
                continue
            dist = np.linalg.norm(Zm - centroid, axis=1)
            med, scale, _ = robust_cut(dist, cluster_kwargs["outlier_mad"])
            found.append(
                Found(
                    members=members,
                    direction=d,
                    sign=s,
                    vector=centroid / norm,
                    cosine=float(centroid @ (s * V[d])) / norm,
                    centroid=centroid,
                    med=med,
                    scale=scale,
                    zdist=(dist - med) / scale,
                )
            )
    return found, pools


def find_outliers(
    rows,
    scores: Tensor,
    found: list[Found],
    pools: list[np.ndarray],
    truth: Tensor | None,
    dominant: Tensor,
    purity: Tensor,
    top_t: int,
    min_purity: float,
    outlier_mad: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(index, score, concept, kind) of the flagged samples (see OUTLIER_KINDS)."""
    out_i: list[int] = []
    out_s: list[float] = []
    out_c: list[int] = []
    out_k: list[int] = []
    k = len(found)
    if truth is not None and k:
        # kind 0: among the top_t projections on a class-dominated concept, another class
        S_all = scores.to(torch.float64)
        mu, sd = S_all.mean(dim=0), S_all.std(dim=0).clamp_min(1e-12)
        for j in range(k):
            if dominant[j] < 0 or not purity[j] >= min_purity:
                continue
            top = S_all[:, j].topk(min(top_t, S_all.shape[0])).indices
            wrong = top[truth[top] != dominant[j]]
            out_i += wrong.tolist()
            out_s += ((S_all[wrong, j] - mu[j]) / sd[j]).tolist()
            out_c += [j] * len(wrong)
            out_k += [0] * len(wrong)
    if k:
        # kind 1: clustered candidates (in some direction's top_t) that fit no cluster
        members = np.unique(np.concatenate([c.members for c in found]))
        candidates = np.setdiff1d(np.unique(np.concatenate(pools)), members)
        if candidates.size:
            Z = rows(candidates)
            zdist = np.stack(
                [(np.linalg.norm(Z - c.centroid, axis=1) - c.med) / c.scale for c in found], axis=1
            )
            nearest = zdist.argmin(axis=1)
            zmin = zdist[np.arange(candidates.size), nearest]
            far = zmin > outlier_mad
            out_i += candidates[far].tolist()
            out_s += zmin[far].tolist()
            out_c += nearest[far].tolist()
            out_k += [1] * int(far.sum())
    return (
        torch.tensor(out_i, dtype=torch.long),
        torch.tensor(out_s, dtype=torch.float32),
        torch.tensor(out_c, dtype=torch.long),
        torch.tensor(out_k, dtype=torch.long),
    )


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / max(1, a.size + b.size - inter)


def dominant_classes(
    found: list[Found], owner: Tensor | None, n_classes: int
) -> tuple[Tensor, Tensor]:
    """Each concept's class, the most frequent ``owner`` class (predicted, else true)
    among its members, int64 [k] (-1 without classes), and its share, float32 [k]."""
    k = len(found)
    dominant = torch.full((k,), -1, dtype=torch.long)
    purity = torch.full((k,), float("nan"))
    if owner is None:
        return dominant, purity
    for j, c in enumerate(found):
        counts = torch.bincount(owner[torch.from_numpy(c.members)], minlength=n_classes)
        dominant[j] = int(counts.argmax())
        purity[j] = float(counts.max()) / len(c.members)
    return dominant, purity


def membership(found: list[Found], n: int) -> dict[str, Tensor]:
    """The concept of every sample, ``assignment`` int64 [n] (-1 for none; a sample in
    several clusters goes to the one it sits most centrally in), and the members as
    ``sizes`` [k], ``member_offsets`` [k + 1] and ``member_index`` [sum of sizes]."""
    k = len(found)
    assignment = torch.full((n,), -1, dtype=torch.long)
    best = torch.full((n,), math.inf, dtype=torch.float64)
    for j, c in enumerate(found):
        mem = torch.from_numpy(c.members)
        closer = torch.from_numpy(c.zdist) < best[mem]
        assignment[mem[closer]] = j
        best[mem[closer]] = torch.from_numpy(c.zdist)[closer]
    sizes = torch.tensor([len(c.members) for c in found], dtype=torch.long)
    offsets = torch.zeros(k + 1, dtype=torch.long)
    if k:
        offsets[1:] = sizes.cumsum(0)
    index = (
        torch.from_numpy(np.concatenate([c.members for c in found])).long()
        if k
        else torch.zeros(0, dtype=torch.long)
    )
    return {
        "assignment": assignment,
        "sizes": sizes,
        "member_offsets": offsets,
        "member_index": index,
    }
