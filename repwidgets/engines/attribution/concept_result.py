"""The result of concept attribution: training samples ranked by what they taught.

:class:`ConceptAttributionResult` holds the scores and the probes; ``candidates()``
hands the top of the ranking (a band of its quantiles) or a person's selection over to
curation as :class:`~repwidgets.candidates.Candidates`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from repwidgets.candidates import Candidates
from repwidgets.engines.attribution.plotting import histogram
from repwidgets.engines.attribution.probes import ProbeLayersResult
from repwidgets.results import Result

if TYPE_CHECKING:  # pragma: no cover
    from repwidgets.session import Session

__all__ = ["ConceptAttributionResult"]


class TrainingScores:
    """What results that score training samples share: their order, top and bottom, and
    the positions of chosen samples (``scores`` [n] and ``train_indices`` [n] fields)."""

    def order(self) -> np.ndarray:
        """Positions [n] in the result's arrays (scores, train_indices, ...), highest
        score first (ties keep their order)."""
        return np.argsort(-torch.as_tensor(self.scores).numpy(), kind="stable")

    _order = order

    def top(self, k: int = 100) -> np.ndarray:
        """Training-split indices of the k highest-scored samples (most teaching)."""
        return torch.as_tensor(self.train_indices).numpy()[self.order()[: int(k)]]

    def bottom(self, k: int = 100) -> np.ndarray:
        """Training-split indices of the k lowest-scored samples (most opposing)."""
        return torch.as_tensor(self.train_indices).numpy()[self.order()[::-1][: int(k)]]

    def _positions(
        self, samples: Sequence[int], values: torch.Tensor, order: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[float, float]]:
        """Positions of ``samples`` in the result (highest score first) and the band of
        quantiles they span."""
        pos_of = {int(i): p for p, i in enumerate(torch.as_tensor(self.train_indices).tolist())}
        wanted = [int(i) for i in torch.as_tensor(samples).reshape(-1).tolist()]
        unknown = [i for i in wanted if i not in pos_of]
        if unknown:
            raise ValueError(
                f"Samples {unknown[:5]} were not attributed (not among the result's "
                f"{len(pos_of)} training indices, r.train_indices): select attributed samples."
            )
        pos = torch.as_tensor([pos_of[i] for i in wanted], dtype=torch.long)
        pos = pos[torch.argsort(values[pos], descending=True)]
        n = len(values)
        q = (n - 1 - torch.argsort(order)[pos]).float() / max(1, n - 1)
        band = (float(q.min()), float(q.max())) if len(pos) else (0.0, 1.0)
        return pos, band


@dataclass
class ConceptAttributionResult(TrainingScores, Result):
    """Training samples ranked by how much they taught a concept at a layer.

    Attributes:
        scores: [n] score per attributed training sample (mean or sum over targets).
        train_indices: [n] their indices in the training split.
        classes: [n] class labels; concept_labels: [n] whether each carries the concept.
        concepts: [n, K] all concept labels of the data (``concept_names``).
        target_indices: indices (in ``target_split``) of the targets.
        out_to_loss: [n] the probe's Q term (1 - probe probability of the own label),
            whether or not the scores use it (``out_to_loss_mode``: "none" or "probe").
        notes: caveats about the ranking (e.g. a saturated probe), shown with the result.
        probe_layers, probe_accuracy, probe_balanced_accuracy: the probes per layer
            ([n_layers, n_models]).

    ``top(k)`` / ``bottom(k)`` give training indices, ``order()`` the ranking,
    ``candidates(...)`` hands samples over to curation.
    """

    concept: str
    layer: str
    scores: torch.Tensor
    train_indices: torch.Tensor
    classes: torch.Tensor
    concept_labels: torch.Tensor
    concepts: torch.Tensor
    concept_names: list
    class_names: list
    target_split: str
    target_indices: torch.Tensor
    out_to_loss: torch.Tensor
    probe_layers: list
    probe_accuracy: np.ndarray
    probe_balanced_accuracy: np.ndarray
    n_models: int = 1
    proj_dim: int | None = None
    lam: float = 0.0
    reduce: str = "mean"
    grad_dims: list = field(default_factory=list)
    out_to_loss_mode: str = "probe"
    notes: list = field(default_factory=list)

    def _summary(self) -> str:
        """The plain-text display, with the notes (caveats about the ranking) below it."""
        return "\n".join([super()._summary(), *(f"Note: {n}" for n in self.notes)])

    def precision_at(self, k: int = 100) -> float:
        """Fraction of the top-k samples that carry the concept."""
        labels = torch.as_tensor(self.concept_labels).numpy()
        return float(labels[self.order()[: int(k)]].mean())

    def probes(self) -> ProbeLayersResult:
        """The probe accuracies per layer as a :class:`ProbeLayersResult`."""
        return ProbeLayersResult(
            concept=self.concept,
            layers=list(self.probe_layers),
            accuracy=np.asarray(self.probe_accuracy),
            balanced_accuracy=np.asarray(self.probe_balanced_accuracy),
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per attributed training sample, best first: sample (training-split
        index), score, rank, class, the concept's label, then every concept label."""
        order = self.order()
        idx = torch.as_tensor(self.train_indices).numpy()[order]
        classes = torch.as_tensor(self.classes).numpy()[order]
        names = list(self.class_names)
        df = pd.DataFrame(
            {
                "sample": idx,
                "score": torch.as_tensor(self.scores).numpy()[order],
                "rank": np.arange(1, len(order) + 1),
                "class": [names[c] if 0 <= c < len(names) else str(c) for c in classes],
                self.concept
                if self.concept not in ("sample", "score", "rank", "class")
                else "concept": torch.as_tensor(self.concept_labels).numpy()[order],
                "out_to_loss": torch.as_tensor(self.out_to_loss).numpy()[order],
            }
        )
        concepts = torch.as_tensor(self.concepts).numpy()[order]
        for k, name in enumerate(self.concept_names):
            if name not in df.columns:
                df[name] = concepts[:, k]
        return df

    def plot(self):
        """Bokeh layout: score distribution (with / without the concept), precision at k,
        and the probe accuracy per layer."""
        from bokeh.layouts import row
        from bokeh.plotting import figure

        s = torch.as_tensor(self.scores).numpy()
        lab = torch.as_tensor(self.concept_labels).numpy().astype(bool)
        hist = histogram(
            {f"with {self.concept}": s[lab], f"without {self.concept}": s[~lab]},
            f"Attribution scores for '{self.concept}' at {self.layer}",
        )
        ks = np.unique(np.clip(np.round(np.geomspace(1, len(s), 40)).astype(int), 1, len(s)))
        hits = np.cumsum(lab[self.order()])
        prec = figure(
            height=280,
            width=380,
            x_axis_type="log",
            y_range=(0, 1.02),
            title="Precision at k (top-k carrying the concept)",
            toolbar_location="above",
        )
        prec.line(ks, hits[ks - 1] / ks, line_width=2)
        prec.line(
            [1, len(s)],
            [lab.mean()] * 2,
            line_dash="dashed",
            color="gray",
            legend_label="base rate",
        )
        prec.xaxis.axis_label = "k"
        prec.legend.location = "bottom_left"
        return row(hist, prec, self.probes().plot())

    def candidates(
        self,
        session: Session | None = None,
        samples: Sequence[int] | None = None,
        band: tuple[float, float] | None = None,
    ) -> Candidates:
        """Attributed training samples as curation candidates.

        Args:
            session: the session the result came from (default); needed for a result
                loaded from a file (predictions and groups come from it).
            samples: training-split indices a person selected (they must be among the
                attributed samples); shown highest score first.
            band: else a band ``(low, high)`` of quantiles of the attribution scores
                (default ``(0.9, 1.0)``: the top tenth); the top k is ``(1 - k/n, 1)``.

        Returns:
            :class:`~repwidgets.candidates.Candidates` over the training split whose
            ``reselect`` gives the candidates of a moved band.

        Example:
            >>> c = r.candidates(band=(0.95, 1.0))        # doctest: +SKIP
            >>> c.to_frame().head()                       # doctest: +SKIP
        """
        return training_candidates(
            self,
            session,
            samples,
            band,
            title=f"Training samples that taught '{self.concept}' at {self.layer}",
            context={
                "source": "concept attribution",
                "concept": str(self.concept),
                "layer": str(self.layer),
            },
        )


