"""The view of a DORA result: EA distances as a heatmap above a gallery of the s-AMS.

The heatmap's rows are the analysed neurons (labelled dead / outlier and by the score
the result was analysed with, ``outlier_scores``: LOF by default, the k-th-neighbour
distance with ``outlier="knn"``); hovering shows both neurons' s-AMS side by side. The
gallery has one card per neuron (that score, outlier rank, self activation, flags and
nearest neighbours), sorted by the score; selections are linked both ways.

Example:
    >>> r = rw.dora.analyze(sess, "features.conv3")   # doctest: +SKIP
    >>> w = r.widget(); w                              # same as dora_view(r)  # doctest: +SKIP
    >>> w.selected                                     # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets
import numpy as np

from repwidgets.widgets._transport import to_numpy
from repwidgets.widgets.gallery import NeuronGallery
from repwidgets.widgets.heatmap import DistanceHeatmap
from repwidgets.widgets.link import Link, link

if TYPE_CHECKING:
    from repwidgets.engines.dora import DoraResult

__all__ = ["DoraWidget", "dora_view"]


def signal_thumbnails(signals: Any, ids: list[int], size: int | None) -> Callable:
    """A lazy, cached image source: neuron id -> its s-AMS side by side as one PNG.

    Args:
        signals: [k, n, C, H, W], the n s-AMS of each of the k neurons.
        ids: the neuron id of each of the k rows.
        size: height of each s-AMS in pixels (None: as generated).
    """
    from repwidgets.session import encode_image

    sig = signals.detach().float().cpu() if hasattr(signals, "detach") else signals
    if getattr(sig, "ndim", 0) != 5 or sig.shape[0] != len(ids):
        raise ValueError(
            f"signals must be [k, n, C, H, W] with k = {len(ids)} neurons; got shape "
            f"{tuple(getattr(sig, 'shape', ()))}."
        )
    pos = {i: p for p, i in enumerate(ids)}
    cache: dict[int, bytes] = {}

    def source(keys: list) -> list[bytes]:
        out = []
        for key in keys:
            key = int(key)
            if key not in cache:
                if key not in pos:
                    raise KeyError(f"No s-AMS for neuron {key}.")
                s = sig[pos[key]]  # [n, C, H, W]
                n, c, h, w = s.shape
                strip = s.permute(1, 2, 0, 3).reshape(c, h, n * w)
                cache[key] = encode_image(strip, size=None if size is None else size * n)
            out.append(cache[key])
        return out

    return source


def dora_view(
    result: DoraResult,
    *,
    thumbnail_size: int | None = 48,
    gallery: bool = True,
    gallery_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> DoraWidget:
    """A DistanceHeatmap of a DORA result's EA distances linked to a gallery of its s-AMS.

    Args:
        result: a DORA result.
        thumbnail_size: height in pixels of each s-AMS in the images (None: original).
        gallery: also show a NeuronGallery (one card per neuron: the outlier score,
            outlier rank, self activation, flags and nearest neighbours), linked both
            ways. The score is the result's ``outlier_scores``, named by its
            ``outlier_score_name`` ("LOF", or "k-th-neighbour distance").
        gallery_kwargs: passed to :class:`NeuronGallery`.
        **kwargs: passed to :class:`DistanceHeatmap` (order, colormap, height, ...).

    Returns:
        A :class:`DoraWidget` (an ipywidgets VBox) with ``.heatmap``, ``.gallery`` and
        ``.selected`` (the neuron ids picked in either).
    """
    ids = [int(i) for i in to_numpy(result.neurons).ravel()]
    score = np.asarray(result.ranking_scores(), dtype=np.float64).ravel()
    name = result.outlier_score_name
    outlier = np.asarray(to_numpy(result.is_outlier)).astype(bool).ravel()
    dead = np.asarray(to_numpy(result.is_dead)).astype(bool).ravel()
    flags = ["dead" if d else "outlier" if o else "" for d, o in zip(dead, outlier)]
    source = None
    if getattr(result, "signals", None) is not None:
        source = signal_thumbnails(result.signals, ids, thumbnail_size)
    kwargs.setdefault(
        "title",
        f"DORA · {result.layer or 'layer'} · EA distances of {len(ids)} neurons "
        f"({int(outlier.sum())} outliers, {int(dead.sum())} dead)",
    )
    kwargs.setdefault("value_name", "EA distance")
    labels = [" · ".join(([f] if f else []) + _score_text(name, v)) for f, v in zip(flags, score)]
    heatmap = DistanceHeatmap(result.distances, labels, thumbnails=source, ids=ids, **kwargs)
    if not gallery:
        return DoraWidget(children=[heatmap], heatmap=heatmap)
    cards = _cards(result, ids, score, name, flags, with_images=source is not None)
    gkw = {"title": "s-AMS", "sort_by": name, "height": 420, **dict(gallery_kwargs or {})}
    cards_widget = NeuronGallery(cards, image_source=source, **gkw)
    ln = link(heatmap, cards_widget)
    return DoraWidget(
        children=[heatmap, cards_widget], heatmap=heatmap, gallery=cards_widget, link=ln
    )


def _score_text(name: str, value: float) -> list[str]:
    return [f"{name} {value:.2f}"] if math.isfinite(value) else []


def _cards(
    result: DoraResult,
    ids: list[int],
    score: np.ndarray,
    name: str,
    flags: list[str],
    with_images: bool,
) -> list[dict]:
    """One gallery card per neuron: flag, nearest neighbours, the outlier score (under
    ``name``), outlier rank, self activation."""
    self_act = np.asarray(to_numpy(result.self_activation), dtype=np.float64).ravel()
    order, _dist = result.nearest(3)
    neighbours = [", ".join(str(ids[j]) for j in row) for row in order]
    rank = np.full(len(ids), np.nan)
    order = np.argsort(-np.nan_to_num(score, nan=-np.inf), kind="stable")
    live = [i for i in order if math.isfinite(score[i])]
    rank[live] = np.arange(1, len(live) + 1)
    cards = []
    for p, nid in enumerate(ids):
        label = flags[p] or "inlier"
        if neighbours[p]:
            label += f" · near {neighbours[p]}"
        cards.append(
            {
                "id": nid,
                "label": label,
                "scores": {name: score[p], "outlier rank": rank[p], "self activation": self_act[p]},
                "images": [nid] if with_images else [],
            }
        )
    return cards


class DoraWidget(ipywidgets.VBox):
    """A heatmap of EA distances above a gallery of s-AMS, selections linked.

    Attributes:
        heatmap: the :class:`DistanceHeatmap`.
        gallery: the :class:`NeuronGallery` (None with ``gallery=False``).
        link: the :class:`repwidgets.widgets.link.Link` between them (or None).
    """

    def __init__(
        self,
        children: Sequence[Any],
        heatmap: DistanceHeatmap,
        gallery: NeuronGallery | None = None,
        link: Link | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(children=list(children), **kwargs)
        self.heatmap = heatmap
        self.gallery = gallery
        self.link = link

    @property
    def selected(self) -> list[int]:
        """Neuron ids selected in the heatmap (and the gallery, kept in step)."""
        return list(self.heatmap.selected)

    @selected.setter
    def selected(self, ids: Sequence[int]) -> None:
        self.heatmap.selected = list(ids)

    def __repr__(self) -> str:
        return f"DoraWidget({self.heatmap!r}, gallery={self.gallery is not None})"
