"""The explorer: one composed view of a layer's neurons, one neuron, one sample, and actions.

``rw.explore(sess, layer)`` opens it. The map of neurons and the heatmap (linked), the
panel of the selected neuron (INVERT label, s-AMS, top and mid-range samples, enriched
concepts, concept vectors, the training samples that taught it), the panel of the
opened sample (with a breadcrumb and Back), and the actions (flag, export, retrain).
Everything the person does is live in Python (``x.selected_neurons``,
``x.selected_samples``, ``x.curation``, ``x.selection``) and every step has a method a
script or a test can call (``select_neuron``, ``select_samples``, ``show_sample``,
``back``, ``search``, ``flag``, ``attribute``, ``retrain``, ``to_csv``).

Example:
    >>> x = rw.explore(sess, "features.conv4")     # doctest: +SKIP
    >>> x.select_neuron(x.outliers[0])             # doctest: +SKIP
    >>> x.attribute(); x.flag("spurious"); x.retrain()   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ipywidgets
import numpy as np
import pandas as pd

from repwidgets.atomic import atomic_write_text
from repwidgets.curation_store import MARKS, Curation
from repwidgets.views.explorer.actions import ActionBar, retrain_comparison, selection_frame
from repwidgets.views.explorer.data import ExplorerData
from repwidgets.views.explorer.galleries import sample_cards, sample_gallery, trail_of
from repwidgets.views.explorer.jobs import Jobs
from repwidgets.views.explorer.neurons import NeuronMap
from repwidgets.views.explorer.panels import NeuronPanel, SamplePanel

__all__ = ["Explorer"]

#: Samples shown in the mid-range and "taught by" galleries.
GALLERY_SIZE = 48
#: Steps of the trail shown (the older ones as "…").
TRAIL_STEPS = 4


class Explorer(ipywidgets.VBox):
    """The composed explorer of one layer (see the module docstring; open with ``explore``).

    Attributes:
        data: the :class:`~repwidgets.views.explorer.data.ExplorerData` (results, per-neuron data).
        map: the :class:`~repwidgets.views.explorer.neurons.NeuronMap` (map, heatmap, search).
        neuron_panel, sample_panel: the two panels.
        actions: the :class:`~repwidgets.views.explorer.actions.ActionBar`.
        jobs: the background worker (progress, status, Cancel).
        curation: the :class:`~repwidgets.curation_store.Curation` flags go to.
        attributions: ``{unit: NeuronAttributionResult}`` computed so far.
        comparison: the last retraining's ComparisonResult (or None).
        galleries: ``{"top", "midrange", "taught"}`` the sample galleries (each kept and
            given the next neuron's cards in place; empty when its slot shows nothing).
    """

    def __init__(
        self,
        data: ExplorerData,
        curation: Curation,
        *,
        attribution_options: dict[str, Any] | None = None,
        retrain_options: dict[str, Any] | None = None,
        export_path: str | os.PathLike = "explorer_selection.csv",
    ) -> None:
        self.data, self.sess, self.layer = data, data.sess, data.layer
        self.curation = curation
        self.attribution_options = dict(attribution_options or {})
        self.retrain_options = dict(retrain_options or {})
        self.export_path = Path(export_path)
        self.attributions: dict[int, Any] = {}
        self.comparison: Any = None
        self.galleries: dict[str, Any] = {"top": None, "midrange": None, "taught": None}
        self._samples: list[int] = []
        self._history: list[dict[str, Any]] = []
        self._restoring = False
        self.jobs = Jobs()
        self.map = NeuronMap(data, self._map_images() if data._sams is not None else None)
        self.neuron_panel = NeuronPanel(band=data.band)
        self.sample_panel = SamplePanel()
        self.actions = ActionBar()
        self._wire()
        title = ipywidgets.Label(
            f"Explorer · {self.layer} · {len(data.ids)} neurons · samples of the {data.split} split"
        )
        # the neuron panel takes the full width: its galleries fit 4+ cards a row
        self.neuron_panel.layout.width = "100%"
        self.sample_panel.layout.width = "100%"
        super().__init__([title, self.map, self.neuron_panel, self.sample_panel, self.actions])
        self._jobs_beside(self.actions.job_slot)
        self.add_class("rw-explorer")
        self._show_counts()
        self._preload = self.jobs.start(
            f"reading the activations of {self.layer}", lambda _r, _c: data.activations()
        )

    def _jobs_beside(self, slot: ipywidgets.Box) -> None:
        """Show the progress, Cancel and status in ``slot``, next to the action that
        started the job (the attribution button or the action bar); a running job's
        progress stays where it is."""
        if self.jobs.busy:
            return
        for other in (self.neuron_panel.job_slot, self.actions.job_slot):
            if other is not slot and other.children:
                other.children = ()
        if not slot.children:
            slot.children = (self.jobs.box,)

    def _ready(self) -> None:
        """Wait for the activations read at open (the worker runs one job at a time)."""
        self._preload.wait()

    # --- wiring -------------------------------------------------------------------------
    def _map_images(self):
        sams, ids = self.data._sams, self.data.ids

        def source(keys: list) -> list[bytes]:
            return sams([ids[int(k)] for k in keys])

        return source

    def _wire(self) -> None:
        self.map.heatmap.observe(self._on_neurons, names="selected")
        self.neuron_panel.band.observe(self._on_band, names="value")
        self.neuron_panel.attribute_button.on_click(lambda _b: self.attribute(wait=False))
        self.sample_panel.back_button.on_click(lambda _b: self.back())
        for mark, button in self.actions.flag_buttons.items():
            button.on_click(lambda _b, m=mark: self._flag_clicked(m))
        self.actions.export_button.on_click(lambda _b: self._export_clicked())
        self.actions.retrain_button.on_click(lambda _b: self.retrain(wait=False))
        self.curation.observe(lambda _c: self._show_counts())

    def _on_neurons(self, change: dict) -> None:
        if self._restoring:
            return
        units = [int(u) for u in change["new"]]
        if units and units[-1] != self.neuron_panel.unit:
            self._open_neuron(units[-1])
        self._push()

    def _on_band(self, change: dict) -> None:
        unit = self.neuron_panel.unit
        if unit is None or self._restoring:
            return
        nd = self.data.neuron(unit, tuple(change["new"]))
        self.neuron_panel.show_label(nd)
        self._set_gallery("midrange", nd.midrange[:GALLERY_SIZE], "mid-range", unit)

    # --- neurons ------------------------------------------------------------------------
    @property
    def selected_neurons(self) -> list[int]:
        """The selected neurons (ids), live."""
        return self.map.selected

    @property
    def outliers(self) -> list[int]:
        """DORA's outlier neurons, most outlying first (empty without DORA)."""
        return [] if self.data.dora is None else list(self.data.dora.outliers())

    @property
    def neuron(self) -> int | None:
        """The neuron whose panel is open."""
        return self.neuron_panel.unit

    def select_neuron(self, unit: int) -> Explorer:
        """Select neuron ``unit`` and open its panel."""
        unit = self.data.check_unit(unit)
        if self.map.selected == [unit]:
            self._open_neuron(unit)
            self._push()
        else:
            self.map.selected = [unit]
        return self

    def search(self, text: str) -> list[int]:
        """Select the neurons whose INVERT formula contains ``text``; returns their ids."""
        return self.map.search(text)

    def _open_neuron(self, unit: int) -> None:
        nd = self.data.neuron(unit, tuple(self.neuron_panel.band.value))
        self.neuron_panel.show_label(nd)
        acts = self.data.activations()[:, unit].numpy()
        self._set_gallery("top", nd.top, "top-activating", unit, acts)
        self._set_gallery("midrange", nd.midrange[:GALLERY_SIZE], "mid-range", unit, acts)
        if unit in self.attributions:
            self._show_taught(unit)
        else:
            self._set_gallery("taught", [], "", unit)

    def _set_gallery(
        self, slot: str, samples: list[int], what: str, unit: int, acts: Any = None
    ) -> None:
        box = {"top": self.neuron_panel.top, "midrange": self.neuron_panel.midrange}.get(
            slot, self.neuron_panel.taught
        )
        if not samples:
            box.children = []
            if self.galleries.get(slot) is not None:
                with self._quietly():
                    self.galleries[slot].replace_cards([])
            return
        if acts is None:
            acts = self.data.activations()[:, unit].numpy()
        self._fill_gallery(slot, box, samples, f"{what} samples of neuron #{unit}", acts)

    def _fill_gallery(
        self, slot: str, box: Any, samples: list[int], title: str, acts: Any, extra: Any = None
    ) -> Any:
        """Show ``samples`` in the gallery of ``slot``: the same gallery with other cards
        when it exists (its view and fetched images stay), else a new one."""
        labels, scores = self._card_texts(samples, acts, extra)
        gallery = self.galleries.get(slot)
        if gallery is None:
            gallery = sample_gallery(
                self.sess,
                self.data.split,
                samples,
                on_open=self._opened,
                title=title,
                scores=scores,
                labels=labels,
            )
            gallery.observe(lambda ch: self._from_gallery(ch["new"]), names="selected")
            self.galleries[slot] = gallery
        else:
            with self._quietly():
                gallery.replace_cards(
                    sample_cards(samples, scores=scores, labels=labels), title=title
                )
        if list(box.children) != [gallery]:
            box.children = [gallery]
        return gallery

    def _card_texts(self, samples: list[int], acts: Any, extra: Any) -> tuple[list, dict]:
        names = list(self.sess.class_names)
        targets = self.sess.targets(self.data.split)
        labels = [names[int(targets[i])] for i in samples]
        # short score names: a card's score line fits its width uncut
        scores = {"act": [float(acts[i]) for i in samples]}
        if extra:
            scores.update(extra)
        return labels, scores

    @contextlib.contextmanager
    def _quietly(self) -> Iterator[None]:
        """Gallery selections changed by the explorer itself are not a person's choice."""
        before, self._restoring = self._restoring, True
        try:
            yield
        finally:
            self._restoring = before

    # --- samples ------------------------------------------------------------------------
    @property
    def selected_samples(self) -> list[int]:
        """The selected samples (indices of the split, "train"), live."""
        return list(self._samples)

    def select_samples(self, indices: Any) -> Explorer:
        """Select samples (indices of the split); one sample also opens its panel."""
        n = self.sess.n(self.data.split)
        samples = [int(i) for i in np.asarray(indices, dtype=np.int64).ravel()]
        bad = [i for i in samples if not 0 <= i < n]
        if bad:
            raise ValueError(
                f"Samples {bad[:5]} are not in split {self.data.split!r} (0..{n - 1})."
            )
        self._samples = list(dict.fromkeys(samples))
        if len(self._samples) == 1:
            self._open_sample(self._samples[0])
        self._show_counts()
        self._push()
        return self

    def _from_gallery(self, ids: list[int]) -> None:
        if self._restoring:
            return
        self._samples = [int(i) for i in ids]
        self._show_counts()
        self._push()

    def show_sample(self, index: int) -> dict[str, Any]:
        """Open sample ``index`` in the sample panel; returns its facts."""
        facts = self._open_sample(int(index))
        self._push()
        return facts

    def _opened(self, index: int) -> dict[str, Any]:
        """A gallery image was clicked: open the sample, answer the gallery's detail view."""
        facts = self.show_sample(index)
        return {k: v for k, v in facts.items() if k != "strongest"}

    def _open_sample(self, index: int) -> dict[str, Any]:
        facts = self.data.sample_facts(index)
        strongest = self.data.strongest(index)
        score = self._score(index)
        image = self.sess.thumbnails([index], split=self.data.split, size=128)[0]
        self.sample_panel.show(facts, image, strongest, score)
        out = {**facts, "strongest": [int(u) for u in strongest["neuron"]]}
        if score is not None:
            out["attribution score"] = score
        return out

    def _score(self, index: int) -> float | None:
        result = self.attributions.get(self.neuron_panel.unit)
        if result is None:
            return None
        hits = np.flatnonzero(np.asarray(result.train_indices) == index)
        return float(np.asarray(result.scores)[hits[0]]) if hits.size else None

    # --- history ------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "neuron": self.neuron_panel.unit,
            "neurons": self.selected_neurons,
            "sample": self.sample_panel.index,
            "samples": list(self._samples),
        }

    def _push(self) -> None:
        state = self._state()
        if not self._history or self._history[-1] != state:
            self._history.append(state)
        self._show_trail()

    @property
    def trail(self) -> list[str]:
        """Where the person has been, oldest first ("neuron #3", "sample #12", ...)."""
        return trail_of(self._history)

    def _show_trail(self) -> None:
        steps = self.trail
        shown = steps[-TRAIL_STEPS:]
        self.sample_panel.trail.value = ("… › " if len(steps) > len(shown) else "") + " › ".join(
            shown
        )
        self.sample_panel.trail.tooltip = " › ".join(steps)
        self.sample_panel.back_button.disabled = not self._can_go_back()

    def _can_go_back(self) -> bool:
        """Whether an earlier state shows a step in the trail (Back has somewhere to go)."""
        return len(self._history) >= 2 and bool(trail_of(self._history[:-1]))

    def back(self) -> Explorer:
        """One step back: the previous neuron, sample and selections (nothing before the
        first neuron or sample opened, as the disabled Back button says)."""
        if not self._can_go_back():
            return self
        self._history.pop()
        state = self._history[-1]
        self._restoring = True
        try:
            self.map.selected = state["neurons"]
            if state["neuron"] is not None and state["neuron"] != self.neuron_panel.unit:
                self._open_neuron(state["neuron"])
            self._samples = list(state["samples"])
            for gallery in self.galleries.values():
                if gallery is not None:
                    gallery.selected = [i for i in self._samples if i in set(gallery.ids)]
            if state["sample"] is None:
                self.sample_panel.hide()
            elif state["sample"] != self.sample_panel.index:
                self._open_sample(state["sample"])
        finally:
            self._restoring = False
        self._show_counts()
        self._show_trail()
        return self

    # --- attribution --------------------------------------------------------------------
    def attribute(self, unit: int | None = None, wait: bool = True) -> Any:
        """The training samples that taught ``unit`` (default: the open neuron), per-neuron TRAK.

        Cached per neuron. ``wait=False`` runs in the background (progress and Cancel in
        the view) and returns the job; ``wait=True`` returns the
        ``NeuronAttributionResult``. Settings: ``attribution_options`` of
        :func:`~repwidgets.views.explorer.explore` (``proj_dim``, ``max_train``, ...).
        """
        unit = self.neuron_panel.unit if unit is None else self.data.check_unit(unit)
        if unit is None:
            raise ValueError("Select a neuron first (x.select_neuron(unit)), or pass unit=.")
        if unit in self.attributions:
            if unit == self.neuron_panel.unit:
                self._show_taught(unit)
            return self.attributions[unit] if wait else self.jobs.current

        def work(report, cancel):
            from repwidgets.engines.attribution import neuron_attribution

            return neuron_attribution(
                self.sess,
                self.layer,
                unit,
                progress=False,
                cancel=cancel,
                on_progress=report,
                **self.attribution_options,
            )

        def done(job) -> None:
            if job.state == "done":
                self.attributions[unit] = job.result
                if unit == self.neuron_panel.unit:
                    self._show_taught(unit)

        self._ready()
        self._jobs_beside(self.neuron_panel.job_slot)
        job = self.jobs.start(f"attribution of neuron #{unit}", work, wait=wait, on_done=done)
        return job.result if wait else job

    def _show_taught(self, unit: int) -> None:
        frame = self.attributions[unit].to_frame().head(GALLERY_SIZE)
        samples = [int(i) for i in frame["sample"]]
        acts = self.data.activations()[:, unit].numpy()
        extra = {"TRAK": list(frame["score"])}  # the rank is the sort order
        gallery = self._fill_gallery(
            "taught",
            self.neuron_panel.taught,
            samples,
            f"training samples that taught neuron #{unit}",
            acts,
            extra,
        )
        gallery.sort_by = "TRAK"

    # --- actions ------------------------------------------------------------------------
    def flag(self, mark: str, indices: Any = None) -> Curation:
        """Mark samples (default: the selected ones) "keep", "spurious" or "exclude" (or
        None to clear) in :attr:`curation`, written to its file at once."""
        if mark is not None and mark not in MARKS:
            raise ValueError(f"mark must be one of {MARKS} or None; got {mark!r}.")
        samples = self.selected_samples if indices is None else [int(i) for i in indices]
        if not samples:
            raise ValueError(
                "No samples to flag: select some in a gallery (or x.select_samples([...])), "
                "or pass indices=."
            )
        self.curation.mark_many(samples, mark)
        return self.curation

    def _flag_clicked(self, mark: str) -> None:
        try:
            self.flag(mark)
            self._jobs_beside(self.actions.job_slot)
            self.jobs.say(f"{len(self._samples)} samples flagged {mark}")
        except ValueError as exc:
            self.jobs.say(str(exc))

    @property
    def selection(self) -> pd.DataFrame:
        """The selected samples: sample, class, prediction, mark, activation of the open
        neuron, attribution score (when computed) and concepts."""
        return selection_frame(
            self.data, self._samples, self.neuron_panel.unit, self.curation, self._score
        )

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write :attr:`selection` to a CSV file (atomically); returns its path."""
        buffer = io.StringIO()
        self.selection.to_csv(buffer, index=False)
        return atomic_write_text(Path(path).expanduser(), buffer.getvalue())

    def _export_clicked(self) -> None:
        path = self.to_csv(self.export_path)
        self._jobs_beside(self.actions.job_slot)
        self.jobs.say(f"{len(self._samples)} samples written to {path}")

    def retrain(self, wait: bool = True) -> Any:
        """Retrain the last layer on the curation; ERM vs curated vs random (vs oracle).

        ``wait=True`` returns the ComparisonResult (``to_frame()``: one row per method);
        ``wait=False`` runs in the background and returns the job. The table and the
        plot in the view update in place.
        """

        def work(report, cancel):
            return retrain_comparison(
                self.sess, self.curation, report=report, cancel=cancel, **self.retrain_options
            )

        def done(job) -> None:
            if job.state == "done":
                self.comparison = job.result
                self.actions.show_comparison(job.result)

        self._ready()
        self._jobs_beside(self.actions.job_slot)
        job = self.jobs.start("retraining the last layer", work, wait=wait, on_done=done)
        return job.result if wait else job

    def _show_counts(self) -> None:
        n = len(self._samples)
        self.actions.selection_label.value = f"{n} sample{'s' if n != 1 else ''} selected"
        counts = self.curation.counts()
        self.actions.counts.value = " · ".join(f"{k} {v}" for k, v in counts.items())

    def __repr__(self) -> str:
        return (
            f"Explorer({self.layer!r}, {len(self.data.ids)} neurons, neuron={self.neuron}, "
            f"{len(self._samples)} samples selected, {self.curation!r})"
        )
