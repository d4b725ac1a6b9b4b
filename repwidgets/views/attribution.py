"""The views of attribution results: the gallery of attributed training samples.

Concept attribution ranks training samples by how much they taught a concept.
:func:`attribution_view` shows the top (and bottom) of that ranking as cards in a
:class:`~repwidgets.widgets.gallery.NeuronGallery` (one card per training sample: its
image, rank, score, class and whether it carries the concept). The person selects
cards; ``selected`` gives their training-split indices, and the button sends them (or,
with nothing selected, the whole top k) to a
:class:`~repwidgets.widgets.curation.CurationSelector`.

Per-neuron attribution (:func:`neuron_attribution_view`) shows the same gallery for the
training samples that taught one neuron, each card marked with a concept (default: the
concept most enriched among the top k).

TRAK scores, the linear datamodeling score and the removal experiment show as tables.

Example:
    >>> r = rw.attribution.concept_attribution(sess, "watermark")   # doctest: +SKIP
    >>> w = r.widget(k=12)          # same as attribution_view(r, k=12)  # doctest: +SKIP
    >>> w.selected                  # indices the person clicked         # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

import ipywidgets
import numpy as np
import torch

from repwidgets.views._session import require_session
from repwidgets.widgets.curation import CurationSelector
from repwidgets.widgets.gallery import DEFAULT_THUMB_SIZE, NeuronGallery

if TYPE_CHECKING:
    from repwidgets.engines.attribution import ConceptAttributionResult, NeuronAttributionResult
    from repwidgets.session import Session

__all__ = [
    "AttributionGallery",
    "attribution_view",
    "lds_view",
    "neuron_attribution_view",
    "removal_view",
    "trak_view",
]


class AttributionGallery(ipywidgets.VBox):
    """A gallery of the top/bottom attributed training samples and a "send to curation" button.

    Attributes:
        gallery: the :class:`NeuronGallery` (cards are training samples; card id =
            training-split index).
        selected: training-split indices the person selected (synced from the gallery).
        curation: the curation widget made by the last click (or None).
        thumb_size: the thumbnails' size on screen in pixels (the gallery's synced
            trait; set it to resize them live).
    """

    def __init__(
        self,
        result: ConceptAttributionResult,
        sess: Session,
        k: int = 24,
        bottom: bool = True,
        thumb_size: int = DEFAULT_THUMB_SIZE,
        **gallery_kwargs: Any,
    ) -> None:
        n = len(result._order())
        self._k = max(1, min(int(k), n))
        self._sess = sess
        self._result = result
        cards, self._rows = _cards(result, self._k, bottom)

        def image_source(keys: list) -> list[bytes]:
            return list(sess.thumbnails([int(i) for i in keys], split="train"))

        def detail_source(card_id: int, _key: Any) -> dict:
            rank, score, cls, carries = self._rows[int(card_id)]
            details: dict[str, Any] = {
                "training sample": int(card_id),
                "class": cls,
                f"carries {result.concept}": carries,
                "score": score,
                "rank": f"{rank} of {n}",
            }
            with contextlib.suppress(Exception):
                details["image"] = sess.thumbnails([int(card_id)], split="train", size=192)[0]
            return details

        self.gallery = NeuronGallery(
            cards,
            image_source=image_source,
            detail_source=detail_source,
            title=f"Training samples that taught '{result.concept}' at {result.layer}",
            noun="samples",
            sort_by="score",
            descending=True,
            thumb_size=thumb_size,
            **gallery_kwargs,
        )
        self.curation: CurationSelector | None = None
        self.button = ipywidgets.Button(
            description="Send to curation",
            tooltip=(
                "Send the selected samples (or the top k when none is selected) to the "
                "curation widget"
            ),
            icon="share",
        )
        self.output = ipywidgets.Output()
        self.button.on_click(lambda _b: self._send())
        super().__init__([self.gallery, ipywidgets.HBox([self.button]), self.output])

    @property
    def thumb_size(self) -> int:
        return int(self.gallery.thumb_size)

    @thumb_size.setter
    def thumb_size(self, size: int) -> None:
        self.gallery.thumb_size = int(size)

    @property
    def selected(self) -> list[int]:
        """Training-split indices of the selected cards (in selection order)."""
        return [int(i) for i in self.gallery.selected]

    def chosen(self) -> list[int]:
        """The selection, or the top k when nothing is selected."""
        return self.selected or [int(i) for i in self._result.top(self._k)]

    def send_to_curation(self, path: str | os.PathLike | None = None) -> CurationSelector:
        """The curation widget over :meth:`chosen` (highest score first; moving its band
        selects quantiles of all scores). ``path``: a JSON file that keeps the marks
        (None: in memory)."""
        candidates = self._result.candidates(session=self._sess, samples=self.chosen())
        self.curation = CurationSelector(candidates, candidates.curation(path), images=self._sess)
        return self.curation

    def _send(self) -> None:
        from IPython.display import display

        self.output.clear_output()
        with self.output:
            display(self.send_to_curation())


def _cards(
    result: ConceptAttributionResult, k: int, bottom: bool
) -> tuple[list[dict], dict[int, tuple]]:
    """Cards of the top k (and bottom k) samples, and per sample (rank, score, class, carries)."""
    order = result._order()
    idx = torch.as_tensor(result.train_indices).numpy()
    scores = torch.as_tensor(result.scores).numpy()
    labels = torch.as_tensor(result.concept_labels).numpy().astype(bool)
    classes = torch.as_tensor(result.classes).numpy()
    names = list(result.class_names)
    n = len(order)
    ranks = np.empty(n, dtype=int)
    ranks[order] = np.arange(1, n + 1)
    picks = list(order[:k]) + (list(order[::-1][:k]) if bottom else [])
    rows: dict[int, tuple] = {}
    cards = []
    for pos in dict.fromkeys(int(p) for p in picks):
        sample = int(idx[pos])
        cls = names[classes[pos]] if 0 <= classes[pos] < len(names) else str(classes[pos])
        where = "top" if ranks[pos] <= k else "bottom"
        mark = f" · {result.concept}" if labels[pos] else ""
        cards.append(
            {
                "id": sample,
                "label": f"{where} #{ranks[pos]} · {cls}{mark}",
                "scores": {
                    "score": float(scores[pos]),
                    "rank": int(ranks[pos]),
                    result.concept: float(labels[pos]),
                },
                "images": [sample],
            }
        )
        rows[sample] = (int(ranks[pos]), float(scores[pos]), cls, bool(labels[pos]))
    return cards, rows


def attribution_view(
    result: ConceptAttributionResult,
    k: int = 24,
    session: Session | None = None,
    bottom: bool = True,
    thumb_size: int = DEFAULT_THUMB_SIZE,
    **gallery_kwargs: Any,
) -> AttributionGallery:
    """The gallery of the top (and bottom) k attributed training samples.

    Args:
        result: the concept attribution result.
        k: how many top (and bottom) samples to show.
        session: the session whose thumbnails to show (default: the one the result came
            from; needed for a result loaded from a file).
        bottom: also show the k lowest-scored samples.
        thumb_size: the thumbnails' size on screen in pixels.
        **gallery_kwargs: passed to :class:`NeuronGallery` (height, request_patience, ...).
    """
    sess = require_session(result, session)
    return AttributionGallery(
        result, sess, k=k, bottom=bottom, thumb_size=thumb_size, **gallery_kwargs
    )


def trak_view(result: Any, rows: int = 50) -> ipywidgets.HTML:
    """An HTML table of the ``rows`` top-scored training samples of a TRAK result."""
    frame = result.to_frame().sort_values("rank").head(rows)
    return ipywidgets.HTML(frame.to_html(index=False, float_format="%.4g"))


def lds_view(result: Any) -> ipywidgets.HTML:
    """One line: the linear datamodeling score, over how many targets and subsets."""
    return ipywidgets.HTML(
        f"<b>LDS</b> {result.lds:.4f} over {len(result.per_target)} targets, "
        f"{result.n_subsets} subsets"
    )


def removal_view(result: Any) -> ipywidgets.HTML:
    """The removal experiment's table, and its per-group table when there are groups."""
    tables = result.to_frame().to_html(index=False, float_format="%.3f")
    groups = result.groups_frame()
    if len(groups):
        tables += groups.to_html(index=False, float_format="%.3f")
    return ipywidgets.HTML(tables)


