"""The standalone HTML report: bokeh figures (resources inline), tables and images.

The page opens offline: bokeh's JavaScript is embedded, images are data URIs, and
every piece of text that comes from data is HTML-escaped. :func:`add_demo_section`
turns a method's demo section (its summary, result and figures) into prose, tables and
images.
"""

from __future__ import annotations

import datetime as _dt
import html
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from repwidgets.atomic import atomic_write_bytes
from repwidgets.plots import png_data_uri

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { margin-top: 2em; border-bottom: 1px solid #eee; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; margin: 1em 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; }
.images { display: flex; flex-wrap: wrap; gap: 8px; }
.images figure { margin: 0; width: 96px; font-size: 11px; text-align: center; }
.images img { width: 96px; height: 96px; image-rendering: pixelated; border: 1px solid #ccc; }
.images figure.wide { width: auto; }
.images figure.wide img { width: auto; height: 96px; }
.meta { color: #777; font-size: 12px; }
h3 { font-size: 15px; margin: 1.4em 0 .4em; }
"""


class Report:
    """Collects sections of text, figures, tables and images, then writes one HTML file.

    Example:
        >>> rep = Report("My model")
        >>> rep.add_section("Accuracy")
        >>> rep.add_text("Overall 0.97")
        >>> path = rep.save("report/index.html")  # doctest: +SKIP
    """

    def __init__(self, title: str = "repwidgets report") -> None:
        self.title = title
        self._parts: list[tuple[str, object]] = []

    def add_section(self, title: str) -> Report:
        self._parts.append(("section", title))
        return self

    def add_text(self, text: str, preformatted: bool = False) -> Report:
        self._parts.append(("pre" if preformatted else "text", text))
        return self

    def add_heading(self, text: str) -> Report:
        """A small heading inside a section (above a table or a row of images)."""
        self._parts.append(("heading", text))
        return self

    def add_figure(self, figure) -> Report:
        """Add a bokeh model (figure or layout)."""
        self._parts.append(("figure", figure))
        return self

    def add_table(
        self, frame, max_rows: int = 50, float_format: str = "{:.3f}", index: bool = False
    ) -> Report:
        """Add a pandas DataFrame (its first ``max_rows`` rows), cells escaped.

        Cells that hold lists, tuples or dicts are shown as comma-separated text.
        """
        shown = _plain_cells(frame.head(max_rows))
        table = shown.to_html(
            escape=True, index=index, float_format=lambda v: float_format.format(v), border=0
        )
        if len(frame) > max_rows:
            table += f'<p class="meta">{max_rows} of {len(frame)} rows shown.</p>'
        self._parts.append(("html", table))
        return self

    def add_images(
        self, images: Sequence[bytes], captions: Sequence[str] | None = None, wide: bool = False
    ) -> Report:
        """Add a row of encoded images (PNG bytes) with text captions.

        ``wide``: keep each image's aspect ratio (e.g. strips of several signals).
        """
        captions = list(captions) if captions is not None else [""] * len(images)
        if len(captions) != len(images):
            raise ValueError(f"{len(images)} images but {len(captions)} captions.")
        css = ' class="wide"' if wide else ""
        cells = "".join(
            f'<figure{css}><img src="{png_data_uri(img)}" alt="{html.escape(str(cap))}">'
            f"<figcaption>{html.escape(str(cap))}</figcaption></figure>"
            for img, cap in zip(images, captions)
        )
        self._parts.append(("html", f'<div class="images">{cells}</div>'))
        return self

    def add_result(self, result, title: str | None = None, max_rows: int = 30) -> Report:
        """Add a result's plot and the head of its table."""
        self.add_section(title or type(result).__name__)
        self.add_figure(result.plot())
        self.add_table(result.to_frame(), max_rows=max_rows)
        return self

    def render(self) -> str:
        """The whole page as a string."""
        from bokeh.embed import components
        from bokeh.resources import INLINE

        figures = [obj for kind, obj in self._parts if kind == "figure"]
        script, divs = components(figures) if figures else ("", [])
        divs = list(divs)
        body = []
        for kind, obj in self._parts:
            if kind == "section":
                body.append(f"<h2>{html.escape(str(obj))}</h2>")
            elif kind == "text":
                body.append(f"<p>{html.escape(str(obj))}</p>")
            elif kind == "pre":
                body.append(f"<pre>{html.escape(str(obj))}</pre>")
            elif kind == "heading":
                body.append(f"<h3>{html.escape(str(obj))}</h3>")
            elif kind == "figure":
                body.append(divs.pop(0))
            else:
                body.append(str(obj))
        stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
        return (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>{_STYLE}</style>"
            f"{INLINE.render()}{script}</head><body>"
            f"<h1>{html.escape(self.title)}</h1><p class='meta'>Written {stamp} by repwidgets.</p>"
            + "\n".join(body)
            + "</body></html>"
        )

    def save(self, path: str | Path) -> Path:
        """Write the page atomically; returns its path."""
        return atomic_write_bytes(path, self.render().encode("utf-8"))


def _plain_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose list, tuple, set and dict cells are comma-separated text."""

    def plain(value):
        if isinstance(value, dict):
            return ", ".join(f"{k}: {v}" for k, v in value.items())
        if isinstance(value, (list, tuple, set, np.ndarray)):
            return ", ".join(str(v) for v in value)
        return value

    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].map(plain)
    return frame


# ------------------------------------------------------------------------ demo sections
#: A Python repr of an object, such as ``MidrangeResult(class='circle', ...)``.
_REPR = re.compile(r"\b[A-Z]\w*\((\w+=|\.\.\.)")
#: Two or more gaps of two spaces: a row of a table printed as text.
_TEXT_TABLE_ROW = re.compile(r"\S {2,}\S.* {2,}\S")


def prose_lines(lines: Sequence[str]) -> list[str]:
    """The sentences of a console summary, without what the report shows as tables:
    indented lines, lines that introduce a list (ending with ':'), rows and headers of
    text tables (lines of fewer than three words, or with wide gaps) and lines that
    hold a Python repr."""
    kept = []
    for line in lines:
        text = str(line)
        if len(text.split()) < 3 or text[:1].isspace() or text.rstrip().endswith(":"):
            continue
        if _REPR.search(text) or _TEXT_TABLE_ROW.search(text):
            continue
        kept.append(text.strip())
    return kept


def add_demo_section(report: Report, method: str, section: dict, sess=None) -> Report:
    """Add one method's demo section: its summary sentences, then tables and images made
    from its result (where the section carries one and a session can draw the images),
    then its figures."""
    report.add_section(section["title"])
    for line in prose_lines(section.get("summary_lines", [])):
        report.add_text(line)
    content = _SECTION_CONTENT.get(method)
    if content is not None and section.get("result") is not None:
        content(report, section, sess)
    for frame in section.get("tables", []):
        report.add_table(frame)
    for images, captions in section.get("images", []):
        report.add_images(images, captions)
    for fig in section.get("figures", []):
        report.add_figure(fig)
    return report


def _thumbnails(sess, indices: Sequence[int], split: str, size: int = 96) -> list[bytes]:
    if sess is None or not len(indices):
        return []
    return list(sess.thumbnails([int(i) for i in indices], split, size=size))


def _columns(frame: pd.DataFrame, wanted: Sequence[str]) -> pd.DataFrame:
    return frame[[c for c in wanted if c in frame.columns]]


def _invert_content(report: Report, section: dict, sess) -> None:
    r = section["result"]
    frame = r.to_frame().sort_values("auc", ascending=False)
    report.add_heading("The best-labelled neurons")
    cols = ["neuron", "formula", "auc", "fraction", "log10_p", "length"]
    report.add_table(_columns(frame, cols), max_rows=15)
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
            _thumbnails(sess, top, split), [f"#{i}: {float(acts[i, column]):.2f}" for i in top]
        )


def _dora_content(report: Report, section: dict, sess) -> None:
    r = section["result"]
    frame = r.to_frame().dropna(subset=["lof_score"])
    frame = frame.sort_values("lof_score", ascending=False).head(10).copy()
    validation = section.get("validation") or {}
    detectors = {int(n) for n in validation.get("detectors", [])}
    if detectors:
        frame["artifact detector"] = [int(n) in detectors for n in frame["neuron"]]
    labels = section.get("labels") or {}
    if labels:
        frame["INVERT label"] = [labels.get(int(n), "") for n in frame["neuron"]]
    report.add_heading("The most outlying neurons (local outlier factor of the EA distances)")
    cols = ["neuron", "lof_score", "is_outlier", "INVERT label", "artifact detector", "neighbours"]
    report.add_table(_columns(frame, cols))
    if validation:
        report.add_heading("Checks on real test images")
        report.add_table(_dora_checks(validation))
    if getattr(r, "signals", None) is None:
        return
    neurons = [int(n) for n in torch.as_tensor(r.neurons).tolist()]
    strips = r.signal_thumbnails(64)
    shown = [int(n) for n in frame["neuron"].head(8) if int(n) in neurons]
    captions = [
        f"neuron {n}, LOF {lof:.2f}" + (" (detector)" if n in detectors else "")
        for n, lof in zip(shown, frame["lof_score"])
    ]
    report.add_heading("Their synthetic signals (s-AMS)")
    report.add_images([strips[neurons.index(n)] for n in shown], captions, wide=True)


def _dora_checks(validation: dict) -> pd.DataFrame:
    passes = validation.get("passes", {})
    rows = [
        ("Spearman: EA vs functional distance", validation.get("spearman"), "spearman"),
        ("detectors: within vs between distance AUC", validation.get("within_between_auc"),
         "within_between"),
        ("detectors as outliers: LOF AUC", validation.get("outlier_auc"), "outliers"),
    ]  # fmt: skip
    return pd.DataFrame(
        {
            "check": [name for name, _, _ in rows],
            "value": [float("nan") if v is None else float(v) for _, v, _ in rows],
            "passes": [passes.get(key, "") for _, _, key in rows],
        }
    )


def _concepts_content(report: Report, section: dict, sess) -> None:
    r = section["result"]
    frame = r.to_frame()
    report.add_heading("Concepts, most relevant first")
    cols = ["concept", "source_direction", "size", "dominant_class", "purity", "relevance"]
    ordered = frame.sort_values("relevance", ascending=False, kind="stable")
    report.add_table(_columns(ordered, [*cols, "labels"]), max_rows=12)
    split = getattr(r, "split", None) or "test"
    shown = [int(c) for c in ordered["concept"].head(4)]
    artifact = _artifact_concept(r, sess)
    if artifact is not None:
        shown = [artifact, *[c for c in shown if c != artifact]][:4]
    for concept in shown:
        top = torch.as_tensor(r.top_samples(int(concept), k=8)).tolist()
        images = _thumbnails(sess, top, split)
        if images:
            report.add_heading(f"Concept {int(concept)}: {r.describe(int(concept))}")
            report.add_images(images, [f"#{i}" for i in top])
    outliers = r.outliers()
    if len(outliers):
        report.add_heading("Outlier samples")
        report.add_table(outliers, max_rows=10)
        idx = [int(i) for i in outliers["index"].head(8)]
        reasons = outliers.get("reason", pd.Series([""] * len(outliers)))
        images = _thumbnails(sess, idx, split)
        if images:
            report.add_images(images, [f"#{i} {why}" for i, why in zip(idx, reasons)])


def _artifact_concept(r, sess) -> int | None:
    """The concept that separates the data's planted artifact best, if there is one."""
    config = getattr(getattr(sess, "data", None), "config", {}) or {}
    artifact = config.get("artifact")
    names = list(getattr(r, "concept_names", []) or [])
    if getattr(r, "concept_auc", None) is None or artifact not in names or not r.n_concepts:
        return None
    return int(torch.as_tensor(r.concept_auc)[:, names.index(artifact)].argmax())


def _midrange_content(report: Report, section: dict, sess) -> None:
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
        report.add_heading("Last-layer retraining on the test split (mean and spread over seeds)")
        report.add_table(table, index=True)


def _band_sentence(m) -> str:
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
        images = _thumbnails(sess, shown, split)
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


def _attribution_content(report: Report, section: dict, sess) -> None:
    r = section["result"]
    probes = r.probes().to_frame()
    report.add_heading(f"Probes for '{r.concept}' per layer (test split)")
    report.add_table(_columns(probes, ["layer", "accuracy", "balanced_accuracy", "n_models"]))
    frame = r.to_frame()
    concept_column = r.concept if r.concept in frame.columns else "concept"
    report.add_heading("Training samples that taught the concept most")
    cols = ["sample", "rank", "score", "class", concept_column]
    report.add_table(_columns(frame, cols), max_rows=12, float_format="{:.4g}")
    for title, rows in (("Most", frame.head(12)), ("Least", frame.tail(8).iloc[::-1])):
        idx = [int(i) for i in rows["sample"]]
        images = _thumbnails(sess, idx, "train")
        if not images:
            continue
        captions = [
            f"#{i} {c}" + (f", {r.concept}" if bool(has) else "")
            for i, c, has in zip(idx, rows["class"], rows[concept_column])
        ]
        report.add_heading(f"{title} attributed training samples")
        report.add_images(images, captions)


_SECTION_CONTENT = {
    "invert": _invert_content,
    "dora": _dora_content,
    "concepts": _concepts_content,
    "midrange": _midrange_content,
    "attribution": _attribution_content,
}
