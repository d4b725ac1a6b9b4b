"""The result of per-neuron attribution: training samples ranked by what they taught a neuron.

:class:`NeuronAttributionResult` holds the scores of the attributed training samples,
their classes and concept labels, and the targets (the neuron's top-activating
samples). It ranks (``top``, ``to_frame``), checks a ranking against a concept
(``precision_at``, ``enrichment``), plots, and hands samples over to curation
(``candidates``) as concept attribution's result does.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from repwidgets.candidates import Candidates
from repwidgets.engines.attribution.concept_result import (
    TrainingScores,
    training_candidates,
)
from repwidgets.engines.neurons import enrichment
from repwidgets.results import Result

if TYPE_CHECKING:  # pragma: no cover
    from repwidgets.session import Session

__all__ = ["NeuronAttributionResult"]


@dataclass
class NeuronAttributionResult(TrainingScores, Result):
    """Training samples ranked by how much they taught neuron ``unit`` of ``layer`` to fire.

    Attributes:
        layer, unit: the neuron.
        scores: [n] mean TRAK score over the targets per attributed training sample
            (positive: training on it raised the neuron's activation on the targets).
        train_indices: [n] their indices in the training split.
        target_indices: [m] the targets' indices in ``target_split`` (the neuron's
            top-activating samples, highest first); target_activations: [m] their
            pooled activations.
        classes: [n] class labels of the attributed samples.
        concepts: [n, K] their concept labels (``concept_names``; K = 0 without labels).
        class_names: the class names.
        pool: how the neuron's map was pooled; proj_dim, lam, grad_dims: TRAK's settings
            and the number of differentiated parameters.

    Example:
        >>> r.top(5); r.precision_at(100, "watermark"); r.enrichment(100).head()  # doctest: +SKIP
    """

    layer: str
    unit: int
    scores: torch.Tensor
    train_indices: torch.Tensor
    target_indices: torch.Tensor
    target_split: str
    target_activations: torch.Tensor
    classes: torch.Tensor
    concepts: torch.Tensor
    concept_names: list
    class_names: list
    pool: str = "mean"
    proj_dim: int | None = None
    lam: float = 1.0
    grad_dims: list = field(default_factory=list)

    # positions of selected samples and the band they span, as concept attribution's

    @property
    def concept(self) -> str:
        """A name for what is attributed (titles and curation files): ``neuron 12``."""
        return f"neuron {self.unit}"

    def concept_index(self, concept: str | int) -> int:
        """The column of ``concepts`` for a concept name (or index); "did you mean" otherwise."""
        names = list(self.concept_names)
        if not names:
            raise ValueError(
                "This result has no concept labels (the data has none): precision and "
                "enrichment need a concept table."
            )
        if isinstance(concept, (int, np.integer)) and not isinstance(concept, bool):
            if not 0 <= int(concept) < len(names):
                raise IndexError(f"concept index {concept} is out of range (0..{len(names) - 1}).")
            return int(concept)
        if concept not in names:
            close = difflib.get_close_matches(str(concept), names, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(f"Unknown concept {concept!r}.{hint} Concepts: {', '.join(names)}.")
        return names.index(concept)

    def labels(self, concept: str | int) -> np.ndarray:
        """Whether each attributed sample carries ``concept``, bool [n] (result order)."""
        return torch.as_tensor(self.concepts)[:, self.concept_index(concept)].numpy().astype(bool)

    def precision_at(self, k: int, concept: str | int) -> float:
        """Fraction of the k highest-scored samples that carry ``concept`` (a name of
        ``concept_names`` or its index); compare with ``labels(concept).mean()``, the
        base rate."""
        if int(k) < 1:
            raise ValueError(f"k must be at least 1, got {k}.")
        return float(self.labels(concept)[self.order()[: int(k)]].mean())

    def enrichment(self, k: int = 100) -> pd.DataFrame:
        """Which concepts the top-k attributed samples carry more often than the others
        (:func:`repwidgets.engines.neurons.enrichment`: rates, ratio, one-sided p-value)."""
        concepts = torch.as_tensor(self.concepts).bool()
        members = torch.as_tensor(self.order()[: int(k)], dtype=torch.long)
        return enrichment(concepts, members, list(self.concept_names))

    def to_frame(self) -> pd.DataFrame:
        """One row per attributed training sample, best first: sample (training-split
        index), score, rank, class, then every concept label."""
        order = self.order()
        classes = torch.as_tensor(self.classes).numpy()[order]
        names = list(self.class_names)
        df = pd.DataFrame(
            {
                "sample": torch.as_tensor(self.train_indices).numpy()[order],
                "score": torch.as_tensor(self.scores).numpy()[order],
                "rank": np.arange(1, len(order) + 1),
                "class": [names[c] if 0 <= c < len(names) else str(c) for c in classes],
            }
        )
        concepts = torch.as_tensor(self.concepts).numpy()[order]
        for j, name in enumerate(self.concept_names):
            if name not in df.columns:
                df[name] = concepts[:, j].astype(bool)
        return df

    def plot(self, concept: str | int | None = None):
        """Bokeh row: the score histogram and the precision at k of ``concept`` (default:
        the concept most enriched among the top 100) against its base rate."""
        from bokeh.layouts import row
        from bokeh.plotting import figure

        from repwidgets import plots

        s = torch.as_tensor(self.scores).numpy()
        hist = plots.histogram(
            s, title=f"Attribution scores, neuron {self.unit} at {self.layer}", x_label="score"
        )
        if concept is None:
            if not self.concept_names:
                return hist
            concept = str(self.enrichment(min(100, len(s))).concept.iloc[0])
        lab = self.labels(concept)
        ks = np.unique(np.clip(np.round(np.geomspace(1, len(s), 40)).astype(int), 1, len(s)))
        hits = np.cumsum(lab[self.order()])
        prec = figure(
            height=280,
            width=380,
            x_axis_type="log",
            y_range=(0, 1.02),
            title=f"Precision at k: top-k carrying {self.concept_names[self.concept_index(concept)]}",
            toolbar_location="above",
        )
        prec.line(ks, hits[ks - 1] / ks, line_width=2)
        prec.line([1, len(s)], [lab.mean()] * 2, line_dash="dashed", color="gray")
        prec.xaxis.axis_label = "k"
        return row(hist, prec)

    def candidates(
        self,
        session: Session | None = None,
        samples: Sequence[int] | None = None,
        band: tuple[float, float] | None = None,
    ) -> Candidates:
        """Attributed training samples as curation candidates.

        Args:
            session: the session the result came from (default); needed for a result
                loaded from a file.
            samples: training-split indices a person selected (among the attributed
                samples); shown highest score first.
            band: else a band ``(low, high)`` of quantiles of the scores (default
                ``(0.9, 1.0)``: the top tenth).

        Example:
            >>> c = r.candidates(band=(0.95, 1.0))        # doctest: +SKIP
        """
        return training_candidates(
            self,
            session,
            samples,
            band,
            title=f"Training samples that taught neuron {self.unit} at {self.layer}",
            context={"source": "neuron attribution", "layer": str(self.layer), "unit": self.unit},
        )
