"""Checking DORA's data-free distances against what the neurons do on real images."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from repwidgets.engines.dora.config import DoraConfig
from repwidgets.engines.dora.distance import compared_vectors, ea_distance, functional_distance
from repwidgets.engines.dora.outliers import outlier_scores
from repwidgets.engines.dora.result import DoraResult
from repwidgets.results import Result

if TYPE_CHECKING:  # pragma: no cover
    from repwidgets.session import Session

__all__ = ["DoraValidation", "validate"]

#: (figure, check name, target) of the four checks, in the order of :func:`validate`.
CHECKS = (
    ("spearman", "Spearman: EA vs functional distance", 0.3),
    ("within_between_auc", "detectors: within vs between distance AUC", 0.8),
    ("outlier_auc", "detectors as outliers: outlier-score AUC", 0.8),
    ("single_detector_auc", "one detector among the rest: outlier-score AUC", 0.8),
)
#: The key of each check in :attr:`DoraValidation.passes`.
_PASS_KEYS = {
    "spearman": "spearman",
    "within_between_auc": "within_between",
    "single_detector_auc": "single_detector",
}


@dataclasses.dataclass
class DoraValidation(Result):
    """How well a :class:`DoraResult` agrees with the neurons' activations on data.

    Figures are over the live neurons (not dead for DORA, not constant on the data).
    Reads like the dict it replaces: ``v["spearman"]``, ``v.get("detectors", [])``,
    ``v.to_dict()``.

    Attributes:
        layer, concept: the layer and the concept whose detectors are looked for.
        n_neurons, n_live, n_dead, n_data_dead: neurons of the result, live ones, dead
            for DORA, constant on the data.
        spearman: Spearman correlation, over all pairs of live neurons, of the EA
            distance and the functional distance ``sqrt((1 - r) / 2)`` on data.
        n_detectors, detectors, detector_concept_auc: the concept's detectors (neurons
            whose activation has a ROC AUC of at least ``params["detector_auc"]`` for
            the concept), their ids and AUCs.
        within_between_auc: AUC of "between" distances (detector to other neuron)
            exceeding "within" distances (detector to detector).
        outlier_auc: AUC of the result's outlier score (``params["outlier"]``: the LOF
            score by default) for detectors against the other live neurons.
        detectors_in_top: detectors among the top-m outlier scores (m = n_detectors).
        detectors_flagged, n_flagged: detectors flagged as outliers; all neurons flagged.
        map_within_between_auc: ``within_between_auc`` on the 2-D map.
        passes: ``{"spearman", "within_between", "outliers", "single_detector"}`` -> bool.
        lof_auc: ``outlier_auc`` of the LOF scores (the same figure for ``outlier="lof"``).
        outlier_auc_on_data: ``outlier_auc`` of the same score computed on the
            functional distances of the data instead of the EA distances. It says
            whether the detectors stand apart from the rest of the layer at all: a
            group of detectors that is a large, tight part of the layer is no outlier
            on data either, and no data-free score can be expected to rank it.
        single_detector_auc: DORA's own setting, a rare artifact detector. For each
            detector in turn, the layer without the other detectors (rows and columns
            of the activation matrix of the other detectors removed, the distances and
            the outlier score computed again): the share of the other live neurons that
            score below it (ties half), averaged over the detectors.
        single_detector_auc_on_data: the same on the functional distances of the data.
        params: ``split`` and ``detector_auc``.
    """

    layer: str
    concept: str
    n_neurons: int
    n_live: int
    n_dead: int
    n_data_dead: int
    spearman: float
    n_detectors: int
    detectors: list
    detector_concept_auc: list
    within_between_auc: float
    outlier_auc: float
    detectors_in_top: int
    detectors_flagged: int
    n_flagged: int
    map_within_between_auc: float
    passes: dict
    lof_auc: float = float("nan")
    outlier_auc_on_data: float = float("nan")
    single_detector_auc: float = float("nan")
    single_detector_auc_on_data: float = float("nan")

    # --- dict-style reading ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The figures as a plain dict (without ``params``)."""
        return {name: getattr(self, name) for name in self.keys()}

    def keys(self) -> list[str]:
        """Names of the figures."""
        return [f.name for f in self._saved_fields() if f.name != "params"]

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(f"{key!r}; the validation has {', '.join(self.keys())}.")
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def get(self, key: str, default: Any = None) -> Any:
        """A figure by name, ``default`` for names it does not have."""
        return getattr(self, key) if key in self.keys() else default

    # --- tables and figures ---------------------------------------------------------------
    def to_frame(self):
        """One row per check: its name, value, target and whether it passes."""
        import pandas as pd

        rows = []
        for key, name, target in CHECKS:
            value = getattr(self, key)
            passed = self.passes.get(_PASS_KEYS.get(key, "outliers"), "")
            rows.append((name, float("nan") if value is None else float(value), target, passed))
        return pd.DataFrame(rows, columns=["check", "value", "target", "passes"])

    def plot(self):
        """Bars of the four checks with their targets as dashes (bokeh)."""
        from repwidgets import plots

        frame = self.to_frame()
        values = np.nan_to_num(frame["value"].to_numpy(dtype=float), nan=0.0)
        fig = plots.bars(
            frame["check"].tolist(),
            values,
            title=f"DORA on data: {self.layer}, detectors of {self.concept!r}",
            y_label="value (missing: 0)",
            y_range=(min(0.0, float(values.min())), 1.0),
        )
        fig.scatter(
            frame["check"].tolist(),
            frame["target"].tolist(),
            marker="dash",
            size=40,
            line_width=3,
            color="#e45756",
            legend_label="target",
        )
        return fig


