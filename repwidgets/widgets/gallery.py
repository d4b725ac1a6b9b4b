"""NeuronGallery: one card per neuron (or concept) with its images, label and scores.

The gallery is generic: any result fills it with *cards* and an *image source*.

- a card is a dict ``{"id": int, "label": str, "scores": {name: float},
  "images": [image keys], "histogram": values}`` (only ``id`` is required;
  ``histogram`` is the neuron's activations, a 1-D array that is binned here, or
  ``{"counts": [...], "range": (lo, hi)}`` already binned);
- the image source turns a list of image keys (ints or strings, e.g. sample indices)
  into encoded images (PNG/JPEG/WebP bytes), for example ``Session.thumbnails``.
  Images are fetched lazily by the browser, in batches, for the cards on screen.
- an optional detail source ``(card_id, key) -> dict`` says what to show when an
  image is clicked (index, class, concepts, activation; an ``"image"`` entry with
  bytes replaces the thumbnail by a larger picture).

The person's selection is the synced trait ``selected`` (card ids, in the order they
were picked). Sorting (``sort_by``, ``descending``) and the text filter (``query``)
are synced too, so Python can set them and they survive re-rendering.

Example:
    >>> import repwidgets as rw
    >>> sess = rw.demo_session()                                           # doctest: +SKIP
    >>> g = rw.widgets.NeuronGallery.from_activations(sess, "features.conv3")  # doctest: +SKIP
    >>> g                # shows the gallery                                # doctest: +SKIP
    >>> g.selected       # neuron ids the person clicked                    # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

import anywidget
import numpy as np
import traitlets

from repwidgets.widgets._selection import checked_selection
from repwidgets.widgets._transport import (
    ImageSource,
    RequestRouter,
    as_image_source,
    image_fetch_handler,
    json_safe,
    sniff_mime,
    static_css,
    static_esm,
    to_numpy,
)
from repwidgets.widgets.traits import ArrayDict, ArrayTrait

DetailSource = Callable[[int, Hashable], Mapping[str, Any]]

#: Thumbnail size on screen (pixels) unless a widget is given ``thumb_size``.
DEFAULT_THUMB_SIZE = 96
MIN_THUMB_SIZE = 16
MAX_THUMB_SIZE = 512


def histogram_rows(values: Any, bins: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Per-column histograms of ``values`` [n_samples, n_columns].

    Each column gets ``bins`` equal-width bins between its own min and max (NaNs are
    ignored; a constant column puts everything in the middle bin).

    Returns:
        ``counts`` float32 [n_columns, bins] and ``ranges`` float32 [n_columns, 2].

    Example:
        >>> counts, ranges = histogram_rows(np.array([[0.0], [1.0], [1.0]]), bins=2)
        >>> counts.tolist(), ranges.tolist()
        ([[1.0, 2.0]], [[0.0, 1.0]])
    """
    a = np.asarray(to_numpy(values), dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(
            f"histogram_rows needs a 2-D array [n_samples, n_columns], got shape {a.shape}."
        )
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}.")
    n, m = a.shape
    finite = np.isfinite(a)
    lo = np.where(finite, a, np.inf).min(axis=0) if n else np.full(m, np.nan)
    hi = np.where(finite, a, -np.inf).max(axis=0) if n else np.full(m, np.nan)
    empty = ~np.isfinite(lo)
    lo = np.where(empty, np.nan, lo)
    hi = np.where(empty, np.nan, hi)
    width = np.where(hi > lo, hi - lo, 1.0)
    with np.errstate(invalid="ignore"):
        pos = (a - lo) / width * bins
    pos = np.where(hi > lo, pos, bins / 2)
    idx = np.clip(np.floor(np.nan_to_num(pos, nan=-1)), -1, bins - 1).astype(np.int64)
    idx = np.where(finite & (idx >= 0), idx, -1)
    flat = idx + np.arange(m)[None, :] * bins
    counts = np.bincount(flat[idx >= 0].ravel(), minlength=m * bins).reshape(m, bins)
    ranges = np.stack([lo, hi], axis=1)
    return counts.astype(np.float32), ranges.astype(np.float32)


