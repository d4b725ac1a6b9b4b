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

Both take a :class:`ConceptConfig` (or its settings as keyword arguments).

Choices where the reference is silent or inconsistent (said here once):

- **Centering** is off by default, as in the reference; the first direction is then
  (close to) the mean activation. ``center=True`` decomposes ``X - mean``. The result
  records which (``r.centered``), and concept vectors, projections and clusters are
  computed in that same (centered or raw) space.
- **Economy SVD** and **signs**: see :mod:`.decompose`; ``ends="both"`` also clusters
  the negative end of each direction.
- **Relevance** is projected on the right singular vectors (rows of ``r.directions``)
  everywhere; ``z[k, d] = (mean over samples predicted k - mean over the others) / std
  over the others`` (``std`` with ddof=1; NaN when a class has no predicted sample).
- **Clustering**: Ward's method with a distance threshold, refined by k-means, robust
  outlier cuts and deduplication across directions (see :mod:`.clusters`).
- **Dominant class** of a concept: the most frequent *predicted* class among its
  members (what the model makes of the concept; the true labels when there are no
  predictions). An outlier of the first kind is a sample among the ``top_t`` highest
  projections on a concept whose *true* class differs from that class.

Modules: :mod:`.config` (settings), :mod:`.inputs` (checks), :mod:`.decompose` (SVD),
:mod:`.relevance`, :mod:`.clusters` (concepts and outliers), :mod:`.maps` (concept maps),
:mod:`.result` (:class:`ConceptResult`), :mod:`.discover` (entry points).

Example:
    >>> import torch
    >>> X = torch.rand(500, 16)
    >>> r = discover_activations(X, n_components=4, top_t=50, embedding=None, progress=False)
    >>> r.directions.shape
    torch.Size([4, 16])
"""

from __future__ import annotations

from .config import EMBEDDINGS, ENDS, ConceptConfig
from .decompose import decompose, decompose_gram, gram_matrix
from .discover import discover, discover_activations
from .maps import concept_map, concept_map_activations, plot_concept_maps
from .relevance import OBJECTIVES, layer_relevance, relevance_z
from .result import OUTLIER_KINDS, ConceptResult

__all__ = [
    "EMBEDDINGS",
    "ENDS",
    "OBJECTIVES",
    "OUTLIER_KINDS",
    "ConceptConfig",
    "ConceptResult",
    "concept_map",
    "concept_map_activations",
    "decompose",
    "decompose_gram",
    "discover",
    "discover_activations",
    "gram_matrix",
    "layer_relevance",
    "plot_concept_maps",
    "relevance_z",
]