def validate(
    sess: Session,
    result: DoraResult,
    concept: str | int = "watermark",
    split: str = "test",
    detector_auc: float = 0.95,
) -> DoraValidation:
    """Check DORA's data-free distances against what the neurons do on real images.

    Three figures, on the live neurons (not dead for DORA, not constant on the data):

    1. ``spearman``: Spearman correlation, over all pairs, between the EA distance and
       the functional distance ``sqrt((1 - r) / 2)`` of the neurons' spatially averaged
       activations over the split (r: Pearson). Target >= 0.3.
    2. ``within_between_auc``: the concept's detectors (neurons whose activation has
       ROC AUC >= ``detector_auc`` for the concept) should be close to each other: AUC of
       "between" distances (detector to other neuron) exceeding "within" distances
       (detector to detector). Target >= 0.8.
    3. Outlier figures: ``outlier_auc`` (AUC of the result's outlier score, LOF by
       default, for detectors vs the other live neurons; ``lof_auc`` the same for the
       LOF scores), ``detectors_in_top`` (how many detectors are among the top-m outlier
       scores, m = number of detectors), ``detectors_flagged`` (detectors flagged) and
       ``map_within_between_auc`` (figure 2 on the 2-D map: do they form their own
       cluster).
    4. ``single_detector_auc``: each detector alone among the non-detectors (the layer
       without the other detectors), ranked by the same outlier score: the setting
       DORA is made for, an artifact detected by few neurons. Target >= 0.8.

    Each outlier figure is also computed on the data's functional distances
    (``..._on_data``): what the same score makes of the neurons' behaviour on real
    images, a reference for the data-free one.

    Returns:
        A :class:`DoraValidation` with these figures, counts, the detector ids and
        ``passes`` (bools); it reads like a dict (``v["spearman"]``).
    """
    from scipy.stats import spearmanr

    if result.layer is None:
        raise ValueError("The result has no layer name; validate needs it to read activations.")
    ids = result.neurons.cpu().numpy()
    axis = result.params.get("neuron_axis")  # the layout the s-AMS were made with
    X = sess.activations(result.layer, split=split, pool="mean", neuron_axis=axis)
    X = X[:, torch.as_tensor(ids)]
    X = X.detach().double().cpu().numpy()
    data_live = X.std(axis=0) > 1e-8 * max(1.0, float(np.abs(X).max()))
    live = data_live & ~result.is_dead.cpu().numpy()
    li = np.nonzero(live)[0]
    D_ea = result.distances.detach().double().cpu().numpy()[np.ix_(li, li)]
    D_fun = functional_distance(X[:, li])
    iu = np.triu_indices(li.size, 1)
    rho = float(spearmanr(D_ea[iu], D_fun[iu]).statistic) if li.size >= 3 else float("nan")

    mask = _concept_column(sess, concept, split)
    aucs = np.array([_auc(X[:, j], mask) for j in range(X.shape[1])])
    det = live & (aucs >= detector_auc)
    det_l = det[li]
    wb = _within_between(D_ea, det_l)
    score = result.ranking_scores()[li]
    out_auc = _auc(score, det_l) if det_l.any() else float("nan")
    lof = result.lof_scores.cpu().double().numpy()[li]
    lof_auc = _auc(lof, det_l) if det_l.any() else float("nan")
    m = int(det_l.sum())
    in_top = int(det_l[np.argsort(-score, kind="stable")[:m]].sum())
    cfg = DoraConfig.from_dict(result.params)
    A_live = result.activations.detach().double().cpu()[li][:, li]
    single = _single_detector_auc(lambda keep: _ea_of(A_live[keep][:, keep], cfg), det_l, cfg)
    single_data = _single_detector_auc(lambda keep: D_fun[np.ix_(keep, keep)], det_l, cfg)
    data_auc = _auc(_scores(D_fun, cfg), det_l) if det_l.any() and li.size >= 3 else float("nan")
    emb = result.embedding.cpu().double().numpy()[li]
    map_wb = float("nan")
    if 2 <= m < li.size and np.isfinite(emb).all():  # pairs inside and across the group
        E = np.sqrt(((emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1))
        map_wb = _within_between(E, det_l)
    return DoraValidation(
        layer=result.layer,
        concept=concept if isinstance(concept, str) else sess.concept_names[int(concept)],
        n_neurons=int(ids.size),
        n_live=int(li.size),
        n_dead=int(result.is_dead.sum()),
        n_data_dead=int((~data_live).sum()),
        spearman=rho,
        n_detectors=m,
        detectors=[int(i) for i in ids[det]],
        detector_concept_auc=[float(a) for a in aucs[det]],
        within_between_auc=wb,
        outlier_auc=out_auc,
        detectors_in_top=in_top,
        detectors_flagged=int((result.is_outlier.cpu().numpy()[li] & det_l).sum()),
        n_flagged=int(result.is_outlier.sum()),
        map_within_between_auc=map_wb,
        passes={
            "spearman": bool(rho >= 0.3),
            "within_between": bool(wb >= 0.8),
            "outliers": bool(
                (m > 0 and in_top >= max(1, m // 2)) or map_wb >= 0.8 or out_auc >= 0.8
            ),
            "single_detector": bool(single >= 0.8),
        },
        lof_auc=lof_auc,
        outlier_auc_on_data=data_auc,
        single_detector_auc=single,
        single_detector_auc_on_data=single_data,
        params={"split": split, "detector_auc": float(detector_auc)},
    )


def _scores(D: np.ndarray, cfg: DoraConfig) -> np.ndarray:
    """The outlier scores [m] of a distance matrix with the result's settings."""
    return outlier_scores(D, cfg.outlier, cfg.n_neighbors, cfg.contamination)[0]


def _ea_of(A: torch.Tensor, cfg: DoraConfig) -> np.ndarray:
    """EA distances [m, m] of an activation matrix [m, m] with the result's settings."""
    V = compared_vectors(A.float(), cfg.representation, cfg.center, cfg.equalise_signals)
    return ea_distance(V).double().numpy()


def _single_detector_auc(distances_of, det: np.ndarray, cfg: DoraConfig) -> float:
    """Each detector alone among the non-detectors, ranked by the outlier score.

    ``distances_of(keep)`` gives the distances [m, m] among the neurons ``keep`` (indices
    into ``det`` [n]); the detector is last in ``keep``. Returns the mean over detectors
    of the share of non-detectors scoring below it (ties half); NaN without detectors
    or with fewer than two non-detectors.
    """
    others = np.nonzero(~det)[0]
    if not det.any() or others.size < 2:
        return float("nan")
    shares = []
    for d in np.nonzero(det)[0]:
        scores = _scores(distances_of(np.r_[others, d]), cfg)
        below = (scores[:-1] < scores[-1]).mean() + 0.5 * (scores[:-1] == scores[-1]).mean()
        shares.append(below)
    return float(np.mean(shares))


def _within_between(D: np.ndarray, group: np.ndarray) -> float:
    """AUC of distances from the group to the rest exceeding distances inside the group
    (NaN without both kinds of pairs)."""
    within = D[np.ix_(group, group)][np.triu_indices(int(group.sum()), 1)]
    between = D[np.ix_(group, ~group)].ravel()
    if not (within.size and between.size):
        return float("nan")
    return _auc(
        np.concatenate([within, between]), np.r_[np.zeros(within.size), np.ones(between.size)]
    )


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC with ties counted half (Mann-Whitney); NaN without both classes."""
    from scipy.stats import rankdata

    labels = labels.astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _concept_column(sess: Session, concept: str | int, split: str) -> np.ndarray:
    """The labels [n] of one concept over a split, by name or column."""
    j = sess.concept_index(concept) if isinstance(concept, str) else int(concept)
    return sess.concepts(split)[:, j].cpu().numpy().astype(bool)
