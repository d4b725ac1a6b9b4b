"""The DORA section of the demo: outlier neurons of the last convolution, checked on data."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from repwidgets.demo._report import columns
from repwidgets.engines import dora, invert

if TYPE_CHECKING:  # pragma: no cover
    from repwidgets.report import Report
    from repwidgets.session import Session

__all__ = ["DEMO_SETTINGS", "add_to_report", "run"]

#: A small budget: one 32-pixel s-AMS per neuron, 64 steps, an MDS map.
DEMO_SETTINGS: dict[str, Any] = {"n_signals": 1, "steps": 64, "signal_size": 32, "embedding": "mds"}
#: Top outliers listed (and labelled by INVERT) in the summary.
TOP = 8


def run(sess: Session, layer: str | None = None, **overrides: Any) -> dict[str, Any]:
    """DORA on the demo session for the report: the four checks, top outliers, the map.

    Runs :func:`repwidgets.engines.dora.analyze` on ``layer`` (default: the session's
    last convolution) with :data:`DEMO_SETTINGS` (``overrides`` change them, e.g. fewer
    steps in tests) and :func:`~repwidgets.engines.dora.validate` against the data's
    artifact.

    Returns:
        ``{"title", "summary_lines", "figures", "result", "validation", "labels"}``;
        ``validation`` is a :class:`~repwidgets.engines.dora.DoraValidation` (None
        without an artifact concept), ``labels`` the top outliers' INVERT formulas.

    Example:
        >>> section = run(rw.demo_session())                     # doctest: +SKIP
        >>> print("\\n".join(section["summary_lines"]))          # doctest: +SKIP
    """
    layer = layer or sess.default_layer(activation=False)
    result = dora.analyze(sess, layer, {**DEMO_SETTINGS, **overrides}, progress=False)
    concept = sess.data.config.get("artifact") if hasattr(sess.data, "config") else None
    top = _top(result, TOP)
    labels = _invert_labels(sess, layer, [int(n) for n in top["neuron"]])
    lines = [
        f"Layer {layer}: {result.k} neurons, {len(result.dead())} dead (set aside), "
        f"{len(result.outliers())} flagged as outliers by {result.outlier_score_name}.",
        f"Top outliers (neuron, {result.outlier_score_label}, INVERT label on test images):",
        *(
            f"    {int(n):4d}  {v:5.2f}  {labels.get(int(n), '-')}"
            for n, v in zip(top["neuron"], top["outlier_score"])
        ),
    ]
    validation = None
    if concept and concept in sess.concept_names:
        validation = dora.validate(sess, result, concept=concept)
        lines += _check_lines(
            validation, concept, [int(n) for n in top["neuron"]], result.outlier_score_name
        )
    return {
        "title": "DORA: data-agnostic outlier neurons",
        "summary_lines": lines,
        "figures": [result.plot()],
        "result": result,
        "validation": validation,
        "labels": labels,
    }


def _top(result: dora.DoraResult, n: int):
    """The ``n`` most outlying live neurons' rows of ``result.to_frame()``, ranked by the
    score the result was analysed with (``outlier_score``)."""
    frame = result.to_frame().dropna(subset=["outlier_score"])
    return frame.sort_values("outlier_score", ascending=False, kind="stable").head(n).copy()


def _check_lines(
    v: dora.DoraValidation, concept: str, top: list[int], score: str = "LOF"
) -> list[str]:
    """The four checks of ``v`` as sentences; ``score`` names the outlier score."""
    ok = v.passes
    detectors = set(v.detectors)
    return [
        f"(1) EA distance vs functional distance on test images: Spearman "
        f"{v.spearman:.2f} over {v.n_live} live neurons (target >= 0.3: "
        f"{'pass' if ok['spearman'] else 'FAIL'}).",
        f"(2) {v.n_detectors} neurons detect the '{concept}' artifact "
        f"(AUC >= 0.95): within- vs between-distance AUC "
        f"{v.within_between_auc:.2f} (target >= 0.8: "
        f"{'pass' if ok['within_between'] else 'FAIL'}).",
        f"(3) Detectors as outliers: {score} AUC {v.outlier_auc:.2f}, "
        f"{v.detectors_in_top} of them among the top {v.n_detectors} "
        f"by {score}, {sum(n in detectors for n in top)} in the top {TOP} above "
        f"({'pass' if ok['outliers'] else 'FAIL'}); the same score on the functional "
        f"distances of test images: AUC {v.outlier_auc_on_data:.2f}.",
        f"(4) One detector alone among the other neurons (a rare artifact detector, what "
        f"DORA is for): {score} AUC {v.single_detector_auc:.2f}, on test images "
        f"{v.single_detector_auc_on_data:.2f} (target >= 0.8: "
        f"{'pass' if ok.get('single_detector') else 'FAIL'}).",
    ]


def _invert_labels(sess: Session, layer: str, neurons: list[int]) -> dict[int, str]:
    """INVERT formulas (with AUC) of a few neurons, to say what the outliers detect."""
    if not neurons or not sess.concept_names:
        return {}
    r = invert.explain(
        sess, layer, neurons=neurons, max_length=3, beam_size=5, min_fraction=0.01, progress=False
    )
    frame = r.to_frame()
    return {
        int(n): f"{text} (AUC {auc:.2f})"
        for n, text, auc in zip(frame["neuron"], frame["formula"], frame["auc"])
    }


def add_to_report(report: Report, section: dict, sess: Session | None) -> None:
    """The most outlying neurons (with their INVERT labels and whether they detect the
    artifact), the checks on test images and the outliers' s-AMS."""
    r = section["result"]
    frame = _top(r, 10)
    validation = section.get("validation")
    detectors = {int(n) for n in validation.detectors} if validation is not None else set()
    if detectors:
        frame["artifact detector"] = [int(n) in detectors for n in frame["neuron"]]
    labels = section.get("labels") or {}
    if labels:
        frame["INVERT label"] = [labels.get(int(n), "") for n in frame["neuron"]]
    name = r.outlier_score_name
    report.add_heading(f"The most outlying neurons ({name} of the EA distances)")
    frame[r.outlier_score_label] = frame["outlier_score"]
    cols = [
        "neuron",
        r.outlier_score_label,
        "is_outlier",
        "INVERT label",
        "artifact detector",
        "neighbours",
    ]
    report.add_table(columns(frame, cols))
    if validation is not None:
        report.add_heading("Checks on real test images")
        report.add_table(validation.to_frame())
    if getattr(r, "signals", None) is None:
        return
    neurons = [int(n) for n in torch.as_tensor(r.neurons).tolist()]
    strips = r.signal_thumbnails(64)
    shown = [int(n) for n in frame["neuron"].head(8) if int(n) in neurons]
    captions = [
        f"neuron {n}, {name} {v:.2f}" + (" (detector)" if n in detectors else "")
        for n, v in zip(shown, frame["outlier_score"])
    ]
    report.add_heading("Their synthetic signals (s-AMS)")
    report.add_images([strips[neurons.index(n)] for n in shown], captions, wide=True)
