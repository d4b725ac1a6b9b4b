"""The attribution section of the demo: where the artifact concept lives and which
training samples taught it (one model, a training subset, to stay quick)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch

from repwidgets.demo._report import columns, thumbnails
from repwidgets.engines.attribution import concept_attribution

if TYPE_CHECKING:  # pragma: no cover
    from repwidgets.report import Report
    from repwidgets.session import Session

__all__ = ["add_to_report", "run"]


def _artifact_concept(sess: Session) -> str:
    """The data's planted artifact when it is a concept label, else the last concept."""
    artifact = (getattr(sess.data, "config", {}) or {}).get("artifact")
    names = list(sess.concept_names)
    if artifact in names:
        return artifact
    if not names:
        raise ValueError("The session's data has no concept labels to attribute.")
    return names[-1]


def run(
    sess: Session, concept: str | None = None, max_train: int = 1000, k: int = 100
) -> dict[str, Any]:
    """Probe the artifact concept per layer and attribute it to training samples.

    Returns:
        ``{"title", "summary_lines", "figures", "result"}``.
    """
    concept = concept or _artifact_concept(sess)
    start = time.perf_counter()
    r = concept_attribution(
        sess, concept, n_models=1, proj_dim=512, max_train=max_train, n_targets=64, progress=False
    )
    seconds = time.perf_counter() - start
    probes = r.probes().to_frame()
    base = float(torch.as_tensor(r.concept_labels).float().mean())
    lines = [
        f"Concept '{concept}': probe balanced accuracy per layer "
        + ", ".join(f"{a} {b:.3f}" for a, b in zip(probes["layer"], probes["balanced_accuracy"])),
        f"TRAK on the probe's logit at {r.layer} (1 model, proj_dim 512, "
        f"{len(r.scores)} training samples, {len(r.target_indices)} targets): "
        f"precision at {k} = {r.precision_at(k):.2f} (base rate {base:.2f}), {seconds:.0f} s.",
        f"Concept carriers among the top {k}: {_carriers_by_class(r, k) or 'none'}.",
    ]
    return {
        "title": "Training samples that taught a concept (TRAK)",
        "summary_lines": lines,
        "figures": [r.plot()],
        "result": r,
    }


def _carriers_by_class(r, k: int) -> str:
    """How many of the top k carry the concept, per class ("12 of class circle, ...")."""
    top = r.order()[:k]
    classes = torch.as_tensor(r.classes).numpy()[top]
    carriers = torch.as_tensor(r.concept_labels).numpy()[top].astype(bool)
    return ", ".join(
        f"{int((classes[carriers] == c).sum())} of class {name}"
        for c, name in enumerate(r.class_names)
        if (classes[carriers] == c).any()
    )


def add_to_report(report: Report, section: dict, sess: Session | None) -> None:
    """The probes per layer, the most and least attributed training samples (table and
    images)."""
    r = section["result"]
    probes = r.probes().to_frame()
    report.add_heading(f"Probes for '{r.concept}' per layer (test split)")
    report.add_table(columns(probes, ["layer", "accuracy", "balanced_accuracy", "n_models"]))
    frame = r.to_frame()
    concept_column = r.concept if r.concept in frame.columns else "concept"
    report.add_heading("Training samples that taught the concept most")
    cols = ["sample", "rank", "score", "class", concept_column]
    report.add_table(columns(frame, cols), max_rows=12, float_format="{:.4g}")
    for title, rows in (("Most", frame.head(12)), ("Least", frame.tail(8).iloc[::-1])):
        idx = [int(i) for i in rows["sample"]]
        images = thumbnails(sess, idx, "train")
        if not images:
            continue
        captions = [
            f"#{i} {c}" + (f", {r.concept}" if bool(has) else "")
            for i, c, has in zip(idx, rows["class"], rows[concept_column])
        ]
        report.add_heading(f"{title} attributed training samples")
        report.add_images(images, captions)
