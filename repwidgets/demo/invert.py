"""The INVERT section of the demo: neuron labels of the layer the classifier reads."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from repwidgets.demo._report import columns, thumbnails
from repwidgets.engines import invert
from repwidgets.engines.invert.formulas import mentions
from repwidgets.engines.ranks import auc_matrix

if TYPE_CHECKING:  # pragma: no cover
    from repwidgets.report import Report
    from repwidgets.session import Session

__all__ = ["add_to_report", "run"]

MAX_LENGTH = 3


def _layer(sess: Session) -> str:
    """``pool`` (the features the classifier reads) when the model has one, else the
    session's default layer."""
    return "pool" if "pool" in sess.layers() else sess.default_layer()


def run(sess: Session) -> dict[str, Any]:
    """Run INVERT on the demo session's ``pool`` layer (the features the classifier
    reads; the session's default layer when the model has none) and summarise it.

    The summary names the neurons that detect the planted artifact on their own
    (AUC >= 0.95 for the artifact concept) with their formulas.

    Returns:
        ``{"title": str, "summary_lines": [str], "figures": [bokeh layout], "result"}``.

    Example:
        >>> section = run(rw.demo_session())                     # doctest: +SKIP
        >>> print("\\n".join(section["summary_lines"]))          # doctest: +SKIP
    """
    layer = _layer(sess)
    r = invert.explain(
        sess, layer, max_length=MAX_LENGTH, beam_size=5, min_fraction=0.01, progress=False
    )
    frame = r.to_frame().sort_values("auc", ascending=False)
    n_sig = int((frame.log10_p < math.log10(0.05 / max(len(frame), 1))).sum())
    lines = [
        f"INVERT on {layer}: {len(frame)} neurons labelled with formulas of up to "
        f"{MAX_LENGTH} concepts in {r.timings.get('total_s', 0.0):.2f} s.",
        f"Median AUC {frame.auc.median():.3f}; {int((frame.auc >= 0.9).sum())} neurons with "
        f"AUC >= 0.9; {n_sig} labels significant at 0.05 (Bonferroni over neurons).",
    ]
    lines += _artifact_lines(sess, r)
    lines.append("Best labels:")
    for row in frame.head(5).itertuples():
        lines.append(
            f"  neuron {row.neuron}: {row.formula}  (AUC {row.auc:.3f}, log10 p {row.log10_p:.1f})"
        )
    return {
        "title": f"INVERT: neuron labels ({layer})",
        "summary_lines": lines,
        "figures": [r.plot()],
        "result": r,
    }


def _artifact_lines(sess: Session, r: invert.InvertResult) -> list[str]:
    """Which neurons detect the data's planted artifact, and whether their formulas say so."""
    data_cfg = getattr(getattr(sess, "data", None), "config", {}) or {}
    artifact = data_cfg.get("artifact")
    if artifact not in list(sess.concept_names):
        return []
    k = sess.concept_index(artifact)
    split = r.split or "test"
    acts = sess.activations(r.layer, split=split, pool=r.pool or "mean")
    single = auc_matrix(acts.detach().cpu(), sess.concepts(split))[:, k]
    detectors = torch.nonzero(single >= 0.95).flatten().tolist()
    labelled = [j for j in detectors if mentions(r.formulas[j], artifact)]
    mention = sum(mentions(f, artifact) for f in r.formulas)
    lines = [
        f"Artifact {artifact!r}: {len(detectors)} neurons detect it on their own "
        f"(AUC >= 0.95); {len(labelled)} of them are labelled with a formula containing it. "
        f"{mention} formulas mention it in all."
    ]
    for j in detectors[:12]:
        lines.append(
            f"  artifact detector {int(r.neurons[j])}: {r.formulas[j]['text']} "
            f"(AUC {float(r.auc[j]):.3f}, log10 p {float(r.log10_p[j]):.1f})"
        )
    if len(detectors) > 12:
        lines.append(f"  ... and {len(detectors) - 12} more")
    return lines


def add_to_report(report: Report, section: dict, sess: Session | None) -> None:
    """The best-labelled neurons as a table, and the top images of the first six."""
    r = section["result"]
    frame = r.to_frame().sort_values("auc", ascending=False)
    report.add_heading("The best-labelled neurons")
    cols = ["neuron", "formula", "auc", "fraction", "log10_p", "length"]
    report.add_table(columns(frame, cols), max_rows=15)
    if sess is None or not getattr(r, "layer", None):
        return
    split = getattr(r, "split", None) or "test"
    acts = sess.activations(r.layer, split=split, pool=getattr(r, "pool", None) or "mean")
    acts = torch.as_tensor(acts).detach().float().cpu()
    for row in frame.head(6).itertuples():
        column = int(row.neuron)
        if column >= acts.shape[1]:
            continue
        top = torch.topk(acts[:, column], k=min(8, acts.shape[0])).indices.tolist()
        report.add_heading(f"Neuron {column}: {row.formula} (AUC {row.auc:.3f})")
        report.add_images(
            thumbnails(sess, top, split), [f"#{i}: {float(acts[i, column]):.2f}" for i in top]
        )
