"""The mid-range curation section of the demo: the middle of a class, curated, retrained."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from repwidgets.demo._report import thumbnails
from repwidgets.engines import midrange

if TYPE_CHECKING:  # pragma: no cover
    from repwidgets.engines.midrange import MidrangeResult
    from repwidgets.report import Report
    from repwidgets.session import Session

__all__ = ["add_to_report", "run"]

SHOWN = ["accuracy_mean", "accuracy_std", "worst_group_accuracy_mean", "worst_group_accuracy_std"]


def run(
    sess: Session,
    seeds: Iterable[int] = (0, 1, 2),
    band: Sequence[float] = (0.0, 0.5),
    curation_band: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The mid-range curation part of the demo report: band, associations, comparison table.

    Two bands of the class with a confounder (the data's spurious class, else the one
    with the strongest association): the within-class band ``band`` shows what the
    middle of the class reveals (its concept mix and its minority-group fraction
    against the base rate); the band ``curation_band`` (default
    :data:`~repwidgets.engines.midrange.DEMO_BAND`, over all samples, where both kinds
    of confounder sit) is curated automatically (``auto_curate(rule="concepts")``) and
    the last layer retrained: ERM vs random vs curated vs the group-label oracle over
    ``seeds``.

    Returns:
        ``{"title", "summary_lines", "figures", "result", "curation", "curated_band",
        "comparison"}`` (figures: the band histogram with the concept bars, the
        comparison bars; comparison: a ``ComparisonResult``).

    Example:
        >>> section = run(rw.demo_session())   # doctest: +SKIP
    """
    t0 = time.perf_counter()
    seeds = [int(s) for s in seeds]
    # Retraining reads the frozen features of the training split; extracting them first
    # fills its logits in the same pass (asking for the logits first costs a second one).
    sess.penultimate("train")
    k = midrange.suggest_class(sess, band=band)
    m = midrange.select(sess, k, band=band, split="train", within="class")
    lines = [f"What the middle of a class reveals: {m._summary()}"]
    lines += _association_lines(m)
    lines += _group_mix_lines(sess, m)
    opts = dict(midrange.DEMO_BAND if curation_band is None else curation_band)
    m_cur = midrange.select(sess, k, split="train", **opts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        cur = midrange.auto_curate(m_cur, rule="concepts")
    pattern = cur.context.get("typical_pattern", {})
    lines.append(
        f"Curated band: {m_cur._summary()}; automatic curation (rule='concepts', "
        f"typical pattern {pattern}): {cur.counts()}"
    )
    comparison = midrange.compare(sess, cur, seeds=seeds, progress=False)
    table = comparison.to_frame()
    wga = table["worst_group_accuracy_mean"]
    lines.append(
        f"worst-group test accuracy: ERM {wga['ERM']:.3f} -> curated last layer "
        f"{wga['curated']:.3f}"
        + (f" (oracle {wga['oracle']:.3f})" if "oracle" in wga.index else "")
    )
    lines.append(f"test split, {len(seeds)} seeds (mean, std):")
    lines.extend(table[SHOWN].to_string(float_format=lambda v: f"{v:.3f}").splitlines())
    lines.append(f"({time.perf_counter() - t0:.1f} s)")
    return {
        "title": "Mid-range curation",
        "summary_lines": lines,
        "figures": [m.plot(), comparison.plot()],
        "result": m,
        "curation": cur,
        "curated_band": m_cur,
        "comparison": comparison,
    }


def _association_lines(m: MidrangeResult) -> list[str]:
    try:
        assoc = m.associations()
    except ValueError as exc:
        return [f"  associations unavailable: {exc}"]
    return [
        f"  {r['concept']}: band {r['band_fraction']:.2f} vs top {r['top_fraction']:.2f} "
        f"(p={r['p_value']:.1e})"
        for _, r in assoc.head(3).iterrows()
    ]


def _group_mix_lines(sess: Session, m: MidrangeResult) -> list[str]:
    try:
        frac = m.group_fractions()
    except ValueError:
        return []
    base = _population_group_fraction(sess, m)
    mix = ", ".join(
        f"{g} {b:.2f} (base {base.get(g, float('nan')):.2f})"
        for g, b in zip(frac["group"], frac["band_fraction"])
        if b > 0 or base.get(g, 0) > 0
    )
    return ["  band group mix: " + mix]


def _population_group_fraction(sess: Session, m: MidrangeResult) -> dict[str, float]:
    groups = sess.groups(m.split)
    if groups is None:
        return {}
    y = sess.targets(m.split)
    pop = groups[y == m.class_index] if m.within == "class" else groups
    n_groups = max(len(m.group_names), int(groups.max()) + 1)
    frac = np.bincount(pop.numpy(), minlength=n_groups) / max(1, pop.numel())
    return {m._group_name(g): float(f) for g, f in enumerate(frac)}


# --------------------------------------------------------------------------- report
def add_to_report(report: Report, section: dict, sess: Session | None) -> None:
    """The band in words, its associations and groups, the curated samples' images and
    the comparison table."""
    m = section["result"]
    report.add_text(_band_sentence(m))
    try:
        report.add_heading("Concepts the band is enriched in, against the top of the class")
        report.add_table(m.associations(), max_rows=8)
        report.add_heading("Groups in the band")
        report.add_table(m.group_fractions())
    except ValueError as exc:
        report.add_text(f"Associations unavailable: {exc}")
    band, cur = section.get("curated_band"), section.get("curation")
    if band is not None:
        sentence = _band_sentence(band)
        report.add_text("Curated band, " + sentence[0].lower() + sentence[1:])
    if cur is not None:
        _curated_samples(report, cur, band or m, sess)
    table = section.get("comparison")
    if table is not None:
        frame = table if isinstance(table, pd.DataFrame) else table.to_frame()
        report.add_heading("Last-layer retraining on the test split (mean and spread over seeds)")
        report.add_table(frame, index=True)


def _band_sentence(m: MidrangeResult) -> str:
    name = m.class_names[m.class_index] if m.class_index < len(m.class_names) else m.class_index
    where = "within the class" if m.within == "class" else "over all samples"
    low, high = (float(b) for b in m.band)
    return (
        f"Class {name}: the samples between the {low:.0%} and {high:.0%} quantiles of its "
        f"{m.score} {where} ({m.split} split): {len(m.indices)} samples."
    )


def _curated_samples(report: Report, cur, band, sess, per_mark: int = 12) -> None:
    counts = cur.counts()
    report.add_heading("Curation marks")
    report.add_table(pd.DataFrame({"mark": list(counts), "samples": list(counts.values())}))
    split = getattr(cur, "split", None) or getattr(band, "split", "train")
    frame = band.to_frame()
    frame = frame.set_index("sample") if "sample" in frame.columns else None
    marks = sorted(cur.selected.items(), key=lambda item: item[0] != "spurious")
    for mark, indices in marks:
        shown = [int(i) for i in indices[:per_mark]]
        images = thumbnails(sess, shown, split)
        if not images:
            continue
        report.add_heading(f"Marked {mark} ({len(indices)} samples, the first {len(shown)})")
        report.add_images(images, [_sample_caption(i, frame) for i in shown])


def _sample_caption(index: int, frame: pd.DataFrame | None) -> str:
    if frame is None or index not in frame.index:
        return f"#{index}"
    row = frame.loc[index]
    group = row.get("group", row.get("label", ""))
    return f"#{index} {group}"
