"""Concept discovery's settings: one frozen dataclass for the session call and the core."""

from __future__ import annotations

from dataclasses import dataclass

from repwidgets.config import Config
from repwidgets.engines import _checks

__all__ = ["EMBEDDINGS", "ENDS", "ConceptConfig"]

#: Which ends of each direction are clustered.
ENDS = ("positive", "both")
#: How the samples are placed in 2-D for the browser and the plot.
EMBEDDINGS = ("umap", "pca", None)


@dataclass(frozen=True)
class ConceptConfig(Config):
    """How concepts are found in a layer's pooled activations.

    Attributes:
        n_components: directions to keep (int), or a share of variance in (0, 1).
        center: decompose ``X - mean`` (default False, as in the reference: the first
            direction is then the mean direction).
        top_t: samples taken from the top of each direction for clustering; also the
            number of top projections inspected for outliers per concept.
        ends: "positive" (cluster the top of each direction) or "both" (also the bottom).
        distance_threshold: absolute Ward distance threshold (overrides min_merge_share).
        min_merge_share: Ward merges that would explain more than this share of the
            pool's sum of squares are cut: that decides the number of clusters.
        max_clusters: at most this many clusters per direction.
        min_cluster_size: clusters with fewer inlier members are dropped
            (None: max(5, top_t // 20)).
        outlier_mad: members beyond median + outlier_mad robust std of their cluster's
            distances are outliers; the same threshold flags samples far from every
            cluster.
        dedupe_overlap: Jaccard overlap of members above which a cluster repeats an
            earlier concept and is skipped.
        min_purity: "other class" outliers are only sought for concepts whose dominant
            class holds at least this share of members.
        embedding: "umap" (umap-learn), "pca", or None; "umap" falls back to PCA below
            50 samples.
        seed: seeds k-means and UMAP.

    Example:
        >>> ConceptConfig(n_components=8).replace(top_t=50).to_dict()["top_t"]
        50
    """

    n_components: int | float = 32
    center: bool = False
    top_t: int = 100
    ends: str = "positive"
    distance_threshold: float | None = None
    min_merge_share: float = 0.2
    max_clusters: int = 6
    min_cluster_size: int | None = None
    outlier_mad: float = 3.0
    dedupe_overlap: float = 0.5
    min_purity: float = 0.5
    embedding: str | None = "umap"
    seed: int = 0

    def check(self) -> ConceptConfig:
        """Raise a ValueError naming the first bad setting (the count of components is
        checked against the data by the caller); returns the config."""
        _checks.one_of("ends", self.ends, ENDS)
        _checks.one_of("embedding", self.embedding, EMBEDDINGS)
        _checks.positive_int("top_t", self.top_t, minimum=2)
        _checks.positive_int("max_clusters", self.max_clusters)
        _checks.optional_positive_int("min_cluster_size", self.min_cluster_size)
        return self

    def effective(self, n: int) -> ConceptConfig:
        """The settings as applied to ``n`` samples: ``top_t`` at most n and the
        default ``min_cluster_size`` resolved (what a result records in ``params``)."""
        top_t = min(int(self.top_t), n)
        size = self.min_cluster_size
        size = int(size) if size is not None else max(5, top_t // 20)
        return self.replace(top_t=top_t, min_cluster_size=max(1, min(size, top_t)))
