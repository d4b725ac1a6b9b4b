"""Candidate samples for curation: the one type the curation widget reads.

Mid-range selection (samples in the middle of a class logit's range) and concept
attribution (training samples ranked by how much they taught a concept) both produce
:class:`Candidates`; :class:`~repwidgets.widgets.curation.CurationSelector` shows
them, and moving its band asks ``reselect`` for the candidates of the new band.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from repwidgets.curation_store import Curation

__all__ = ["Candidates"]


@dataclasses.dataclass
class Candidates:
    """Samples offered for curation, with what a person needs to judge them.

    Attributes:
        samples: LongTensor [n], the candidates' indices in ``split``.
        scores: [n], the score that put each sample in the band (a logit, an
            attribution score).
        labels: LongTensor [n], true classes; predictions: LongTensor [n], the model's.
        groups: LongTensor [n], group ids (class x artifact), -1 where unknown.
        population: [N], the scores of every sample the band was drawn from (the
            histogram behind the band control).
        band: (low, high) quantiles of ``population`` the candidates come from.
        limits: (low, high) score values of the band's ends.
        class_names, group_names: names for labels and groups.
        split: the split the indices refer to; n_split: its size.
        title: one line that says what the candidates are.
        score_name: what ``scores`` measures (shown beside each score).
        absolute: the band is over absolute scores.
        context: JSON-able facts recorded in the curation file (source, layer, class).
        dataset: ``{"name": ..., "fingerprint": ...}`` of the data the indices refer to.
        reselect: ``band -> Candidates`` for a moved band (None: the band is fixed).
        extra: more per-sample columns for ``to_frame`` (name -> [n] tensor).
    """

    samples: Tensor
    scores: Tensor
    labels: Tensor
    predictions: Tensor
    groups: Tensor
    population: Tensor
    band: tuple[float, float]
    limits: tuple[float, float]
    class_names: Sequence[str]
    split: str
    title: str = ""
    score_name: str = "score"
    group_names: Sequence[str] = ()
    absolute: bool = False
    n_split: int | None = None
    context: dict[str, Any] = dataclasses.field(default_factory=dict)
    dataset: dict[str, Any] | None = None
    reselect: Callable[[tuple[float, float]], Candidates] | None = None
    extra: dict[str, Tensor] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.samples = torch.as_tensor(self.samples).long().reshape(-1)
        n = self.samples.numel()
        for name in ("scores", "labels", "predictions", "groups"):
            value = torch.as_tensor(getattr(self, name)).reshape(-1)
            if value.numel() != n:
                raise ValueError(
                    f"Candidates: {name} has {value.numel()} entries but there are {n} "
                    "samples; give one per sample."
                )
            setattr(self, name, value.float() if name == "scores" else value.long())
        self.population = torch.as_tensor(self.population).float().reshape(-1)
        self.band = (float(self.band[0]), float(self.band[1]))
        self.limits = (float(self.limits[0]), float(self.limits[1]))
        self.class_names = [str(c) for c in self.class_names]
        self.group_names = [str(g) for g in self.group_names]

    def __len__(self) -> int:
        return int(self.samples.numel())

    @property
    def movable(self) -> bool:
        """Whether the band can be moved (a ``reselect`` function was given)."""
        return self.reselect is not None

    def with_band(self, band: tuple[float, float]) -> Candidates:
        """The candidates of another band; a ValueError when the band is fixed."""
        if self.reselect is None:
            raise ValueError("These candidates have a fixed band; it cannot be moved.")
        return self.reselect((float(band[0]), float(band[1])))

    def curation(self, path: str | os.PathLike | None = None) -> Curation:
        """The curation store for these candidates: the file at ``path``, or in memory."""
        kwargs = {
            "split": self.split,
            "n_samples": self.n_split,
            "dataset": self.dataset,
            "context": {**self.context, "band": list(self.band)},
        }
        if path is None:
            return Curation.in_memory(**kwargs)
        return Curation.open(path, **kwargs)

    def _name(self, i: int) -> str:
        names = self.class_names
        return names[i] if 0 <= i < len(names) else str(i)

    def to_frame(self):
        """One row per candidate: sample, score, label, prediction, group (and extras)."""
        import pandas as pd

        groups = self.group_names
        frame = pd.DataFrame(
            {
                "sample": self.samples.numpy(),
                self.score_name: self.scores.numpy(),
                "label": [self._name(i) for i in self.labels.tolist()],
                "prediction": [self._name(i) for i in self.predictions.tolist()],
                "group": [groups[g] if 0 <= g < len(groups) else "" for g in self.groups.tolist()],
            }
        )
        for name, values in self.extra.items():
            frame[name] = torch.as_tensor(values).cpu().numpy()
        return frame
