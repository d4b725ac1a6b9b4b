"""The view of a concept discovery result: its samples' 2-D map in a ConceptBrowser.

Colourings: concept (cluster membership), class, predicted class and every concept
label of the data; clicking a point opens its concept in the side panel (description,
size, dominant class, purity, source direction, top images). Images come from the
session the result was computed with (or ``session=``).

Example:
    >>> r = rw.concepts.discover(sess, "features.relu4")   # doctest: +SKIP
    >>> b = r.widget()                                     # same as concepts_view(r)  # doctest: +SKIP
    >>> b.selected          # indices of the lasso-selected samples  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from repwidgets.views._session import session_of
from repwidgets.widgets._transport import to_numpy
from repwidgets.widgets.clusters import Coloring, ConceptBrowser

if TYPE_CHECKING:
    from repwidgets.engines.concepts import ConceptResult
    from repwidgets.session import Session

__all__ = ["concepts_view"]


def concepts_view(
    result: ConceptResult,
    session: Session | None = None,
    *,
    image_size: int = 64,
    max_images: int = 16,
    labels: bool = True,
    **kwargs: Any,
) -> ConceptBrowser:
    """A :class:`ConceptBrowser` over a concept discovery result.

    Args:
        result: the result (it needs a 2-D embedding of its samples).
        session: the session whose thumbnails and concept labels to show (default: the
            one the result came from; without one the browser shows no images).
        image_size: thumbnail size requested from the session, in pixels.
        max_images: top images per concept in the side panel.
        labels: also colour by every concept label of the data.
        **kwargs: passed to :class:`ConceptBrowser` (title, height, point_size, ...).
    """
    if result.embedding is None:
        raise ValueError(
            "This result has no 2-D embedding of the samples. Compute one with "
            "discover(..., embedding='umap') (or 'pca' for a quick linear map)."
        )
    sess = session_of(result, session)
    n, k = int(result.embedding.shape[0]), int(result.n_concepts)
    image_source = None
    if sess is not None and result.split is not None:
        split = result.split

        def image_source(keys: list) -> list[bytes]:
            return list(sess.thumbnails([int(i) for i in keys], split=split, size=image_size))

    kwargs.setdefault(
        "title",
        f"{result.layer or 'activations'} · {k} concepts · {n} samples"
        + (f" ({result.embedding_method})" if result.embedding_method else ""),
    )
    return ConceptBrowser(
        result.embedding,
        _colorings(result, sess if labels else None),
        membership=result.assignment,
        clusters=_clusters(result, max_images),
        image_source=image_source,
        **kwargs,
    )


def _colorings(result: ConceptResult, sess: Session | None) -> list[Coloring]:
    """Concept, class and predicted class, then each concept label of the data (with a session)."""
    k = int(result.n_concepts)
    concept_names = [f"{j}: {result.describe(j) or 'concept'}" for j in range(k)]
    cols = [Coloring("concept", result.assignment.numpy() + 1, ["none", *concept_names], True)]
    classes = list(result.class_names)
    if result.labels is not None:
        cols.append(Coloring("class", result.labels.numpy(), _names(classes, result.labels)))
    if result.predictions is not None:
        predicted = _names(classes, result.predictions)
        cols.append(Coloring("predicted", result.predictions.numpy(), predicted))
    if sess is not None and result.concept_names and result.split is not None:
        masks = np.asarray(to_numpy(sess.concepts(result.split))).astype(bool)
        for i, name in enumerate(result.concept_names):
            cols.append(Coloring(name, masks[:, i].astype(np.uint8), [f"no {name}", name]))
    return cols


def _clusters(result: ConceptResult, max_images: int) -> list[dict]:
    """One side-panel entry per concept: its description, fields and top images."""
    frame = result.to_frame()
    clusters = []
    for j in range(int(result.n_concepts)):
        row = frame.iloc[j]
        clusters.append(
            {
                "id": j,
                "label": f"concept {j}",
                "description": str(row["labels"]),
                "images": [int(i) for i in result.top_samples(j, max_images)],
                "fields": {
                    "members": int(row["size"]),
                    "class": str(row["dominant_class"]),
                    "purity": float(row["purity"]),
                    "from direction": f"{row['end']}d{int(row['source_direction'])}",
                    "cosine": float(row["cosine"]),
                    "relevance z": float(row["relevance"]),
                },
            }
        )
    return clusters


def _names(classes: Sequence[str], values: Any) -> list[str]:
    m = int(np.asarray(to_numpy(values)).max()) + 1 if len(values) else 0
    return [str(classes[i]) if i < len(classes) else str(i) for i in range(max(m, len(classes)))]