def _plain(value: Any) -> Any:
    """A JSON-able version of a detail value (tensors/arrays -> lists, numpy -> Python)."""
    if isinstance(value, (str, bool, int, float)) or value is None:
        return json_safe(value)
    if hasattr(value, "tolist"):
        return json_safe(value.tolist())
    if isinstance(value, (list, tuple, set)):
        return json_safe([_plain(v) for v in value])
    return str(value)


def _image_key(key: Any, card_id: int) -> int | str:
    if isinstance(key, (bool, np.bool_)):
        raise TypeError(f"Card {card_id}: image keys must be ints or strings, got a bool.")
    if isinstance(key, (int, np.integer)):
        return int(key)
    if isinstance(key, str):
        return key
    if hasattr(key, "item") and getattr(key, "ndim", 1) == 0:
        return _image_key(key.item(), card_id)
    raise TypeError(
        f"Card {card_id}: image keys must be ints or strings (e.g. sample indices), "
        f"got {type(key).__name__}."
    )


def normalise_cards(
    cards: Iterable[Mapping[str, Any]], bins: int = 24
) -> tuple[list[dict], list[str], dict | None]:
    """Check and convert cards to what the front end reads.

    Returns:
        ``(cards, score_names, histograms)``: JSON cards (id, label, scores, images),
        the score names in first-seen order, and the histograms state (or None):
        ``{"counts": float32 [n_cards, bins], "ranges": float32 [n_cards, 2]}``.
    """
    if isinstance(cards, Mapping):
        raise TypeError("cards must be a list of dicts (one per neuron), not a single dict.")
    out: list[dict] = []
    names: dict[str, None] = {}
    hist_rows: list[tuple[np.ndarray, tuple[float, float]] | None] = []
    seen: set[int] = set()
    for pos, card in enumerate(cards):
        if not isinstance(card, Mapping):
            raise TypeError(
                f"Card {pos} is a {type(card).__name__}; each card must be a dict with an 'id'."
            )
        if "id" not in card:
            raise ValueError(
                f"Card {pos} has no 'id'; give every card an int id (e.g. the neuron index)."
            )
        raw_id = card["id"]
        if isinstance(raw_id, (bool, np.bool_)) or not isinstance(raw_id, (int, np.integer)):
            raise TypeError(
                f"Card {pos}: 'id' must be an int, got {type(raw_id).__name__} {raw_id!r}."
            )
        cid = int(raw_id)
        if cid in seen:
            raise ValueError(f"Card id {cid} appears more than once; card ids must be unique.")
        seen.add(cid)
        scores = {}
        for name, value in dict(card.get("scores") or {}).items():
            name = str(name)
            names.setdefault(name)
            try:
                f = float(value) if value is not None else math.nan
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"Card {cid}: score {name!r} must be a number, got {value!r}."
                ) from exc
            scores[name] = f if math.isfinite(f) else None
        images = [_image_key(k, cid) for k in (card.get("images") or [])]
        out.append(
            {"id": cid, "label": str(card.get("label") or ""), "scores": scores, "images": images}
        )
        hist = card.get("histogram")
        if hist is None:
            hist_rows.append(None)
        elif isinstance(hist, Mapping):
            counts = np.asarray(to_numpy(hist["counts"]), dtype=np.float32).ravel()
            lo, hi = (float(v) for v in hist.get("range", (math.nan, math.nan)))
            hist_rows.append((counts, (lo, hi)))
        else:
            values = np.asarray(to_numpy(hist), dtype=np.float64).ravel()
            c, r = histogram_rows(values[:, None], bins=bins)
            hist_rows.append((c[0], (float(r[0, 0]), float(r[0, 1]))))
    histograms = None
    present = [h for h in hist_rows if h is not None]
    if present:
        nb = len(present[0][0])
        if any(len(h[0]) != nb for h in present):
            raise ValueError("Pre-binned card histograms must all have the same number of bins.")
        counts = np.zeros((len(out), nb), dtype=np.float32)
        ranges = np.full((len(out), 2), np.nan, dtype=np.float32)
        for i, h in enumerate(hist_rows):
            if h is not None:
                counts[i] = h[0]
                ranges[i] = h[1]
        histograms = {"counts": counts, "ranges": ranges}
    return out, list(names), histograms


