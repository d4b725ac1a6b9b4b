"""The gallery of attributed training samples, with a hand-over to curation.

Concept attribution ranks training samples by how much they taught a concept. This
widget shows the top (and bottom) of that ranking as cards in a
:class:`~repwidgets.widgets.gallery.NeuronGallery` (one card per training sample: its
image, rank, score, class and whether it carries the concept). The person selects
cards; ``selected`` gives their training-split indices, and the button sends them
(or, with nothing selected, the whole top k) to the curation widget when it is
available, else lists them.
"""

from __future__ import annotations

import contextlib
from typing import Any

import ipywidgets
import numpy as np
import torch

from repwidgets.widgets.gallery import DEFAULT_THUMB_SIZE, NeuronGallery

__all__ = ["AttributionBand", "AttributionGallery", "attribution_gallery"]


def _curation_class():
    try:
        from repwidgets.widgets.curation import CurationSelector
    except ImportError:
        return None
    return CurationSelector


class AttributionGallery(ipywidgets.VBox):
    """A gallery of the top/bottom attributed training samples and a "send to curation" button.

    Attributes:
        gallery: the :class:`NeuronGallery` (cards are training samples; card id =
            training-split index).
        selected: training-split indices the person selected (synced from the gallery).
        curation: the curation widget made by the last click (or None).
        thumb_size: the thumbnails' size on screen in pixels (the gallery's synced
            trait; set it to resize them live).

    Example:
        >>> w = r.widget()        # r: ConceptAttributionResult   # doctest: +SKIP
        >>> w.selected            # indices the person clicked     # doctest: +SKIP
    """

    def __init__(
        self,
        result,
        sess,
        k: int = 24,
        bottom: bool = True,
        thumb_size: int = DEFAULT_THUMB_SIZE,
        **gallery_kwargs: Any,
    ) -> None:
        order = result._order()
        idx = torch.as_tensor(result.train_indices).numpy()
        scores = torch.as_tensor(result.scores).numpy()
        labels = torch.as_tensor(result.concept_labels).numpy().astype(bool)
        classes = torch.as_tensor(result.classes).numpy()
        names = list(result.class_names)
        n = len(order)
        k = max(1, min(int(k), n))
        ranks = np.empty(n, dtype=int)
        ranks[order] = np.arange(1, n + 1)
        picks = list(order[:k]) + (list(order[::-1][:k]) if bottom else [])
        self._rows = {}
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
            self._rows[sample] = (int(ranks[pos]), float(scores[pos]), cls, bool(labels[pos]))
        self._sess = sess
        self._result = result
        self._k = k

        def image_source(keys: list) -> list[bytes]:
            return list(sess.thumbnails([int(i) for i in keys], split="train"))

        def detail_source(card_id: int, key: Any) -> dict:
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
        self.curation = None
        has_curation = _curation_class() is not None
        self.button = ipywidgets.Button(
            description="Send to curation" if has_curation else "List selected",
            tooltip=(
                "Send the selected samples (or the top k when none is selected) to the "
                "curation widget"
                if has_curation
                else "Print the selected training indices (or the top k)"
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

    def send_to_curation(self, path=None):
        """The curation widget over :meth:`chosen` (or the plain list without one).

        ``path``: a JSON file that keeps the marks (None: in memory)."""
        samples = self.chosen()
        cls = _curation_class()
        if cls is None:
            return samples
        self.curation = _make_curation(cls, self._sess, samples, self._result, path=path)
        return self.curation

    def _send(self) -> None:
        self.output.clear_output()
        with self.output:
            made = self.send_to_curation()
            if isinstance(made, list):
                print(f"training samples ({len(made)}): {made}")
            else:
                from IPython.display import display

                display(made)


class AttributionBand:
    """Attributed training samples in the form the curation widget reads.

    The candidates are either explicit samples (a selection) or a band of quantiles
    of the attribution scores (the top k is the band ``(1 - k/n, 1)``); moving the band
    in the curation widget asks :meth:`reselect` for the samples of the new band.
    """

    score = "attribution"
    within = "all"
    absolute = False
    split = "train"

    def __init__(self, result, sess, samples=None, band=None) -> None:
        self._result = result
        self._session = sess
        idx = torch.as_tensor(result.train_indices).long()
        values = torch.as_tensor(result.scores).float()
        self.population_values = values
        n = len(values)
        order = torch.argsort(values, descending=True)
        if samples is not None:
            pos_of = {int(i): p for p, i in enumerate(idx.tolist())}
            unknown = [int(i) for i in samples if int(i) not in pos_of]
            if unknown:
                raise ValueError(
                    f"Samples {unknown[:5]} were not attributed (not among the result's "
                    "training indices)."
                )
            pos = torch.as_tensor([pos_of[int(i)] for i in samples], dtype=torch.long)
            pos = pos[torch.argsort(values[pos], descending=True)]
            q = (n - 1 - torch.argsort(order)[pos]).float() / max(1, n - 1)
            self.band = [float(q.min()), float(q.max())] if len(pos) else [0.0, 1.0]
        else:
            low, high = (float(b) for b in (band or (0.9, 1.0)))
            if not 0.0 <= low <= high <= 1.0:
                raise ValueError(f"band must be quantiles 0 <= low <= high <= 1, got {band}.")
            qs = torch.quantile(values.double(), torch.tensor([low, high], dtype=torch.float64))
            keep = (values.double() >= qs[0]) & (values.double() <= qs[1])
            pos = order[keep[order]]
            self.band = [low, high]
        self.limits = [float(values[pos].min()), float(values[pos].max())] if len(pos) else [0, 0]
        self.indices = idx[pos]
        self.values = values[pos]
        self.logits = self.values
        self.labels = torch.as_tensor(result.classes).long()[pos]
        self.predictions = self._predict(self.indices)
        groups = sess.groups("train")
        self.groups = (
            groups[self.indices].long() if groups is not None else torch.full_like(self.indices, -1)
        )
        self.group_names = list(getattr(sess.data, "group_names", []) or [])
        self.class_names = list(result.class_names)
        self.class_name = str(result.concept)
        self.n_samples = sess.n("train")
        self.dataset = {"name": str(getattr(sess.data, "name", "")), "split": "train"}

    def _predict(self, indices: torch.Tensor) -> torch.Tensor:
        sess = self._session
        out = []
        with torch.no_grad():
            for start in range(0, len(indices), 256):
                batch = sess.images(indices[start : start + 256].tolist(), split="train")
                out.append(sess.forward(batch).argmax(dim=1).cpu())
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)

    def __len__(self) -> int:
        return int(self.indices.numel())

    def to_frame(self):
        import pandas as pd

        names = self.class_names
        return pd.DataFrame(
            {
                "sample": self.indices.numpy(),
                "score": self.values.numpy(),
                "label": [
                    names[i] if 0 <= i < len(names) else str(i) for i in self.labels.tolist()
                ],
                "prediction": [
                    names[i] if 0 <= i < len(names) else str(i) for i in self.predictions.tolist()
                ],
            }
        )

    def reselect(self, band=None, **_changes) -> AttributionBand:
        return AttributionBand(self._result, self._session, band=band or self.band)

    def curation(self, path=None):
        from repwidgets.curation_store import Curation

        context = {
            "source": "concept attribution",
            "concept": str(self._result.concept),
            "layer": str(self._result.layer),
            "band": list(self.band),
        }
        kwargs = {"split": "train", "n_samples": self.n_samples, "dataset": self.dataset}
        if path is None:
            return Curation.in_memory(context=context, **kwargs)
        return Curation.open(path, context=context, **kwargs)


def _make_curation(cls, sess, samples: list[int], result, path=None):
    """The curation widget over training samples (marks in ``path``, or in memory)."""
    band = AttributionBand(result, sess, samples=samples)
    return cls(band, band.curation(path), sess)


def attribution_gallery(
    result,
    k: int = 24,
    session=None,
    bottom: bool = True,
    thumb_size: int = DEFAULT_THUMB_SIZE,
    **gallery_kwargs: Any,
):
    """The widget of a :class:`~repwidgets.engines.attribution.ConceptAttributionResult`.

    Args:
        result: the attribution result.
        k: how many top (and bottom) samples to show.
        session: the session whose thumbnails to show (default: the one the result came
            from; needed for a result loaded from a file).
        bottom: also show the k lowest-scored samples.
        thumb_size: the thumbnails' size on screen in pixels.
        **gallery_kwargs: passed to :class:`NeuronGallery` (height, request_patience, ...).
    """
    sess = session if session is not None else getattr(result, "_session", None)
    if sess is None:
        raise ValueError(
            "This result has no session (it was loaded from a file), so it has no images to "
            "show: call r.widget(session=sess)."
        )
    return AttributionGallery(
        result, sess, k=k, bottom=bottom, thumb_size=thumb_size, **gallery_kwargs
    )
