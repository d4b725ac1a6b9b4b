"""Sample galleries of the explorer, and tables shown safely.

A sample gallery is a :class:`~repwidgets.widgets.gallery.NeuronGallery` whose cards are
samples of the split (card id = sample index), so a click, ctrl-click or shift-click
selects samples; clicking an image opens that sample in the explorer. Tables are pandas
DataFrames shown in an ``ipywidgets.Output`` (pandas escapes the text), replaced with
``append_display_data`` so that a background thread can update them too.

Example:
    >>> g = sample_gallery(sess, "train", [3, 8], on_open=print, title="top")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets
import pandas as pd

from repwidgets.widgets.gallery import NeuronGallery

__all__ = ["sample_cards", "sample_gallery", "show_table", "slot", "trail_of"]


def slot(css: str, *children: Any) -> ipywidgets.VBox:
    """A box with the stable CSS class ``css`` whose content the explorer replaces."""
    box = ipywidgets.VBox(list(children))
    box.add_class(css)
    return box


def show_table(out: ipywidgets.Output, frame: pd.DataFrame | None, empty: str = "") -> None:
    """Replace what ``out`` shows by ``frame`` (escaped HTML by pandas), or by ``empty``."""
    out.clear_output(wait=True)
    if frame is None or len(frame) == 0:
        if empty:
            out.append_stdout(empty + "\n")
        return
    out.append_display_data(frame)


def sample_gallery(
    sess: Any,
    split: str,
    samples: Sequence[int],
    *,
    on_open: Callable[[int], dict],
    title: str,
    scores: dict[str, Sequence[float]] | None = None,
    labels: Sequence[str] | None = None,
    thumb_size: int = 64,
    height: int = 240,
) -> NeuronGallery:
    """A gallery with one card per sample of ``split``.

    Args:
        sess: the session (thumbnails).
        samples: sample indices, in the order shown.
        on_open: called with a sample index when its image is clicked; returns the
            fields shown beside the large image.
        title: the gallery's title.
        scores: per score name, one value per sample (sortable in the gallery).
        labels: one text per sample (class name, rank).
        thumb_size, height: sizes in pixels.
    """
    cards = sample_cards(samples, scores=scores, labels=labels)

    def image_source(keys: list) -> list[bytes]:
        return list(sess.thumbnails([int(k) for k in keys], split=split))

    def detail_source(_card_id: int, key: Any) -> dict:
        return on_open(int(key))

    return NeuronGallery(
        cards,
        image_source=image_source,
        detail_source=detail_source,
        title=title,
        noun="samples",
        thumb_size=thumb_size,
        height=height,
    )


def sample_cards(
    samples: Sequence[int],
    *,
    scores: dict[str, Sequence[float]] | None = None,
    labels: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """One gallery card per sample (id and image key = the sample index), with its label
    and scores, for :func:`sample_gallery` or ``NeuronGallery.replace_cards``."""
    cards = []
    for pos, i in enumerate(int(i) for i in samples):
        card: dict[str, Any] = {"id": i, "images": [i]}
        card["label"] = labels[pos] if labels is not None else f"#{i}"
        if scores:
            card["scores"] = {name: float(vals[pos]) for name, vals in scores.items()}
        cards.append(card)
    return cards


def trail_of(history: Sequence[dict]) -> list[str]:
    """The breadcrumb of a history of states: "neuron #3", "sample #12", ... (repeats
    merged), oldest first.

    Example:
        >>> trail_of([{"neuron": 3, "sample": None}, {"neuron": 3, "sample": 12}])
        ['neuron #3', 'sample #12']
    """
    steps: list[str] = []
    for state in history:
        if state.get("sample") is not None:
            step = f"sample #{state['sample']}"
        elif state.get("neuron") is not None:
            step = f"neuron #{state['neuron']}"
        else:
            continue
        if not steps or steps[-1] != step:
            steps.append(step)
    return steps