class NeuronGallery(anywidget.AnyWidget):
    """A sortable, filterable gallery of neuron cards with lazily loaded images.

    Args:
        cards: one dict per neuron: ``id`` (int, unique), optional ``label`` (str),
            ``scores`` ({name: float}), ``images`` (image keys, e.g. sample indices)
            and ``histogram`` (the neuron's activations, 1-D, or pre-binned
            ``{"counts", "range"}``).
        image_source: callable ``keys -> list[bytes]`` returning one encoded image
            (PNG/JPEG/WebP) per key, or a dict key -> bytes.
        detail_source: optional callable ``(card_id, key) -> dict`` of fields shown
            when an image is clicked; an ``"image"`` entry with bytes is shown large.
        title: shown in the toolbar.
        noun: what a card is ("neurons", "concepts"), for the counts.
        sort_by: score name to sort by ("" keeps the cards' order).
        descending: sort direction.
        selected: initially selected card ids.
        thumb_size: thumbnail size on screen in pixels (16 to 512). Cards are at least
            as wide as their thumbnails; the grid fits as many columns as its width
            allows and widens the cards to fill it.
        height: height of the scrolling grid in pixels.
        request_patience: seconds a request to the kernel (images, details) waits
            before the widget checks whether the kernel lost it and sends it again.
            Requests never fail for taking long: a busy kernel answers them when it
            is free, and meanwhile the widget says it is waiting.
        bins: number of histogram bins when cards give raw activations.

    Example:
        >>> cards = [{"id": 0, "label": "stripes", "scores": {"auc": 0.9}, "images": [3, 7]}]
        >>> g = NeuronGallery(cards, image_source=lambda keys: sess.thumbnails(keys))  # doctest: +SKIP
        >>> g.selected = [0]                                                    # doctest: +SKIP
    """

    _esm = static_esm("gallery")
    _css = static_css("gallery")

    cards = traitlets.List(traitlets.Dict()).tag(sync=True)
    score_names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    histograms = ArrayDict(
        {
            "counts": ArrayTrait("float32", ndim=2),
            "ranges": ArrayTrait("float32", shape=(None, 2)),
        },
        allow_none=True,
    ).tag(sync=True)
    selected = traitlets.List(traitlets.Int()).tag(sync=True)
    sort_by = traitlets.Unicode("").tag(sync=True)
    descending = traitlets.Bool(True).tag(sync=True)
    query = traitlets.Unicode("").tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    noun = traitlets.Unicode("neurons").tag(sync=True)
    thumb_size = traitlets.Int(DEFAULT_THUMB_SIZE).tag(sync=True)
    height = traitlets.Int(520).tag(sync=True)
    request_patience = traitlets.Float(10.0).tag(sync=True)

    def __init__(
        self,
        cards: Iterable[Mapping[str, Any]],
        image_source: ImageSource | Mapping | None = None,
        detail_source: DetailSource | None = None,
        *,
        title: str = "",
        noun: str = "neurons",
        sort_by: str = "",
        descending: bool = True,
        selected: Sequence[int] = (),
        thumb_size: int = DEFAULT_THUMB_SIZE,
        height: int = 520,
        request_patience: float = 10.0,
        bins: int = 24,
        **kwargs: Any,
    ) -> None:
        card_list, names, histograms = normalise_cards(cards, bins=bins)
        self._ids = {c["id"] for c in card_list}
        self._by_id = {c["id"]: c for c in card_list}
        if sort_by and sort_by not in names:
            raise ValueError(
                f"sort_by={sort_by!r} is not a score of these cards; scores: {names or 'none'}."
            )
        super().__init__(
            cards=card_list,
            score_names=names,
            histograms=histograms,
            title=title,
            noun=noun,
            sort_by=sort_by,
            descending=descending,
            thumb_size=thumb_size,
            height=height,
            request_patience=request_patience,
            **kwargs,
        )
        self.selected = [int(i) for i in selected]
        self._image_source = (
            as_image_source(image_source) if image_source is not None else _no_images
        )
        self._detail_source = detail_source
        self._router = RequestRouter(self)
        self._router.register("fetch", image_fetch_handler(lambda keys: self._image_source(keys)))
        self._router.register("details", self._handle_details)

    def replace_cards(
        self, cards: Iterable[Mapping[str, Any]], *, title: str | None = None, bins: int = 24
    ) -> NeuronGallery:
        """Show other cards in this gallery, in place (the view keeps its size, its sort
        and the images it already fetched; the image source stays the same, so card
        images must be keys of that source). The selection is cleared; a sort by a
        score the new cards lack falls back to their order.

        Example:
            >>> g.replace_cards([{"id": 5, "label": "other", "images": [5]}])  # doctest: +SKIP
        """
        card_list, names, histograms = normalise_cards(cards, bins=bins)
        with self.hold_sync():
            self.selected = []
            self._ids = {c["id"] for c in card_list}
            self._by_id = {c["id"]: c for c in card_list}
            if self.sort_by and self.sort_by not in names:
                self.sort_by = ""
            self.score_names = names
            self.histograms = histograms
            self.cards = card_list
            if title is not None:
                self.title = title
        return self

    # --- selection -------------------------------------------------------------------------
    @traitlets.validate("selected")
    def _validate_selected(self, proposal: Any) -> list[int]:
        return checked_selection(
            proposal["value"],
            getattr(self, "_ids", None),
            "cards of this gallery",
            "Valid ids are the cards' 'id' values (see .ids).",
        )

    @traitlets.validate("thumb_size")
    def _validate_thumb_size(self, proposal: Any) -> int:
        size = proposal["value"]
        if not MIN_THUMB_SIZE <= size <= MAX_THUMB_SIZE:
            raise traitlets.TraitError(
                f"thumb_size must be between {MIN_THUMB_SIZE} and {MAX_THUMB_SIZE} pixels; "
                f"got {size}."
            )
        return size

    @traitlets.validate("request_patience")
    def _validate_request_patience(self, proposal: Any) -> float:
        seconds = proposal["value"]
        if not (math.isfinite(seconds) and seconds > 0):
            raise traitlets.TraitError(
                f"request_patience must be a positive number of seconds; got {seconds}."
            )
        return seconds

    @property
    def ids(self) -> list[int]:
        """Card ids in their original order."""
        return [c["id"] for c in self.cards]

    def selected_cards(self) -> list[dict]:
        """The selected cards (id, label, scores, images), in selection order."""
        return [dict(self._by_id[i]) for i in self.selected]

    def to_frame(self):
        """A pandas DataFrame with one row per card: id, label, scores, n_images, selected."""
        import pandas as pd

        names = list(self.score_names)
        chosen = set(self.selected)
        rows = [
            {
                "id": c["id"],
                "label": c["label"],
                **{n: (np.nan if c["scores"].get(n) is None else c["scores"][n]) for n in names},
                "n_images": len(c["images"]),
                "selected": c["id"] in chosen,
            }
            for c in self.cards
        ]
        return pd.DataFrame(rows, columns=["id", "label", *names, "n_images", "selected"])

    def __repr__(self) -> str:
        return f"NeuronGallery({len(self.cards)} {self.noun}, {len(self.selected)} selected)"

    # --- requests from the browser -----------------------------------------------------------
    def _handle_details(self, content: dict, _buffers: list) -> tuple[dict, list]:
        card_id = content.get("card")
        key = content.get("key")
        if not isinstance(card_id, int) or card_id not in self._by_id:
            raise KeyError(f"no card with id {card_id!r}")
        card = self._by_id[card_id]
        if self._detail_source is not None:
            raw = dict(self._detail_source(card_id, key))
        else:
            raw = {"image": key, **card["scores"]}
        image = raw.pop("image", None) if isinstance(raw.get("image"), (bytes, bytearray)) else None
        fields = [[str(k), _plain(v)] for k, v in raw.items()]
        reply: dict[str, Any] = {"card": card_id, "key": key, "fields": fields}
        buffers: list = []
        if image is not None:
            reply["image"] = {"mime": sniff_mime(bytes(image))}
            buffers.append(bytes(image))
        return reply, buffers

    # --- builders -------------------------------------------------------------------------------
    @classmethod
    def from_activations(
        cls,
        sess: Any,
        layer: str,
        top_k: int = 8,
        split: str = "test",
        *,
        neurons: Sequence[int] | None = None,
        bins: int = 24,
        image_size: int = 64,
        **kwargs: Any,
    ) -> NeuronGallery:
        """A gallery of ``layer``'s neurons with each neuron's top-activating images.

        Uses ``sess.activations(layer, split, pool="mean")`` [n, C]: for each neuron the
        ``top_k`` samples with the highest mean activation, a histogram of its
        activations over the split, and the scores ``max`` (top activation), ``mean``,
        ``selectivity`` ((mean of the top k - mean) / std) and ``purity`` (share of the
        top k in the most common class, which also names the label).

        Args:
            sess: a :class:`repwidgets.Session`.
            layer: a layer name from ``sess.layers()``.
            top_k: images per neuron.
            split: which split's samples to show.
            neurons: a subset of neuron indices (default: all).
            bins: histogram bins.
            image_size: thumbnail size in pixels requested from the session.
            **kwargs: passed to :class:`NeuronGallery` (title, thumb_size, height, ...).

        Example:
            >>> g = NeuronGallery.from_activations(sess, "features.conv3", top_k=8)  # doctest: +SKIP
        """
        acts = to_numpy(sess.activations(layer, split=split, pool="mean"))
        if acts.ndim != 2:
            raise ValueError(
                f"Pooled activations of {layer!r} should be [n_samples, n_neurons], got shape "
                f"{tuple(acts.shape)}."
            )
        acts = np.asarray(acts, dtype=np.float32)
        n, n_neurons = acts.shape
        if n == 0:
            raise ValueError(f"Split {split!r} has no samples, so there are no images to show.")
        if not isinstance(top_k, (int, np.integer)) or top_k < 1:
            raise ValueError(f"top_k must be a positive int, got {top_k!r}.")
        if neurons is None:
            cols = np.arange(n_neurons)
        else:
            cols = np.asarray([int(i) for i in neurons], dtype=np.int64)
            bad = cols[(cols < 0) | (cols >= n_neurons)]
            if bad.size:
                raise ValueError(
                    f"neurons {bad[:10].tolist()} are out of range: layer {layer!r} has "
                    f"{n_neurons} neurons (0..{n_neurons - 1})."
                )
        nan_cols = cols[np.isnan(acts[:, cols]).any(axis=0)]
        if nan_cols.size:
            raise ValueError(
                f"Activations of {layer!r} contain NaN for neurons {nan_cols[:10].tolist()}; "
                "check the model and its inputs."
            )
        k = min(int(top_k), n)
        sub = acts[:, cols]  # [n, m]
        top = (
            np.argpartition(-sub, k - 1, axis=0)[:k]
            if k < n
            else np.tile(np.arange(n)[:, None], (1, len(cols)))
        )
        order = np.argsort(-np.take_along_axis(sub, top, axis=0), axis=0, kind="stable")
        top = np.take_along_axis(top, order, axis=0)  # [k, m], best first
        top_vals = np.take_along_axis(sub, top, axis=0)
        mean = sub.mean(axis=0)
        std = sub.std(axis=0)
        selectivity = np.where(
            std > 0, (top_vals.mean(axis=0) - mean) / np.where(std > 0, std, 1), 0.0
        )
        counts, ranges = histogram_rows(sub, bins=bins)

        targets = to_numpy(sess.targets(split)).astype(np.int64).ravel()
        class_names = list(getattr(sess, "class_names", []) or [])
        concepts = _concepts_or_none(sess, split)
        concept_names = list(getattr(sess, "concept_names", []) or [])

        cards = []
        for j, neuron in enumerate(cols.tolist()):
            idx = top[:, j]
            cls_counts = np.bincount(targets[idx], minlength=1)
            major = int(cls_counts.argmax())
            purity = float(cls_counts[major]) / k
            major_name = _name(class_names, major)
            label = f"{major_name} {int(cls_counts[major])}/{k}"
            if concepts is not None and concepts.shape[1]:
                share = concepts[idx].mean(axis=0) - concepts.mean(axis=0)
                # a concept named like the majority class repeats what the label already says
                share[[i for i, nm in enumerate(concept_names) if nm == major_name]] = -np.inf
                c = int(share.argmax())
                if share[c] > 0:
                    label += f" · {_name(concept_names, c)} {int(concepts[idx, c].sum())}/{k}"
            cards.append(
                {
                    "id": neuron,
                    "label": label,
                    "scores": {
                        "max": float(top_vals[0, j]),
                        "mean": float(mean[j]),
                        "selectivity": float(selectivity[j]),
                        "purity": purity,
                    },
                    "images": [int(i) for i in idx],
                    "histogram": {
                        "counts": counts[j],
                        "range": (float(ranges[j, 0]), float(ranges[j, 1])),
                    },
                }
            )

        def image_source(keys: list) -> list[bytes]:
            return list(sess.thumbnails([int(k) for k in keys], split=split, size=image_size))

        def detail_source(card_id: int, key: Any) -> dict:
            i = int(key)
            if not 0 <= i < n:
                raise KeyError(f"sample {i} is not in split {split!r} (0..{n - 1})")
            value = float(acts[i, card_id])
            rank = int((acts[:, card_id] > value).sum()) + 1
            details: dict[str, Any] = {
                "sample": i,
                "split": split,
                "class": _name(class_names, int(targets[i])),
                "concepts": (
                    [_name(concept_names, int(c)) for c in np.flatnonzero(concepts[i])]
                    if concepts is not None
                    else "–"
                ),
                f"activation of #{card_id}": value,
                "rank": f"{rank} of {n}",
            }
            # a larger picture is a nicety; the thumbnail is already on screen
            with contextlib.suppress(Exception):
                details["image"] = sess.thumbnails([i], split=split, size=max(224, image_size))[0]
            return details

        kwargs.setdefault("title", f"{layer} · top {k} {split} images")
        return cls(cards, image_source=image_source, detail_source=detail_source, **kwargs)


def _no_images(keys: list) -> list[bytes]:
    raise ValueError("This gallery has no image source; pass image_source= to show images.")


def _name(names: Sequence[str], i: int) -> str:
    return str(names[i]) if 0 <= i < len(names) else str(i)


def _concepts_or_none(sess: Any, split: str) -> np.ndarray | None:
    try:
        c = sess.concepts(split)
    except (ValueError, AttributeError, KeyError, NotImplementedError):
        return None
    if c is None:
        return None
    arr = np.asarray(to_numpy(c)).astype(bool)
    return arr if arr.ndim == 2 else None
