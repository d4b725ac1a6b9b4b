"""The result of concept discovery: directions, concept vectors, relevance, outliers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from repwidgets.results import Result

__all__ = ["OUTLIER_KINDS", "ConceptResult"]

#: What made a sample an outlier (``ConceptResult.outlier_kind`` indexes this).
OUTLIER_KINDS = ("other class", "far from every cluster")


@dataclass
class ConceptResult(Result):
    """Directions, concept vectors, relevance and outliers of one layer.

    Shapes: n samples, C channels, m directions, k concepts, K concept labels,
    q flagged outliers.

    Attributes:
        directions: right singular vectors [m, C] (rows, unit norm, sign-oriented).
        singular_values: [m].
        explained_variance: share of the total sum of squares per direction [m]
            (of ``X`` or of ``X - mean``, see ``centered``).
        mean: mean activation [C].
        centered: whether the decomposition was of ``X - mean``.
        vectors: concept vectors [k, C] (unit-normalised mean activation of members).
        source_direction: the direction each concept came from [k].
        source_sign: +1 (the positive end of that direction) or -1 [k].
        cosine: cosine of each concept vector with its signed source direction [k].
        sizes: members per concept [k].
        dominant_class: the concept's class [k] (-1 without labels or predictions).
        purity: share of members in the dominant class [k].
        member_index, member_offsets: the members of concept j are
            ``member_index[member_offsets[j]:member_offsets[j + 1]]`` (sample indices).
        scores: projection of every sample on every concept vector [n, k].
        assignment: the concept each sample is a member of, -1 for none [n].
        relevance: relevance z-scores [n_classes, m] (None when not computed).
        concept_relevance: the same for concept vectors [n_classes, k].
        concept_auc: AUC of ``scores`` for each concept label [k, K] (None without labels).
        outlier_index, outlier_score, outlier_concept, outlier_kind: flagged samples [q]
            (kind indexes ``OUTLIER_KINDS``; concept is the concept concerned, or the
            nearest one for samples far from every cluster).
        embedding: 2-D coordinates of the samples [n, 2] (None when not computed).
        embedding_method: "umap", "pca" or None.
        labels, predictions: true and predicted classes [n] (None when unknown).
        class_names, concept_names: names for classes and concept labels.
        layer, split: where the activations came from (None for the tensor core).
        pool, neuron_axis: how the layer was read (``neuron_axis`` None: the session's
            layout of the layer).
        params: the parameters the result was computed with.
    """

    directions: Tensor
    singular_values: Tensor
    explained_variance: Tensor
    mean: Tensor
    centered: bool
    vectors: Tensor
    source_direction: Tensor
    source_sign: Tensor
    cosine: Tensor
    sizes: Tensor
    dominant_class: Tensor
    purity: Tensor
    member_index: Tensor
    member_offsets: Tensor
    scores: Tensor
    assignment: Tensor
    outlier_index: Tensor
    outlier_score: Tensor
    outlier_concept: Tensor
    outlier_kind: Tensor
    relevance: Tensor | None = None
    concept_relevance: Tensor | None = None
    concept_auc: Tensor | None = None
    embedding: Tensor | None = None
    embedding_method: str | None = None
    labels: Tensor | None = None
    predictions: Tensor | None = None
    class_names: list = field(default_factory=list)
    concept_names: list = field(default_factory=list)
    layer: str | None = None
    split: str | None = None
    pool: str = "mean"
    neuron_axis: int | None = None

    # --- accessors -------------------------------------------------------------------
    @property
    def n_concepts(self) -> int:
        return int(self.vectors.shape[0])

    def members(self, concept: int) -> Tensor:
        """Sample indices of the members of ``concept`` (LongTensor)."""
        j = self._check_concept(concept)
        return self.member_index[self.member_offsets[j] : self.member_offsets[j + 1]]

    def top_samples(self, concept: int, k: int = 16) -> Tensor:
        """The ``k`` samples with the highest projection on ``concept``."""
        j = self._check_concept(concept)
        k = min(int(k), self.scores.shape[0])
        return self.scores[:, j].topk(k).indices

    def class_name(self, k: int) -> str:
        if k < 0:
            return ""
        return str(self.class_names[k]) if k < len(self.class_names) else str(k)

    def describe(self, concept: int, max_labels: int = 3, min_auc: float = 0.75) -> str:
        """The concept labels that best match a concept, e.g. ``"mostly: watermark, red"``.

        Labels are ranked by the AUC of the concept's projection for the label; those
        with AUC >= ``min_auc`` are listed. Empty without concept labels.
        """
        j = self._check_concept(concept)
        if self.concept_auc is None or not self.concept_names:
            return ""
        auc = self.concept_auc[j].numpy()
        order = np.argsort(-auc, kind="stable")
        names = [str(self.concept_names[i]) for i in order[:max_labels] if auc[i] >= min_auc]
        return "mostly: " + ", ".join(names) if names else "no single label"

    def _check_concept(self, concept: int) -> int:
        j = int(concept)
        if not 0 <= j < self.n_concepts:
            raise IndexError(
                f"concept {concept} is out of range: this result has {self.n_concepts} concepts "
                f"(0..{self.n_concepts - 1})."
            )
        return j

    # --- tables ------------------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        """One row per concept: source direction, cosine to it, size, dominant class,
        purity, relevance (z for the dominant class), best-matching labels."""
        rows = []
        for j in range(self.n_concepts):
            dom = int(self.dominant_class[j])
            rel = float("nan")
            if self.concept_relevance is not None and dom >= 0:
                rel = float(self.concept_relevance[dom, j])
            best_label, best_auc = "", float("nan")
            if self.concept_auc is not None and self.concept_names:
                i = int(self.concept_auc[j].argmax())
                best_label, best_auc = str(self.concept_names[i]), float(self.concept_auc[j, i])
            sign = "+" if int(self.source_sign[j]) > 0 else "-"
            rows.append(
                {
                    "concept": j,
                    "source_direction": int(self.source_direction[j]),
                    "end": sign,
                    "cosine": float(self.cosine[j]),
                    "size": int(self.sizes[j]),
                    "dominant_class": self.class_name(dom),
                    "purity": float(self.purity[j]),
                    "relevance": rel,
                    "labels": self.describe(j),
                    "best_label": best_label,
                    "best_label_auc": best_auc,
                }
            )
        return pd.DataFrame(rows, columns=_FRAME_COLUMNS)

    def directions_frame(self) -> pd.DataFrame:
        """One row per direction: singular value, explained variance, most relevant class."""
        rows = []
        for d in range(self.directions.shape[0]):
            row = {
                "direction": d,
                "singular_value": float(self.singular_values[d]),
                "explained_variance": float(self.explained_variance[d]),
            }
            if self.relevance is not None:
                col = self.relevance[:, d]
                finite = torch.nan_to_num(col, nan=-math.inf)
                k = int(finite.argmax())
                row["most_relevant_class"] = self.class_name(k)
                row["relevance"] = float(col[k])
            row["concepts"] = int((self.source_direction == d).sum())
            rows.append(row)
        return pd.DataFrame(rows)

    def outliers(self, unique: bool = True) -> pd.DataFrame:
        """Samples flagged as outliers, highest score first.

        Columns: index (sample index in the split), score (a z-score: of the projection
        for "other class", of the distance to the nearest cluster for "far"), kind,
        concept, class, predicted, reason. ``unique=True`` keeps each sample's highest
        scoring flag.
        """
        rows = []
        for i, s, j, kind in zip(
            self.outlier_index.tolist(),
            self.outlier_score.tolist(),
            self.outlier_concept.tolist(),
            self.outlier_kind.tolist(),
        ):
            label = int(self.labels[i]) if self.labels is not None else -1
            pred = int(self.predictions[i]) if self.predictions is not None else -1
            if kind == 0:
                dom = self.class_name(int(self.dominant_class[j]))
                reason = (
                    f"projects high on concept {j} (z={s:.1f}; its class is {dom}) "
                    f"but is a {self.class_name(label)}"
                )
            else:
                reason = f"far from every cluster (distance z={s:.1f} to nearest, concept {j})"
            rows.append(
                {
                    "index": i,
                    "score": s,
                    "kind": OUTLIER_KINDS[kind],
                    "concept": j,
                    "class": self.class_name(label),
                    "predicted": self.class_name(pred),
                    "reason": reason,
                }
            )
        frame = pd.DataFrame(rows, columns=_OUTLIER_COLUMNS)
        frame = frame.sort_values("score", ascending=False, kind="stable")
        if unique:
            frame = frame.drop_duplicates("index", keep="first")
        return frame.reset_index(drop=True)

    # --- display ---------------------------------------------------------------------------
    def plot(self):
        """Bokeh layout: explained variance per direction, relevance heatmap (classes x
        directions) and the 2-D embedding coloured by concept (when computed)."""
        from bokeh.layouts import column

        from repwidgets import plots

        m = self.directions.shape[0]
        names = [f"d{d}" for d in range(m)]
        figs = [
            plots.bars(
                names,
                self.explained_variance.tolist(),
                title="Explained variance per direction"
                + (" (centered)" if self.centered else " (uncentered: d0 ~ mean)"),
                y_label="share of sum of squares",
            )
        ]
        if self.relevance is not None:
            classes = [self.class_name(k) for k in range(self.relevance.shape[0])]
            figs.append(
                plots.heatmap(
                    torch.nan_to_num(self.relevance).numpy(),
                    names,
                    classes,
                    title="Relevance z-score (class x direction)",
                )
            )
        if self.embedding is not None:
            figs.append(self._embedding_figure())
        return column(*figs)

    def _embedding_figure(self, max_points: int = 5000):
        from bokeh.palettes import Category20_20

        from repwidgets import plots

        n = self.embedding.shape[0]
        rng = np.random.default_rng(0)
        idx = np.sort(rng.choice(n, max_points, replace=False)) if n > max_points else np.arange(n)
        assign = self.assignment.numpy()[idx]
        colour = [Category20_20[a % 20] if a >= 0 else "#c8c8c8" for a in assign]
        labels = []
        for i, a in zip(idx, assign):
            text = f"#{i}"
            if self.labels is not None:
                text += f" {self.class_name(int(self.labels[i]))}"
            labels.append(text + (f", concept {a}" if a >= 0 else ""))
        xy = self.embedding.numpy()[idx]
        return plots.scatter_with_images(
            xy[:, 0],
            xy[:, 1],
            labels=labels,
            colour=colour,
            title=f"Samples ({self.embedding_method}), coloured by concept",
        )


_FRAME_COLUMNS = [
    "concept",
    "source_direction",
    "end",
    "cosine",
    "size",
    "dominant_class",
    "purity",
    "relevance",
    "labels",
    "best_label",
    "best_label_auc",
]
_OUTLIER_COLUMNS = ["index", "score", "kind", "concept", "class", "predicted", "reason"]
