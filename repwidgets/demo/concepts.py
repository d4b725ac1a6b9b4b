"""The concept-discovery section of the demo: concepts after the last convolution."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from repwidgets.demo._report import columns, thumbnails
from repwidgets.engines import concepts

if TYPE_CHECKING:  # pragma: no cover
    from repwidgets.report import Report
    from repwidgets.session import Session

__all__ = ["add_to_report", "run"]


def run(sess: Session) -> dict[str, Any]:
    """Concept discovery on the demo session's default layer (the activation after the
    last convolution), summarised for the report.

    Reports the concept that best separates the data's artifact (its AUC and concept
    maps over its top samples), how enriched the outliers are in artifact samples of
    other classes, and the most relevant concepts.

    Returns ``{"title", "summary_lines", "figures", "result"}``.
    """
    layer = sess.default_layer()
    r = concepts.discover(sess, layer, n_components=16, top_t=100, embedding="pca", progress=False)
    frame = r.to_frame()
    figures = [r.plot()]
    lines = [
        f"Layer {layer}, split {r.split}: {r.directions.shape[0]} directions "
        f"({'centered' if r.centered else 'uncentered'}), "
        f"{float(r.explained_variance.sum()):.1%} of the sum of squares; "
        f"{r.n_concepts} concepts after clustering.",
    ]
    j = _artifact_concept(r, sess)
    if j is not None:
        lines += _artifact_lines(sess, r, frame, j)
        if len(sess.layer_shapes()[layer]) == 3:  # spatial maps: where it responds
            figures.append(concepts.plot_concept_maps(sess, r, j))
    lines.append("Most relevant concepts (relevance z for their class):")
    for _, row in frame.sort_values("relevance", ascending=False, kind="stable").head(6).iterrows():
        lines.append(
            f"  concept {row['concept']}: from d{row['source_direction']} (cos "
            f"{row['cosine']:.2f}), {row['size']} samples, class {row['dominant_class']} "
            f"({row['purity']:.0%}), relevance z {row['relevance']:.2f}, {row['labels']}"
        )
    return {"title": "Concept discovery", "summary_lines": lines, "figures": figures, "result": r}


def _artifact(sess: Session | None) -> str | None:
    """The name of the data's planted artifact concept, if it has one."""
    config = getattr(getattr(sess, "data", None), "config", {}) or {}
    return config.get("artifact")


def _artifact_concept(r: concepts.ConceptResult, sess: Session | None) -> int | None:
    """The concept that separates the data's planted artifact best, if there is one."""
    artifact = _artifact(sess)
    names = list(getattr(r, "concept_names", []) or [])
    if r.concept_auc is None or artifact not in names or not r.n_concepts:
        return None
    return int(torch.as_tensor(r.concept_auc)[:, sess.concept_index(artifact)].argmax())


def _artifact_lines(
    sess: Session, r: concepts.ConceptResult, frame: pd.DataFrame, j: int
) -> list[str]:
    """How well concept ``j`` separates the artifact, and how the outliers carry it."""
    artifact = _artifact(sess)
    a = sess.concept_index(artifact)
    lines = [
        f"Concept {j} separates the artifact '{artifact}' with AUC "
        f"{float(r.concept_auc[j, a]):.3f} ({frame.loc[j, 'labels']}; "
        f"dominant class {frame.loc[j, 'dominant_class']})."
    ]
    out = r.outliers()
    spurious = (getattr(sess.data, "config", {}) or {}).get("spurious_class")
    if len(out) and r.labels is not None and isinstance(spurious, int):
        has = sess.concept(artifact, r.split)
        wrong = has & (sess.targets(r.split) != spurious)
        flagged_idx = torch.tensor(out["index"].to_numpy(), dtype=torch.long)
        flagged = float(wrong[flagged_idx].float().mean())
        lines.append(
            f"{len(out)} outlier samples; {flagged:.1%} carry the artifact in "
            f"another class (base rate {float(wrong.float().mean()):.1%})."
        )
    return lines


def add_to_report(report: Report, section: dict, sess: Session | None) -> None:
    """The concepts as a table (most relevant first), the top images of four of them
    (the artifact's concept first) and the outlier samples."""
    r = section["result"]
    frame = r.to_frame()
    report.add_heading("Concepts, most relevant first")
    cols = ["concept", "source_direction", "size", "dominant_class", "purity", "relevance"]
    ordered = frame.sort_values("relevance", ascending=False, kind="stable")
    report.add_table(columns(ordered, [*cols, "labels"]), max_rows=12)
    split = getattr(r, "split", None) or "test"
    shown = [int(c) for c in ordered["concept"].head(4)]
    artifact = _artifact_concept(r, sess) if sess is not None else None
    if artifact is not None:
        shown = [artifact, *[c for c in shown if c != artifact]][:4]
    for concept in shown:
        top = torch.as_tensor(r.top_samples(int(concept), k=8)).tolist()
        images = thumbnails(sess, top, split)
        if images:
            report.add_heading(f"Concept {int(concept)}: {r.describe(int(concept))}")
            report.add_images(images, [f"#{i}" for i in top])
    outliers = r.outliers()
    if len(outliers):
        report.add_heading("Outlier samples")
        report.add_table(outliers, max_rows=10)
        idx = [int(i) for i in outliers["index"].head(8)]
        reasons = outliers.get("reason", pd.Series([""] * len(outliers)))
        images = thumbnails(sess, idx, split)
        if images:
            report.add_images(images, [f"#{i} {why}" for i, why in zip(idx, reasons)])
