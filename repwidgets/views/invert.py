"""The view of an INVERT result: a gallery with one card per neuron, labelled by its formula.

Cards carry the scores ``auc``, ``differentiability``, ``neg_log10_p`` (``-log10 p``:
larger is more significant, finite where ``p`` underflows), ``p_value`` and
``fraction``, so the gallery sorts by any of them (by AUC at first). With a session
(results of :func:`repwidgets.engines.invert.explain`), each card shows the neuron's
top-activating images and an activation histogram, and clicking an image tells
whether the sample is inside the formula's mask.

Example:
    >>> r = rw.invert.explain(sess, "pool")      # doctest: +SKIP
    >>> r.widget()                                # same as invert_view(r)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from repwidgets.engines.invert import formula_mask
from repwidgets.views._session import session_of
from repwidgets.widgets.gallery import NeuronGallery

if TYPE_CHECKING:
    from repwidgets.engines.invert import InvertResult
    from repwidgets.session import Session

__all__ = ["invert_view"]


def invert_view(
    result: InvertResult,
    images_per_card: int = 8,
    split: str | None = None,
    session: Session | None = None,
    **kwargs: Any,
) -> NeuronGallery:
    """A :class:`NeuronGallery`: one card per neuron labelled with its formula.

    Args:
        result: an INVERT result.
        images_per_card: images per card (at most the ``top_k`` of the run).
        split: split the images come from (default: the split the result used).
        session: the session that draws the images (default: the one the result came
            from; without one the cards show labels and scores only).
        **kwargs: passed to :class:`NeuronGallery` (title, sort_by, height, ...).
    """
    sess = session_of(result, session)
    cards, images, details = _gallery_args(result, sess, images_per_card, split)
    return NeuronGallery(
        cards, image_source=images, detail_source=details, **_gallery_kwargs(result, kwargs)
    )


def _gallery_kwargs(r: InvertResult, kwargs: dict) -> dict:
    kwargs = dict(kwargs)
    where = f"{r.layer} · " if r.layer else ""
    kwargs.setdefault("title", f"INVERT · {where}formulas of up to {r.params.get('max_length')}")
    kwargs.setdefault("sort_by", "auc" if r.mode == "positive" else "differentiability")
    return kwargs


def _activations(r: InvertResult, sess: Session | None, split: str) -> torch.Tensor | None:
    """The explained neurons' pooled activations on ``split``, [n, N] (None without a session)."""
    if sess is None or r.layer is None:
        return None
    acts = sess.activations(r.layer, split=split, pool=r.pool or "mean")
    return acts.detach().float().cpu()[:, r.neurons]


def _cards(
    r: InvertResult, acts: torch.Tensor | None, top: torch.Tensor | None, images: int
) -> list[dict]:
    log10_p = r.log10_p.double().cpu()
    cards = []
    for j, neuron in enumerate(r.neurons.tolist()):
        card: dict[str, Any] = {
            "id": int(neuron),
            "label": r.formulas[j]["text"],
            "scores": {
                "auc": float(r.auc[j]),
                "differentiability": float(r.differentiability[j]),
                "neg_log10_p": float(-log10_p[j]),
                "p_value": float(r.p_value[j]),
                "fraction": float(r.fraction[j]),
            },
        }
        if top is not None and images > 0:
            card["images"] = [int(i) for i in top[j, :images].tolist()]
        if acts is not None:
            card["histogram"] = acts[:, j].numpy()
        cards.append(card)
    return cards


def _gallery_args(
    r: InvertResult, sess: Session | None, images_per_card: int, split: str | None
) -> tuple[list[dict], Any, Any]:
    """Cards, image source and detail source of the INVERT gallery."""
    if not isinstance(images_per_card, (int, np.integer)) or images_per_card < 0:
        raise ValueError(f"images_per_card must be an integer >= 0, got {images_per_card!r}.")
    split = split or r.split or "test"
    acts = _activations(r, sess, split)
    top = r.top_indices
    if acts is not None and (top is None or split != (r.split or "test")):
        k = min(max(images_per_card, 1), acts.shape[0])
        top = torch.topk(acts if r.mode == "positive" else -acts, k, dim=0).indices.T
    cards = _cards(r, acts, top if sess is not None else None, images_per_card)
    if sess is None:
        return cards, None, None

    concepts = torch.as_tensor(sess.concepts(split)).bool().cpu()
    column = {int(neuron): j for j, neuron in enumerate(r.neurons.tolist())}
    targets = torch.as_tensor(sess.targets(split)).cpu()
    class_names = list(getattr(sess, "class_names", []) or [])

    def image_source(keys: list) -> list[bytes]:
        return list(sess.thumbnails([int(k) for k in keys], split=split))

    def detail_source(card_id: int, key: Any) -> dict:
        i, j = int(key), column[int(card_id)]
        if not 0 <= i < concepts.shape[0]:
            raise KeyError(f"sample {i} is not in split {split!r} (0..{concepts.shape[0] - 1})")
        t = int(targets[i])
        inside = bool(formula_mask(r.formulas[j], concepts[i : i + 1])[0])
        details: dict = {
            "sample": i,
            "class": class_names[t] if 0 <= t < len(class_names) else t,
            "concepts": [r.concept_names[c] for c in torch.nonzero(concepts[i]).flatten().tolist()],
            "formula": r.formulas[j]["text"],
            "in formula": "yes" if inside else "no",
        }
        if acts is not None:
            details[f"activation of #{card_id}"] = float(acts[i, j])
        return details

    return cards, image_source, detail_source