class _MarkedByConcept:
    """A per-neuron result seen as a concept attribution's: its cards marked by whether
    each sample carries ``concept`` (what :class:`AttributionGallery` reads)."""

    def __init__(self, result: NeuronAttributionResult, concept: str | None) -> None:
        self._neuron = result
        self.concept = concept or ""
        n = len(result.scores)
        self.concept_labels = result.labels(concept) if concept else np.zeros(n, dtype=bool)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._neuron, name)


def neuron_attribution_view(
    result: NeuronAttributionResult,
    k: int = 24,
    session: Session | None = None,
    concept: str | None = None,
    bottom: bool = False,
    thumb_size: int = DEFAULT_THUMB_SIZE,
    **gallery_kwargs: Any,
) -> AttributionGallery:
    """The gallery of the k training samples that taught a neuron most (and, with
    ``bottom``, the k that opposed it most), with a "send to curation" button.

    Args:
        result: the per-neuron attribution result.
        k: how many top (and bottom) samples to show.
        session: the session whose thumbnails to show (default: the result's).
        concept: the concept whose carriers are marked on the cards (default: the
            concept most enriched among the top k, ``result.enrichment(k)``; none when
            the data has no concept labels).
        bottom: also show the k lowest-scored samples.
        thumb_size: the thumbnails' size on screen in pixels.
        **gallery_kwargs: passed to :class:`NeuronGallery`.

    Example:
        >>> r = rw.attribution.neuron_attribution(sess, "features.relu4", 1)  # doctest: +SKIP
        >>> w = r.widget(k=12, concept="watermark")                           # doctest: +SKIP
    """
    sess = require_session(result, session)
    if concept is None and len(result.concept_names):
        concept = str(result.enrichment(min(int(k), len(result.scores))).concept.iloc[0])
    elif concept is not None:
        concept = list(result.concept_names)[result.concept_index(concept)]
    marked = _MarkedByConcept(result, concept)
    widget = AttributionGallery(
        marked, sess, k=k, bottom=bottom, thumb_size=thumb_size, **gallery_kwargs
    )  # type: ignore[arg-type]
    widget.gallery.title = (
        f"Training samples that taught neuron {result.unit} at {result.layer}"
        + (f" (marked: {concept})" if concept else "")
    )
    return widget
