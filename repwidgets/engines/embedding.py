"""2-D maps for display: of points (samples' activations) or of a distance matrix.

DORA maps neurons by their EA distances; concept discovery maps samples by their
activations. Both use UMAP (umap-learn) where there are enough points, and a linear
map (PCA for points, MDS for distances) where there are too few for UMAP.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

__all__ = ["embed_distances", "embed_points"]


def _umap(data: np.ndarray, seed: int, n_neighbors: int, **options) -> np.ndarray:
    """UMAP to 2-D with warnings silenced (umap-learn warns about seeds and threads)."""
    import umap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, random_state=seed, **options)
        return np.asarray(reducer.fit_transform(data))


def embed_distances(
    D: np.ndarray, method: str, seed: int, n_neighbors: int
) -> tuple[np.ndarray, str]:
    """2-D map of a distance matrix ``D`` [m, m]: UMAP (precomputed), or MDS when
    ``method="mds"`` or ``m < 8``. Returns the coordinates [m, 2] and the method used."""
    m = D.shape[0]
    if m == 1:
        return np.zeros((1, 2)), "none"
    if method == "mds" or m < 8:
        from sklearn.manifold import MDS

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mds = MDS(n_components=2, dissimilarity="precomputed", random_state=seed, n_init=4)
            return mds.fit_transform(D), "mds"
    nn_ = max(2, min(n_neighbors, m - 1))
    # The neighbour graph comes straight from the matrix (each point is its own first
    # neighbour), which spares UMAP a nearest-neighbour search.
    knn = np.argsort(D, axis=1, kind="stable")[:, :nn_]
    knn_d = np.take_along_axis(D, knn, axis=1)
    xy = _umap(
        D,
        seed,
        nn_,
        metric="precomputed",
        min_dist=0.1,
        init="random" if m < 16 else "spectral",
        n_jobs=1,
        precomputed_knn=(knn, knn_d, None),
    )
    return xy, "umap"


def embed_points(X: Tensor, method: str | None, seed: int) -> tuple[Tensor | None, str | None]:
    """2-D coordinates of the rows of ``X`` [n, C]: UMAP for ``method="umap"`` and at
    least 50 rows, else the first two principal components; None for ``method=None``."""
    if method is None:
        return None, None
    n = X.shape[0]
    if method == "umap" and n >= 50:
        xy = _umap(X.detach().cpu().numpy().astype(np.float32), seed, min(15, n - 1))
        return torch.from_numpy(xy.astype(np.float32)), "umap"
    Z = X.detach().to(torch.float64)
    Z = Z - Z.mean(dim=0)
    _, _, Vh = torch.linalg.svd(Z, full_matrices=False)
    xy = (Z @ Vh[:2].T).float().cpu()
    if xy.shape[1] < 2:
        xy = torch.cat([xy, torch.zeros(n, 2 - xy.shape[1])], dim=1)
    return xy, "pca"
