"""Concept discovery's entry points: the tensor-level core and the session-level call.

:func:`discover_activations` runs the steps in order: decompose and orient
(:mod:`.decompose`), rate the directions by relevance (:mod:`.relevance`), cluster each
direction's top samples into concepts and flag outliers (:mod:`.clusters`), describe
the concepts by the labels they separate, and place the samples in 2-D.
:func:`discover` reads a layer's activations, labels and relevance from a session.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from repwidgets.engines import _checks
from repwidgets.engines.embedding import embed_points
from repwidgets.engines.ranks import auc_matrix

from .clusters import Found, dominant_classes, find_outliers, membership, refine
from .config import ConceptConfig
from .decompose import decompose, decompose_gram, orient
from .inputs import Inputs, check_inputs
from .relevance import OBJECTIVES, layer_relevance, relevance_z
from .result import ConceptResult

if TYPE_CHECKING:  # pragma: no cover
    from repwidgets.session import Session

__all__ = ["discover", "discover_activations"]


def discover_activations(
    X: Tensor | np.ndarray,
    config: ConceptConfig | Mapping[str, Any] | None = None,
    *,
    relevance: Tensor | None = None,
    grads: Tensor | None = None,
    predictions: Tensor | None = None,
    labels: Tensor | None = None,
    concepts: Tensor | None = None,
    concept_names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    n_classes: int | None = None,
    gram: tuple[Tensor, Tensor] | None = None,
    progress: bool = True,
    **overrides: Any,
) -> ConceptResult:
    """Concept discovery on a matrix of pooled activations (the tensor-level core).

    Args:
        X: spatially averaged activations [n, C] (tensor on any device, or numpy).
        config: a :class:`ConceptConfig`, a dict of its settings (such as a saved
            result's ``params``) or None for the defaults.
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
        gram: ``(X^T X [C, C], column mean of X [C])`` computed elsewhere (for example
            summed over row shards on several processes, see
            :func:`~repwidgets.engines.concepts.decompose.gram_matrix`); the directions
            then come from it (:func:`~.decompose.decompose_gram`) instead of from X.
        progress: show a progress bar over directions.
        **overrides: settings of :class:`ConceptConfig` (``n_components``, ``center``,
            ``top_t``, ``embedding``, ...).

    Returns:
        :class:`ConceptResult` (tensors on the CPU); its ``params`` are the settings as
        applied (``top_t`` at most n, ``min_cluster_size`` resolved).

    Example:
        >>> X = torch.rand(400, 12)
        >>> r = discover_activations(X, n_components=3, top_t=40, embedding=None,
        ...                          progress=False)
        >>> r.to_frame().columns[:3].tolist()
        ['concept', 'source_direction', 'end']
    """
    cfg = ConceptConfig.resolve(config, overrides)
    inputs = check_inputs(
        X,
        relevance=relevance,
        grads=grads,
        predictions=predictions,
        labels=labels,
        concepts=concepts,
        concept_names=concept_names,
        class_names=class_names,
        n_classes=n_classes,
    )
    n, C = inputs.X.shape
    _checks.n_components(cfg.n_components, n, C)
    cfg = cfg.check().effective(n)

    V, S, share, mean, Xc, P = _directions(inputs.X, cfg, gram)
    rel_z = _relevance_of(inputs, V)
    found, pools = _concepts(Xc, P, V, cfg, progress)
    k = len(found)
    vectors = _vectors(found, C)
    scores = (Xc @ vectors.to(Xc.device).T).cpu() if k else torch.zeros(n, 0)
    owner = inputs.predictions if inputs.predictions is not None else inputs.labels
    truth = inputs.labels if inputs.labels is not None else inputs.predictions
    dominant, purity = dominant_classes(found, owner, inputs.n_classes)
    outliers = find_outliers(
        _row_reader(Xc), scores, found, pools, truth, dominant, purity,
        cfg.top_t, cfg.min_purity, cfg.outlier_mad,
    )  # fmt: skip
    concept_auc = None
    if inputs.concepts is not None:
        concept_auc = auc_matrix(scores, inputs.concepts).float()
        concept_auc = concept_auc.reshape(k, inputs.concepts.shape[1])
    emb, method = embed_points(Xc, cfg.embedding, cfg.seed)
    return ConceptResult(
        directions=V.detach().cpu(),
        singular_values=S.cpu(),
        explained_variance=share.cpu(),
        mean=mean.cpu(),
        centered=bool(cfg.center),
        vectors=vectors,
        source_direction=torch.tensor([c.direction for c in found], dtype=torch.long),
        source_sign=torch.tensor([c.sign for c in found], dtype=torch.long),
        cosine=torch.tensor([c.cosine for c in found], dtype=torch.float32),
        dominant_class=dominant,
        purity=purity,
        scores=scores.float(),
        **membership(found, n),
        outlier_index=outliers[0],
        outlier_score=outliers[1],
        outlier_concept=outliers[2],
        outlier_kind=outliers[3],
        relevance=rel_z,
        concept_relevance=_relevance_of(inputs, vectors),
        concept_auc=concept_auc,
        embedding=emb,
        embedding_method=method,
        labels=inputs.labels,
        predictions=inputs.predictions,
        class_names=inputs.class_names,
        concept_names=inputs.concept_names,
        params=cfg.to_dict(),
    )


def _directions(X: Tensor, cfg: ConceptConfig, gram: tuple[Tensor, Tensor] | None = None):
    """Steps 1-2: the top right singular vectors, oriented towards their tails.

    Returns ``(V [m, C], S [m], share [m], mean [C], Xc [n, C], P [n, m])`` where Xc is
    X (centered when ``cfg.center``) and P its projections on the directions. ``gram``:
    a precomputed ``(X^T X, mean)`` to decompose instead of X.
    """
    if gram is None:
        V, S, share, mean = decompose(X, cfg.n_components, cfg.center)
    else:
        G, mu = gram
        V, S, share, mean = decompose_gram(G, mu, X.shape[0], cfg.n_components, cfg.center)
        V, S, share, mean = (t.to(X.device) for t in (V, S, share, mean))
    Xc = X - mean if cfg.center else X
    P = Xc @ V.T
    signs = orient(P, cfg.top_t)
    return V * signs[:, None], S, share, mean, Xc, P * signs[None, :]


def _relevance_of(inputs: Inputs, W: Tensor) -> Tensor | None:
    """Relevance z-scores [n_classes, m] of the rows of W [m, C] (None without relevance)."""
    if inputs.relevance is None:
        return None
    if W.shape[0] == 0:
        return torch.zeros(inputs.n_classes, 0)
    projected = inputs.relevance @ W.to(inputs.relevance.device).T
    return relevance_z(projected, inputs.predictions, inputs.n_classes).cpu()


def _row_reader(Xc: Tensor):
    """``rows(idx)``: float64 numpy copies of a few rows of Xc, never all of it."""

    def rows(idx: np.ndarray) -> np.ndarray:
        return Xc[torch.as_tensor(idx, device=Xc.device)].detach().cpu().numpy().astype(np.float64)

    return rows


def _concepts(
    Xc: Tensor, P: Tensor, V: Tensor, cfg: ConceptConfig, progress: bool
) -> tuple[list[Found], list[np.ndarray]]:
    """Step 3: cluster each direction's top samples; the concepts and the pools."""
    found, pools = refine(
        _row_reader(Xc),
        P.detach().cpu().numpy(),
        V.detach().cpu().numpy().astype(np.float64),
        top_t=cfg.top_t,
        ends=cfg.ends,
        dedupe_overlap=cfg.dedupe_overlap,
        progress=progress,
        distance_threshold=cfg.distance_threshold,
        min_merge_share=cfg.min_merge_share,
        max_clusters=cfg.max_clusters,
        min_size=cfg.min_cluster_size,
        outlier_mad=cfg.outlier_mad,
        seed=cfg.seed,
    )
    if not found:
        warnings.warn(
            "No concept survived the clustering (every cluster was smaller than "
            f"min_cluster_size={cfg.min_cluster_size}). Lower min_cluster_size or raise top_t.",
            stacklevel=3,
        )
    return found, pools


def _vectors(found: list[Found], C: int) -> Tensor:
    """The concept vectors [k, C] (unit-normalised centroids), float32 on the CPU."""
    if not found:
        return torch.zeros(0, C)
    return torch.tensor(np.stack([c.vector for c in found]), dtype=torch.float32)


def discover(
    sess: Session,
    layer: str | None = None,
    config: ConceptConfig | Mapping[str, Any] | None = None,
    *,
    split: str = "test",
    pool: str = "mean",
    neuron_axis: int | None = None,
    relevance: bool = True,
    objective: str = "predicted",
    sign: float = 1.0,
    progress: bool | None = None,
    **overrides: Any,
) -> ConceptResult:
    """Concept discovery for a layer of a session's model.

    Pulls the pooled activations of ``layer`` over ``split`` (``[n, C]`` on the layer's
    neuron axis, see :meth:`repwidgets.Session.layout`), the predictions, the
    true labels and (when the data has them) the concept labels; computes the relevance
    with one forward/backward pass over the split (skip with ``relevance=False``); then
    runs :func:`discover_activations`. Every setting is checked before any activation
    is computed.

    Args:
        sess: a :class:`repwidgets.Session`.
        layer: a name from ``sess.layers()`` (default: ``sess.default_layer()``).
        config: a :class:`ConceptConfig`, a dict of its settings or None.
        split: the data split to explore.
        pool: how positions (or tokens) are pooled: "mean" (default), "max", or "cls"
            (a token layer's class token); the relevance is reduced the same way
            (class token for "cls", else the mean over positions).
        neuron_axis: the layer's neuron axis where the session cannot tell it (None:
            the session's layout).
        relevance: compute gradient x activation relevance.
        objective, sign: what the gradient is of (see :func:`layer_relevance`); recorded
            in the result's ``params`` with ``relevance``.
        progress: progress bars (default: the session's setting).
        **overrides: settings of :class:`ConceptConfig`.

    Example:
        >>> import repwidgets as rw
        >>> sess = rw.demo_session()                                  # doctest: +SKIP
        >>> r = rw.concepts.discover(sess, "features.conv4", n_components=8)  # doctest: +SKIP
        >>> r.to_frame().head()                                       # doctest: +SKIP
    """
    cfg = ConceptConfig.resolve(config, overrides)
    progress = sess.progress if progress is None else progress
    layer = sess.default_layer() if layer is None else layer
    module = sess.module(layer)
    layout = sess.layout(layer, neuron_axis)
    n_split = _checks.split_size(sess, split)
    width = _checks.layer_width(sess, layer, neuron_axis)
    of = f"layer {layer!r} on split {split!r}"
    _checks.n_components(cfg.n_components, n_split, width, of=of)
    _checks.one_of("objective", objective, OBJECTIVES)
    _checks.one_of("pool", pool, ("mean", "max", "cls"))
    cfg.check()
    X = sess.activations(layer, split=split, pool=pool, neuron_axis=neuron_axis)
    concepts, names = _concept_labels(sess, split)
    R = None
    if relevance:
        how = {"neuron_axis": layout.neuron_axis, "pool": pool}
        R, predictions = _session_relevance(sess, module, split, objective, sign, progress, how)
    else:
        predictions = sess.predictions(split)
    if X.device.type == "cpu" and sess.device.type != "cpu":
        X = X.to(sess.device)
    result = discover_activations(
        X,
        cfg,
        relevance=R.to(X.device) if R is not None else None,
        predictions=predictions,
        labels=sess.targets(split),
        concepts=concepts,
        concept_names=names,
        class_names=sess.class_names,
        progress=progress,
    )
    result.layer, result.split = layer, split
    result.pool, result.neuron_axis = pool, neuron_axis
    result.params.update({"objective": objective, "sign": sign, "relevance": bool(relevance)})
    result._session = sess
    return result


def _concept_labels(sess: Session, split: str) -> tuple[Tensor | None, list[str] | None]:
    """The split's concept labels and names, or (None, None) when the data has none."""
    try:
        return sess.concepts(split), list(sess.concept_names)
    except ValueError:
        return None, None


def _session_relevance(
    sess: Session,
    module,
    split: str,
    objective: str,
    sign: float,
    progress: bool,
    how: Mapping[str, Any],
) -> tuple[Tensor, Tensor]:
    """Relevance [n, C] of ``module`` over ``split`` and the predictions [n] (CPU);
    ``how``: the layer's ``neuron_axis`` and the ``pool`` (see :func:`layer_relevance`)."""
    from torch.utils.data import DataLoader

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
        output=sess.output,
        **how,
    )
    return R, predictions.cpu()