def training_candidates(
    result: TrainingScores,
    session: Session | None,
    samples: Sequence[int] | None,
    band: tuple[float, float] | None,
    *,
    title: str,
    context: dict,
) -> Candidates:
    """Attributed training samples of ``result`` (any result with ``scores``,
    ``train_indices``, ``classes``, ``class_names`` and ``candidates``) as curation
    candidates: the ``samples`` given, else a band of quantiles of the scores."""
    sess = session if session is not None else result._session
    if sess is None:
        raise ValueError(
            "This result has no session (it was loaded from a file), so its candidates "
            "have no predictions: call r.candidates(session=sess)."
        )
    if samples is not None and band is not None:
        raise ValueError("Pass samples or band, not both.")
    values = torch.as_tensor(result.scores).float().reshape(-1)
    order = torch.argsort(values, descending=True)
    if samples is not None:
        pos, band = result._positions(samples, values, order)
    else:
        band = _check_band(band)
        qs = torch.quantile(values.double(), torch.tensor(band, dtype=torch.float64))
        keep = (values.double() >= qs[0]) & (values.double() <= qs[1])
        pos = order[keep[order]]
    picked = torch.as_tensor(result.train_indices).long()[pos]
    groups = sess.groups("train")
    return Candidates(
        samples=picked,
        scores=values[pos],
        labels=torch.as_tensor(result.classes).long()[pos],
        predictions=_predictions(sess, picked),
        groups=groups[picked].long() if groups is not None else torch.full_like(picked, -1),
        population=values,
        band=band,
        limits=(float(values[pos].min()), float(values[pos].max())) if len(pos) else (0, 0),
        class_names=list(result.class_names),
        split="train",
        title=title,
        score_name="attribution",
        group_names=list(getattr(sess.data, "group_names", []) or []),
        n_split=sess.n("train"),
        context=context,
        dataset={"name": str(getattr(sess.data, "name", "")), "split": "train"},
        reselect=lambda new_band: result.candidates(sess, band=new_band),
    )


def _check_band(band: tuple[float, float] | None) -> tuple[float, float]:
    low, high = (float(b) for b in (band if band is not None else (0.9, 1.0)))
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"band must be quantiles 0 <= low <= high <= 1, got {band}.")
    return low, high


def _predictions(sess: Session, indices: torch.Tensor) -> torch.Tensor:
    """The model's predicted classes [n] of training samples ``indices``."""
    out = []
    with torch.no_grad():
        for start in range(0, len(indices), 256):
            batch = sess.images(indices[start : start + 256].tolist(), split="train")
            out.append(sess.forward(batch).argmax(dim=1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)
