"""Concept discovery by latent-space decomposition (Graziani, O'Mahony et al., TMLR 2023).

A layer's spatially averaged activations ``X`` [n, C] are decomposed by an economy SVD;
its top right singular vectors are directions of high variance in activation space.
Each direction is rated by how much it matters for the prediction (gradient x
activation projected on it, contrasted between the samples predicted as each class and
the rest), and refined into *concept vectors* by clustering the samples that project
highest on it. Samples that project high on a concept but belong to another class than
the concept's, and samples far from every cluster, are returned as outliers: these are
where confounders (watermarks, borders, background) show up.

Two layers of API:

- :func:`discover_activations`: the tensor-level core (activations in, result out);
- :func:`discover`: the session-level entry point (a layer name in, the same result out),
  which also computes the relevance by one forward/backward pass over the split.

Choices where the reference is silent or inconsistent (said here once):

- **Centering** is off by default, as in the reference; the first direction is then
  (close to) the mean activation. ``center=True`` decomposes ``X - mean``. The result
  records which (``r.centered``), and concept vectors, projections and clusters are
  computed in that same (centered or raw) space.
- **Economy SVD.** For ``n >= 2 C`` the right singular vectors come from the
  eigendecomposition of the C x C Gram matrix ``X^T X``, accumulated in float64 over
  row batches (partial sums combine exactly, so the data never needs to be in one
  piece); otherwise from ``torch.linalg.svd(X, full_matrices=False)``. The n x n left
  factor is never formed.
- **Signs.** A singular vector is defined up to sign; we orient each so that its
  ``top_t`` largest-magnitude projections sum to a positive number, i.e. its tail of
  extreme samples lies on the positive side (the side the clustering looks at).
  ``ends="both"`` also clusters the negative end.
- **Relevance** is projected on the right singular vectors (rows of ``r.directions``)
  everywhere; ``z[k, d] = (mean over samples predicted k - mean over the others) / std
  over the others`` (``std`` with ddof=1; NaN when a class has no predicted sample).
- **Clustering.** Ward's method with a distance threshold chooses the number of
  clusters: a merge is cut when it would explain more than ``min_merge_share`` of the
  pool's sum of squares (or above an absolute ``distance_threshold``); k-means refines
  the clusters from Ward's centroids. Members farther from their centroid than
  ``median + outlier_mad * 1.4826 * MAD`` of the cluster's distances are dropped as
  outliers; clusters smaller than ``min_cluster_size`` are dropped. A cluster whose
  members overlap an earlier concept's (Jaccard >= ``dedupe_overlap``) is the same
  concept seen from another direction and is not repeated.
- **Dominant class** of a concept: the most frequent *predicted* class among its
  members (what the model makes of the concept; the true labels when there are no
  predictions). An outlier of the first kind is a sample among the ``top_t`` highest
  projections on a concept whose *true* class differs from that class.

Example:
    >>> import torch
    >>> X = torch.rand(500, 16)
    >>> r = discover_activations(X, n_components=4, top_t=50, embedding=None, progress=False)
    >>> r.directions.shape
    torch.Size([4, 16])
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repwidgets._progress import progress_bar
from repwidgets.engines import _checks
from repwidgets.engines.embedding import embed_points
from repwidgets.engines.ranks import auc_matrix
from repwidgets.results import Result, notebook_plot

__all__ = [
    "ConceptResult",
    "concept_map",
    "concept_map_activations",
    "decompose",
    "demo_section",
    "discover",
    "discover_activations",
    "layer_relevance",
    "plot_concept_maps",
    "relevance_z",
]

OUTLIER_KINDS = ("other class", "far from every cluster")
OBJECTIVES = ("predicted", "label", "loss")
_MAD_SCALE = 1.4826  # MAD -> standard deviation for normal data


# ----------------------------------------------------------------------------- result
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

    # --- views ---------------------------------------------------------------------------
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

    def widget(self, **kwargs):
        """The interactive :class:`~repwidgets.widgets.clusters.ConceptBrowser`."""
        from repwidgets.widgets.clusters import ConceptBrowser

        return ConceptBrowser.from_result(self, **kwargs)


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


# ----------------------------------------------------------------------------- validation
def _as_float_matrix(X, name: str = "X") -> Tensor:
    if isinstance(X, np.ndarray):
        X = torch.from_numpy(X)
    if not isinstance(X, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(X).__name__}.")
    if X.ndim == 4:
        raise ValueError(
            f"{name} has shape {tuple(X.shape)}: expected pooled activations [n, C]. "
            f"Average the spatial dimensions first, e.g. {name}.mean(dim=(2, 3))."
        )
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix [n, C]; got shape {tuple(X.shape)}.")
    if not X.is_floating_point():
        X = X.float()
    bad = ~torch.isfinite(X)
    if bool(bad.any()):
        cols = torch.nonzero(bad.any(dim=0)).flatten().tolist()
        raise ValueError(
            f"{name} contains NaN or infinite values in columns (neurons) {cols[:10]}"
            f"{' ...' if len(cols) > 10 else ''}. Check the layer or drop those neurons."
        )
    return X


def _as_index_vector(values, n: int, name: str) -> Tensor | None:
    if values is None:
        return None
    t = torch.as_tensor(values).detach().cpu().reshape(-1)
    if t.is_floating_point():
        raise TypeError(f"{name} must hold integer class indices, got dtype {t.dtype}.")
    if t.shape[0] != n:
        raise ValueError(f"{name} has {t.shape[0]} entries but X has {n} samples.")
    return t.long().clone()


# ----------------------------------------------------------------------------- decomposition
def decompose(
    X: Tensor,
    n_components: int | float = 32,
    center: bool = False,
    batch_rows: int | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Economy SVD of ``X`` [n, C]: the top right singular vectors, never the left factor.

    Args:
        X: activations [n, C] (any device; the work stays there).
        n_components: number of directions m, or a float in (0, 1): the fewest
            directions whose explained variance adds up to at least that share.
        center: decompose ``X - X.mean(0)`` instead of ``X``.
        batch_rows: rows per batch when accumulating the Gram matrix (bounds memory).

    Returns:
        ``(V [m, C], singular values [m], explained variance share [m], mean [C])``,
        float32 on X's device, singular values descending. Signs are as the
        eigensolver returns them (see :func:`discover_activations` for orientation).

    Example:
        >>> V, S, ev, mu = decompose(torch.rand(100, 8), n_components=3)
        >>> V.shape, bool((S[:-1] >= S[1:]).all())
        (torch.Size([3, 8]), True)
    """
    X = _as_float_matrix(X)
    n, C = X.shape
    _checks.n_components(n_components, n, C)
    if n > 1 and bool((X[:1] == X).all()):
        raise ValueError(
            "X has no variation: every sample has the same activation vector, so there is "
            "nothing to discover. Check that the layer is not dead (e.g. all zeros after a "
            "ReLU) and that the samples differ."
        )
    mean = X.mean(dim=0, dtype=torch.float64)
    if n >= 2 * C:
        rows = batch_rows or max(1, (64 * 2**20) // (8 * C))
        gram = torch.zeros(C, C, dtype=torch.float64, device=X.device)
        for start in range(0, n, rows):
            block = X[start : start + rows].to(torch.float64)
            gram.addmm_(block.T, block)
        if center:
            gram -= n * torch.outer(mean, mean)
        gram = (gram + gram.T) / 2
        evals, evecs = torch.linalg.eigh(gram)
        evals = evals.flip(0).clamp_min(0)
        S = evals.sqrt()
        V = evecs.flip(1).T
        total = gram.diagonal().sum()
    else:
        Xd = X.to(torch.float64)
        if center:
            Xd = Xd - mean
        _, S, V = torch.linalg.svd(Xd, full_matrices=False)
        total = (Xd * Xd).sum()
    if float(total) <= 0 or float(S[0]) <= 1e-12 * math.sqrt(max(float(total), 1e-300)):
        raise ValueError(
            "X has no variation to decompose: every sample has the same activation vector"
            + (" (after centering)" if center else "")
            + ". Check that the layer is not dead (all zeros) and that the samples differ."
        )
    share = (S * S) / total
    m = _n_kept(n_components, share)
    rank = int((1e-6 * S[0] < S).sum())
    if rank < m:
        warnings.warn(
            f"X has rank {rank} (numerically), fewer than the {m} directions asked for: "
            f"keeping {rank}.",
            stacklevel=2,
        )
        m = rank
    return (
        V[:m].to(torch.float32).contiguous(),
        S[:m].to(torch.float32),
        share[:m].to(torch.float32),
        mean.to(torch.float32),
    )


def _n_kept(n_components: int | float, share: Tensor) -> int:
    if isinstance(n_components, float) and not float(n_components).is_integer():
        cum = share.cumsum(0)
        return int(min(int((cum < n_components).sum()) + 1, share.shape[0]))
    return int(n_components)


def _orient(P: Tensor, top_t: int) -> Tensor:
    """Signs [m] that put each column's extreme tail (top_t largest |P|) on the positive side."""
    t = min(top_t, P.shape[0])
    idx = P.abs().topk(t, dim=0).indices
    tail = P.gather(0, idx).sum(dim=0)
    return torch.where(tail < 0, -1.0, 1.0).to(P.dtype)


# ----------------------------------------------------------------------------- relevance
def layer_relevance(
    model: nn.Module,
    layer: nn.Module,
    batches: Iterable,
    *,
    objective: str = "predicted",
    sign: float = 1.0,
    device: torch.device | str | None = None,
    preprocess=None,
    total: int | None = None,
    progress: bool = True,
) -> tuple[Tensor, Tensor]:
    """Per-sample relevance of a layer's channels: gradient x rectified activation.

    For every sample, the gradient of the objective w.r.t. the layer's output ``A``
    ([C, H, W] or [C]) is multiplied elementwise by ``relu(A)`` and averaged over the
    spatial positions, giving a vector [C]. One forward and one backward pass per
    batch; the backward pass stops at the layer (the layer's output is made a leaf),
    so nothing before it is differentiated and no parameter gradient is accumulated.

    Args:
        model: maps a batch of inputs to logits [b, n_classes]; put in eval mode for
            the pass (and restored afterwards).
        layer: the module whose output is explained (a module of ``model``).
        batches: iterable of inputs ``x`` or of ``(x, y)`` pairs (``y`` is needed for
            ``objective="label"`` or ``"loss"``).
        objective: "predicted" (the logit of the predicted class, the default),
            "label" (the logit of the true class) or "loss" (cross-entropy).
        sign: multiplies the objective (e.g. -1 with "loss" to see what lowers the loss).
        device: where to run (default: the device of the model's first parameter).
        preprocess: applied to ``x`` before the model (e.g. a session's normalisation).
        total: number of batches, for the progress bar.

    Returns:
        ``(R [n, C], predictions [n])`` on ``device``; R is float32.

    Example:
        >>> head = nn.Sequential(nn.Identity(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        ...                      nn.Linear(4, 3))
        >>> R, pred = layer_relevance(head, head[0], [torch.rand(5, 4, 2, 2)], progress=False)
        >>> R.shape
        torch.Size([5, 4])
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}; got {objective!r}.")
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    device = torch.device(device)
    store: dict[str, Tensor] = {}

    def hook(_module, _inputs, output):
        first = output[0] if isinstance(output, (tuple, list)) else output
        if not isinstance(first, Tensor):
            raise TypeError(
                f"The layer returns {type(first).__name__}, not a tensor; pick a layer whose "
                "output is an activation tensor."
            )
        leaf = first.detach().requires_grad_(True)
        store["a"] = leaf
        replaced = leaf.clone()  # later in-place ops (e.g. ReLU(inplace=True)) act on the copy
        if isinstance(output, tuple):
            return (replaced, *output[1:])
        if isinstance(output, list):
            return [replaced, *output[1:]]
        return replaced

    handle = layer.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    out_r: list[Tensor] = []
    out_p: list[Tensor] = []
    try:
        for batch in progress_bar(batches, total=total, desc="relevance", enable=progress):
            if isinstance(batch, (tuple, list)):
                x, y = batch[0], (batch[1] if len(batch) > 1 else None)
            else:
                x, y = batch, None
            x = x.to(device)
            if preprocess is not None:
                x = preprocess(x)
            with torch.enable_grad():
                logits = model(x)
                if "a" not in store:
                    raise ValueError(
                        "The layer was not called during the forward pass: it is not part of "
                        "this model's computation. Pick a layer the model uses."
                    )
                a = store.pop("a")
                pred = logits.argmax(dim=1)
                if objective == "predicted":
                    obj = logits.gather(1, pred[:, None]).sum()
                else:
                    if y is None:
                        raise ValueError(
                            f"objective={objective!r} needs the true labels: pass (x, y) batches."
                        )
                    y = torch.as_tensor(y, device=logits.device).long()
                    if objective == "label":
                        obj = logits.gather(1, y[:, None]).sum()
                    else:
                        obj = F.cross_entropy(logits.float(), y, reduction="sum")
                (grad,) = torch.autograd.grad(float(sign) * obj, a, allow_unused=True)
            if grad is None:
                grad = torch.zeros_like(a)
            rel = grad * a.detach().clamp_min(0)
            if rel.ndim > 2:
                rel = rel.flatten(2).mean(dim=2)
            out_r.append(rel.detach().float())
            out_p.append(pred.detach())
    finally:
        handle.remove()
        model.train(was_training)
    if not out_r:
        raise ValueError("No batches were given: there is nothing to compute relevance on.")
    return torch.cat(out_r), torch.cat(out_p)


def relevance_z(projections: Tensor, predictions: Tensor, n_classes: int) -> Tensor:
    """z[k, d] = (mean of projections over samples predicted k - mean over the others)
    / std over the others (ddof=1).

    Args:
        projections: [n, m] relevance projected on m directions.
        predictions: [n] predicted class per sample.
        n_classes: number of classes (rows of the output).

    Returns:
        [n_classes, m] float32 (NaN for a class without predicted samples, or when the
        others have zero spread).

    Example:
        >>> z = relevance_z(torch.tensor([[3.0], [0.0], [1.0]]), torch.tensor([0, 1, 1]), 2)
        >>> round(float(z[0, 0]), 3)
        3.536
    """
    P = projections.to(torch.float64)
    pred = predictions.to(P.device).long()
    z = torch.full((n_classes, P.shape[1]), float("nan"), dtype=torch.float64, device=P.device)
    for k in range(n_classes):
        inside = pred == k
        n_in, n_out = int(inside.sum()), int((~inside).sum())
        if n_in == 0 or n_out < 2:
            continue
        others = P[~inside]
        std = others.std(dim=0)
        diff = P[inside].mean(dim=0) - others.mean(dim=0)
        z[k] = torch.where(std > 0, diff / std.clamp_min(1e-300), torch.nan)
    return z.float()


# ----------------------------------------------------------------------------- clustering
def _robust_cut(dist: np.ndarray, k_mad: float) -> tuple[float, float, float]:
    """(median, scale, cut) of distances to a centroid; members beyond ``cut`` are outliers."""
    med = float(np.median(dist))
    scale = _MAD_SCALE * float(np.median(np.abs(dist - med)))
    if scale <= 0:
        scale = max(1e-6 * med, 1e-12)
    return med, scale, med + k_mad * scale


def _cluster_pool(
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
        _, _, cut = _robust_cut(dist, outlier_mad)
        rows = rows[dist <= cut]
        if rows.size >= min_size:
            clusters.append(rows)
    return clusters


# ----------------------------------------------------------------------------- core
def discover_activations(
    X: Tensor | np.ndarray,
    *,
    n_components: int | float = 32,
    center: bool = False,
    top_t: int = 100,
    relevance: Tensor | None = None,
    grads: Tensor | None = None,
    predictions: Tensor | None = None,
    labels: Tensor | None = None,
    concepts: Tensor | None = None,
    concept_names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    n_classes: int | None = None,
    ends: str = "positive",
    distance_threshold: float | None = None,
    min_merge_share: float = 0.2,
    max_clusters: int = 6,
    min_cluster_size: int | None = None,
    outlier_mad: float = 3.0,
    dedupe_overlap: float = 0.5,
    min_purity: float = 0.5,
    embedding: str | None = "umap",
    seed: int = 0,
    progress: bool = True,
) -> ConceptResult:
    """Concept discovery on a matrix of pooled activations (the tensor-level core).

    Args:
        X: spatially averaged activations [n, C] (tensor on any device, or numpy).
        n_components: directions to keep (int), or a share of variance in (0, 1).
        center: decompose ``X - mean`` (default False, as in the reference: the first
            direction is then the mean direction).
        top_t: samples taken from the top of each direction for clustering; also the
            number of top projections inspected for outliers per concept.
        relevance: per-sample gradient x rectified activation, spatially averaged [n, C]
            (see :func:`layer_relevance`). Without it (and without ``grads``) there are
            no relevance z-scores.
        grads: alternatively, gradients of the class score w.r.t. ``X`` [n, C] (for a
            dense layer); relevance is then ``grads * relu(X)``.
        predictions: predicted class per sample [n]; needed for relevance z-scores.
        labels: true class per sample [n]; needed for "other class" outliers.
        concepts: boolean concept labels [n, K] with ``concept_names`` [K]: each concept
            is described by the labels its projection separates best (AUC).
        class_names: names of the classes (for tables and plots).
        n_classes: number of classes (default: from class_names or the labels).
        ends: "positive" (cluster the top of each direction) or "both" (also the bottom).
        distance_threshold: absolute Ward distance threshold (overrides min_merge_share).
        min_merge_share: Ward merges that would explain more than this share of the
            pool's sum of squares are cut: that decides the number of clusters.
        max_clusters: at most this many clusters per direction.
        min_cluster_size: clusters with fewer inlier members are dropped
            (default max(5, top_t // 20)).
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
        progress: show a progress bar over directions.

    Returns:
        :class:`ConceptResult` (tensors on the CPU).

    Example:
        >>> X = torch.rand(400, 12)
        >>> r = discover_activations(X, n_components=3, top_t=40, embedding=None,
        ...                          progress=False)
        >>> r.to_frame().columns[:3].tolist()
        ['concept', 'source_direction', 'end']
    """
    X = _as_float_matrix(X)
    n, C = X.shape
    dev = X.device
    _checks.n_components(n_components, n, C)
    if ends not in ("positive", "both"):
        raise ValueError(f"ends must be 'positive' or 'both'; got {ends!r}.")
    if embedding not in ("umap", "pca", None):
        raise ValueError(f"embedding must be 'umap', 'pca' or None; got {embedding!r}.")
    if int(top_t) < 2:
        raise ValueError(f"top_t must be at least 2; got {top_t}.")
    top_t = min(int(top_t), n)
    min_size = int(min_cluster_size) if min_cluster_size is not None else max(5, top_t // 20)
    min_size = max(1, min(min_size, top_t))
    predictions = _as_index_vector(predictions, n, "predictions")
    labels = _as_index_vector(labels, n, "labels")
    if relevance is not None and grads is not None:
        raise ValueError("Pass either relevance or grads, not both.")
    if grads is not None:
        grads = _as_float_matrix(grads, "grads").to(dev)
        if grads.shape != X.shape:
            raise ValueError(f"grads has shape {tuple(grads.shape)} but X has {tuple(X.shape)}.")
        relevance = grads * X.clamp_min(0)
    if relevance is not None:
        relevance = _as_float_matrix(relevance, "relevance").to(dev)
        if relevance.shape != X.shape:
            raise ValueError(
                f"relevance has shape {tuple(relevance.shape)} but X has {tuple(X.shape)}."
            )
        if predictions is None:
            raise ValueError(
                "relevance z-scores contrast samples predicted as each class: pass predictions "
                "(e.g. logits.argmax(1))."
            )
    if concepts is not None:
        concepts = torch.as_tensor(concepts).detach().cpu().bool()
        if concepts.ndim != 2 or concepts.shape[0] != n:
            raise ValueError(
                f"concepts must be a boolean matrix [n={n}, K]; got shape {tuple(concepts.shape)}."
            )
        concept_names = list(concept_names or [f"c{i}" for i in range(concepts.shape[1])])
        if len(concept_names) != concepts.shape[1]:
            raise ValueError(
                f"concepts has {concepts.shape[1]} columns but {len(concept_names)} concept_names."
            )
    known = [t for t in (labels, predictions) if t is not None]
    if n_classes is None:
        if class_names is not None:
            n_classes = len(class_names)
        elif known:
            n_classes = int(max(int(t.max()) for t in known)) + 1
        else:
            n_classes = 0
    class_names = (
        list(class_names) if class_names is not None else [str(k) for k in range(n_classes)]
    )

    # 1-2. decomposition, oriented directions
    V, S, share, mean = decompose(X, n_components, center)
    Xc = X - mean if center else X
    P = Xc @ V.T  # [n, m]
    signs = _orient(P, top_t)
    V = V * signs[:, None]
    P = P * signs[None, :]

    # 3. relevance of directions
    rel_z = None
    if relevance is not None:
        rel_z = relevance_z(relevance @ V.T, predictions, n_classes).cpu()

    # 4. clustering of each direction's top samples
    def rows(idx: np.ndarray) -> np.ndarray:  # float64 copies of a few rows, never all of X
        return Xc[torch.as_tensor(idx, device=dev)].detach().cpu().numpy().astype(np.float64)

    found, pools = _refine(
        rows,
        P.detach().cpu().numpy(),
        V.detach().cpu().numpy().astype(np.float64),
        top_t=top_t,
        ends=ends,
        dedupe_overlap=dedupe_overlap,
        progress=progress,
        distance_threshold=distance_threshold,
        min_merge_share=min_merge_share,
        max_clusters=max_clusters,
        min_size=min_size,
        outlier_mad=outlier_mad,
        seed=seed,
    )
    k = len(found)
    if k == 0:
        warnings.warn(
            "No concept survived the clustering (every cluster was smaller than "
            f"min_cluster_size={min_size}). Lower min_cluster_size or raise top_t.",
            stacklevel=2,
        )
    vectors = (
        torch.tensor(np.stack([c.vector for c in found]), dtype=torch.float32)
        if k
        else (torch.zeros(0, C))
    )
    scores = (Xc @ vectors.to(dev).T).cpu() if k else torch.zeros(n, 0)

    # class of each concept: the most frequent prediction among its members
    owner = predictions if predictions is not None else labels
    truth = labels if labels is not None else predictions
    dominant = torch.full((k,), -1, dtype=torch.long)
    purity = torch.full((k,), float("nan"))
    if owner is not None:
        for j, c in enumerate(found):
            counts = torch.bincount(owner[torch.from_numpy(c.members)], minlength=n_classes)
            dominant[j] = int(counts.argmax())
            purity[j] = float(counts.max()) / len(c.members)

    # 5. outliers
    outliers = _outliers(
        rows, scores, found, pools, truth, dominant, purity, top_t, min_purity, outlier_mad
    )

    # membership (a sample in several clusters goes to the one it sits most centrally in)
    assignment = torch.full((n,), -1, dtype=torch.long)
    best = torch.full((n,), math.inf, dtype=torch.float64)
    for j, c in enumerate(found):
        mem = torch.from_numpy(c.members)
        closer = torch.from_numpy(c.zdist) < best[mem]
        assignment[mem[closer]] = j
        best[mem[closer]] = torch.from_numpy(c.zdist)[closer]
    sizes = torch.tensor([len(c.members) for c in found], dtype=torch.long)
    offsets = torch.zeros(k + 1, dtype=torch.long)
    offsets[1:] = sizes.cumsum(0) if k else offsets[1:]
    member_index = (
        torch.from_numpy(np.concatenate([c.members for c in found])).long()
        if k
        else torch.zeros(0, dtype=torch.long)
    )

    concept_rel = None
    if relevance is not None and k:
        concept_rel = relevance_z(relevance @ vectors.to(dev).T, predictions, n_classes).cpu()
    elif relevance is not None:
        concept_rel = torch.zeros(n_classes, 0)
    concept_auc = None
    if concepts is not None:
        concept_auc = auc_matrix(scores, concepts).float().reshape(k, concepts.shape[1])

    emb, method = embed_points(Xc, embedding, seed)

    return ConceptResult(
        directions=V.detach().cpu(),
        singular_values=S.cpu(),
        explained_variance=share.cpu(),
        mean=mean.cpu(),
        centered=bool(center),
        vectors=vectors,
        source_direction=torch.tensor([c.direction for c in found], dtype=torch.long),
        source_sign=torch.tensor([c.sign for c in found], dtype=torch.long),
        cosine=torch.tensor([c.cosine for c in found], dtype=torch.float32),
        sizes=sizes,
        dominant_class=dominant,
        purity=purity,
        member_index=member_index,
        member_offsets=offsets,
        scores=scores.float(),
        assignment=assignment,
        outlier_index=outliers[0],
        outlier_score=outliers[1],
        outlier_concept=outliers[2],
        outlier_kind=outliers[3],
        relevance=rel_z,
        concept_relevance=concept_rel,
        concept_auc=concept_auc,
        embedding=emb,
        embedding_method=method,
        labels=labels,
        predictions=predictions,
        class_names=class_names,
        concept_names=list(concept_names) if concepts is not None else [],
        params={
            "n_components": n_components,
            "top_t": top_t,
            "ends": ends,
            "distance_threshold": distance_threshold,
            "min_merge_share": min_merge_share,
            "max_clusters": max_clusters,
            "min_cluster_size": min_size,
            "outlier_mad": outlier_mad,
            "dedupe_overlap": dedupe_overlap,
            "min_purity": min_purity,
            "seed": seed,
        },
    )


@dataclass
class _Found:
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


def _refine(
    rows,
    P: np.ndarray,
    V: np.ndarray,
    *,
    top_t: int,
    ends: str,
    dedupe_overlap: float,
    progress: bool,
    **cluster_kwargs,
) -> tuple[list[_Found], list[np.ndarray]]:
    """Cluster the top_t samples of every direction; return the concepts and the pools."""
    found: list[_Found] = []
    pools: list[np.ndarray] = []
    tasks = [(d, s) for d in range(P.shape[1]) for s in ((1, -1) if ends == "both" else (1,))]
    for d, s in progress_bar(tasks, total=len(tasks), desc="clustering", enable=progress):
        pool = np.argsort(-s * P[:, d], kind="stable")[:top_t]
        pools.append(pool)
        Z = rows(pool)
        for part in _cluster_pool(Z, **cluster_kwargs):
            order = np.argsort(pool[part])
            members, Zm = pool[part][order], Z[part][order]
            if any(_jaccard(members, c.members) >= dedupe_overlap for c in found):
                continue  # the same concept, seen from another direction
            centroid = Zm.mean(axis=0)
            norm = float(np.linalg.norm(centroid))
            if norm <= 0:
                continue
            dist = np.linalg.norm(Zm - centroid, axis=1)
            med, scale, _ = _robust_cut(dist, cluster_kwargs["outlier_mad"])
            found.append(
                _Found(
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


def _outliers(
    rows,
    scores: Tensor,
    found: list[_Found],
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


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / max(1, a.size + b.size - inter)


# ----------------------------------------------------------------------------- session level
def discover(
    sess,
    layer: str,
    n_components: int | float = 32,
    center: bool = False,
    top_t: int = 100,
    split: str = "test",
    *,
    relevance: bool = True,
    objective: str = "predicted",
    sign: float = 1.0,
    progress: bool | None = None,
    **kwargs,
) -> ConceptResult:
    """Concept discovery for a layer of a session's model.

    Pulls the mean-pooled activations of ``layer`` over ``split``, the predictions, the
    true labels and (when the data has them) the concept labels; computes the relevance
    with one forward/backward pass over the split (skip with ``relevance=False``); then
    runs :func:`discover_activations` (extra keyword arguments go there).

    Args:
        sess: a :class:`repwidgets.Session`.
        layer: a name from ``sess.layers()``.
        n_components, center, top_t: see :func:`discover_activations`.
        split: the data split to explore.
        relevance: compute gradient x activation relevance.
        objective, sign: what the gradient is of (see :func:`layer_relevance`).
        progress: progress bars (default: the session's setting).

    Example:
        >>> import repwidgets as rw
        >>> sess = rw.demo_session()                                  # doctest: +SKIP
        >>> r = rw.concepts.discover(sess, "features.conv4", n_components=8)  # doctest: +SKIP
        >>> r.to_frame().head()                                       # doctest: +SKIP
    """
    from torch.utils.data import DataLoader

    progress = sess.progress if progress is None else progress
    module = sess.module(layer)
    of = f"layer {layer!r} on split {split!r}"
    n_split, width = _checks.split_size(sess, split), _checks.layer_width(sess, layer)
    _checks.n_components(n_components, n_split, width, of=of)
    _checks.positive_int("top_t", top_t)
    _checks.one_of("objective", objective, OBJECTIVES)
    _checks.one_of("embedding", kwargs.get("embedding", "umap"), ("umap", "pca", None))
    _checks.one_of("ends", kwargs.get("ends", "positive"), ("positive", "both"))
    X = sess.activations(layer, split=split, pool="mean")
    labels = sess.targets(split)
    try:
        concepts = sess.concepts(split)
        names = sess.concept_names
    except ValueError:
        concepts, names = None, None
    R = None
    if relevance:
        loader = DataLoader(sess.dataset(split), batch_size=sess.batch_size, shuffle=False)
        R, predictions = layer_relevance(
            sess.model,
            module,
            loader,
            objective=objective,
            sign=sign,
            device=sess.device,
            preprocess=sess.preprocess,
            total=len(loader),
            progress=progress,
        )
        predictions = predictions.cpu()
    else:
        predictions = sess.predictions(split)
    X = X.to(sess.device) if X.device.type == "cpu" and sess.device.type != "cpu" else X
    result = discover_activations(
        X,
        n_components=n_components,
        center=center,
        top_t=top_t,
        relevance=R.to(X.device) if R is not None else None,
        predictions=predictions,
        labels=labels,
        concepts=concepts,
        concept_names=names,
        class_names=sess.class_names,
        progress=progress,
        **kwargs,
    )
    result.layer = layer
    result.split = split
    result.params.update({"objective": objective, "sign": sign, "relevance": bool(relevance)})
    result._session = sess
    return result


def concept_map_activations(
    A: Tensor, vector: Tensor, size: tuple[int, int] | None = None
) -> Tensor:
    """Spatial concept maps ``v^T A[:, h, w]``, optionally upsampled (bilinear) to ``size``.

    Args:
        A: activation maps [b, C, H, W].
        vector: concept vector [C].
        size: output (height, width), e.g. the input image size.

    Returns:
        [b, H', W'] float32.

    Example:
        >>> concept_map_activations(torch.ones(2, 3, 4, 4), torch.ones(3), (8, 8)).shape
        torch.Size([2, 8, 8])
    """
    if A.ndim != 4:
        raise ValueError(
            f"Concept maps need spatial activations [b, C, H, W]; got shape {tuple(A.shape)}. "
            "Pick a convolutional layer."
        )
    vector = torch.as_tensor(vector, dtype=A.dtype, device=A.device).reshape(-1)
    if vector.shape[0] != A.shape[1]:
        raise ValueError(
            f"The vector has {vector.shape[0]} entries but A has {A.shape[1]} channels."
        )
    maps = torch.einsum("c,bchw->bhw", vector, A)
    if size is not None and tuple(size) != tuple(maps.shape[1:]):
        maps = F.interpolate(maps[:, None], size=tuple(size), mode="bilinear", align_corners=False)
        maps = maps[:, 0]
    return maps.float()


def concept_map(
    sess,
    result: ConceptResult,
    concept: int,
    indices: Sequence[int] | Tensor | None = None,
    upsample: bool = True,
) -> Tensor:
    """Spatial concept maps of ``concept`` over samples of the result's split.

    Runs the model on the images of ``indices`` (default: the concept's 8 top samples),
    captures the layer's maps A [b, C, H, W] and returns ``v^T A[:, h, w]`` for the
    concept vector v, upsampled to the input size (CPU tensor [b, H, W]).

    Example:
        >>> maps = rw.concepts.concept_map(sess, r, 0)   # doctest: +SKIP
    """
    if result.layer is None or result.split is None:
        raise ValueError(
            "This result was computed from tensors, not from a session layer: use "
            "concept_map_activations(A, r.vectors[concept]) with the layer's maps."
        )
    j = result._check_concept(concept)
    if indices is None:
        indices = result.top_samples(j, 8)
    idx = [int(i) for i in torch.as_tensor(indices).reshape(-1).tolist()]
    module = sess.module(result.layer)
    store: dict[str, Tensor] = {}

    def hook(_module, _inputs, output):
        first = output[0] if isinstance(output, (tuple, list)) else output
        store["a"] = first.detach()

    images = sess.images(idx, split=result.split)
    outs = []
    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            for start in range(0, len(idx), sess.batch_size):
                sess.forward(images[start : start + sess.batch_size])
                A = store.pop("a").float()
                if result.centered:
                    A = A - result.mean.to(A.device)[None, :, None, None]
                size = tuple(images.shape[-2:]) if upsample else None
                outs.append(concept_map_activations(A, result.vectors[j].to(A.device), size).cpu())
    finally:
        handle.remove()
    if not outs:
        return torch.zeros(0, *images.shape[-2:])
    return torch.cat(outs)


@notebook_plot
def plot_concept_maps(
    sess,
    result: ConceptResult,
    concept: int,
    indices: Sequence[int] | Tensor | None = None,
    size: int = 120,
    alpha: float = 0.6,
):
    """Bokeh grid of samples with their concept map overlaid in red (see :func:`concept_map`).

    The maps of the shown samples are scaled together (0 to their common maximum), so a
    weak response looks weak; negative values are clipped.

    Example:
        >>> from bokeh.io import show
        >>> show(rw.concepts.plot_concept_maps(sess, r, 0))   # doctest: +SKIP
    """
    from bokeh.layouts import gridplot
    from bokeh.plotting import figure

    j = result._check_concept(concept)
    if indices is None:
        indices = result.top_samples(j, 8)
    idx = [int(i) for i in torch.as_tensor(indices).reshape(-1).tolist()]
    maps = concept_map(sess, result, j, idx).clamp_min(0)
    maps = maps / maps.max().clamp_min(1e-12)
    images = sess.images(idx, split=result.split).float().clamp(0, 1)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    red = torch.tensor([1.0, 0.0, 0.0])[:, None, None]
    figs = []
    for i, img, m in zip(idx, images[:, :3], maps):
        a = alpha * m[None]
        mix = (img * (1 - a) + red * a).clamp(0, 1)
        rgba = torch.cat([mix, torch.ones_like(mix[:1])]).mul(255).round().to(torch.uint8)
        arr = rgba.permute(1, 2, 0).flip(0).contiguous().numpy()  # bokeh's origin: bottom left
        H, W = arr.shape[:2]
        fig = figure(
            width=size,
            height=size,
            x_range=(0, W),
            y_range=(0, H),
            tools="",
            toolbar_location=None,
            title=f"#{i}",
        )
        fig.image_rgba(image=[arr.view(np.uint32).reshape(H, W)], x=0, y=0, dw=W, dh=H)
        fig.axis.visible = False
        fig.grid.visible = False
        figs.append(fig)
    return gridplot(figs, ncols=min(8, len(figs)), toolbar_location=None)


# ----------------------------------------------------------------------------- demo
def _last_conv_activation(sess) -> str:
    """The activation module after the last convolution (non-negative maps), else the
    last convolution itself, else the layer before the last one."""
    leaves = [(n, m) for n, m in sess.model.named_modules() if n and not list(m.children())]
    last = None
    for i, (name, module) in enumerate(leaves):
        if isinstance(module, nn.Conv2d):
            last = name
            for nxt, nxt_mod in leaves[i + 1 : i + 4]:
                if isinstance(nxt_mod, nn.Conv2d):
                    break
                if isinstance(nxt_mod, (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU)):
                    last = nxt
                    break
    return last if last is not None else sess.layers()[-2]


def demo_section(sess, layer: str | None = None) -> dict:
    """A report section for the demo session: concepts after the last convolution.

    Reports the concept that best separates the data's artifact (its AUC and concept
    maps over its top samples), how enriched the outliers are in artifact samples of
    other classes, and the most relevant concepts.

    Returns ``{"title", "summary_lines", "figures"}``.
    """
    if layer is None:
        layer = _last_conv_activation(sess)
    r = discover(sess, layer, n_components=16, top_t=100, embedding="pca", progress=False)
    frame = r.to_frame()
    figures = [r.plot()]
    lines = [
        f"Layer {layer}, split {r.split}: {r.directions.shape[0]} directions "
        f"({'centered' if r.centered else 'uncentered'}), "
        f"{float(r.explained_variance.sum()):.1%} of the sum of squares; "
        f"{r.n_concepts} concepts after clustering.",
    ]
    if r.concept_auc is not None and r.n_concepts:
        data_cfg = getattr(sess.data, "config", {}) or {}
        artifact = data_cfg.get("artifact")
        if artifact in r.concept_names:
            a = r.concept_names.index(artifact)
            j = int(r.concept_auc[:, a].argmax())
            lines.append(
                f"Concept {j} separates the artifact '{artifact}' with AUC "
                f"{float(r.concept_auc[j, a]):.3f} ({frame.loc[j, 'labels']}; "
                f"dominant class {frame.loc[j, 'dominant_class']})."
            )
            if len(sess.layer_shapes()[layer]) == 3:  # spatial maps: where it responds
                figures.append(plot_concept_maps(sess, r, j))
            out = r.outliers()
            if len(out) and r.labels is not None:
                has = sess.concepts(r.split)[:, a]
                spurious = data_cfg.get("spurious_class")
                if isinstance(spurious, int):
                    wrong = has & (sess.targets(r.split) != spurious)
                    flagged_idx = torch.tensor(out["index"].to_numpy(), dtype=torch.long)
                    flagged = float(wrong[flagged_idx].float().mean())
                    lines.append(
                        f"{len(out)} outlier samples; {flagged:.1%} carry the artifact in "
                        f"another class (base rate {float(wrong.float().mean()):.1%})."
                    )
    lines.append("Most relevant concepts (relevance z for their class):")
    for _, row in frame.sort_values("relevance", ascending=False, kind="stable").head(6).iterrows():
        lines.append(
            f"  concept {row['concept']}: from d{row['source_direction']} (cos "
            f"{row['cosine']:.2f}), {row['size']} samples, class {row['dominant_class']} "
            f"({row['purity']:.0%}), relevance z {row['relevance']:.2f}, {row['labels']}"
        )
    return {
        "title": "Concept discovery",
        "summary_lines": lines,
        "figures": figures,
        "result": r,
    }
