"""The explorer's actions: flag samples, export the selection, retrain the last layer.

Flags go to a :class:`~repwidgets.curation_store.Curation` of the train split (written
atomically on every change, the file retraining reads). "Retrain last layer" fits the
curated head, the random baseline and, where the data has groups, the group oracle
(:func:`repwidgets.engines.midrange.retrain`), scores them with the model itself (ERM)
on the test split (:func:`repwidgets.engines.midrange.evaluate`), and shows the
:class:`~repwidgets.engines.midrange.ComparisonResult` table and a bar chart (a PNG
drawn here, so it shows offline in any front end).

Example:
    >>> table = retrain_table(sess, curation, report=lambda d, t, s: None,
    ...                       cancel=threading.Event())      # doctest: +SKIP
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from typing import Any

import ipywidgets
import pandas as pd

from repwidgets.curation_store import MARKS
from repwidgets.views.explorer.galleries import show_table

__all__ = ["ActionBar", "comparison_png", "retrain_comparison", "selection_frame"]

_COLORS = {"accuracy": (76, 120, 168), "worst_group_accuracy": (228, 87, 86)}
#: mid-grey text and grid lines, readable on a light and a dark background
_TEXT, _GRID = (128, 128, 128, 255), (128, 128, 128, 90)


def retrain_comparison(
    sess: Any,
    curation: Any,
    *,
    report: Callable[[int, int, str], None],
    cancel: threading.Event,
    test_split: str = "test",
    **overrides: Any,
) -> Any:
    """ERM vs curated vs random vs oracle on ``test_split``: a ComparisonResult (one seed).

    ``overrides`` are :class:`~repwidgets.engines.midrange.RetrainConfig` settings
    (``Cs``, ``C``, ``seed``, ...). Checks ``cancel`` between the fits.
    """
    from repwidgets.engines.midrange import ComparisonResult, RetrainConfig, evaluate, retrain

    cfg = RetrainConfig.resolve(None, overrides)
    marks = curation.marks if hasattr(curation, "marks") else curation
    chosen = [i for i, m in marks.items() if m in ("keep", "spurious")]
    strategies = ["curated", "random"]
    if sess.groups(cfg.split) is not None:
        strategies.append("oracle")
    heads: dict[str, Any] = {}
    total = len(strategies) + 1
    for step, strategy in enumerate(strategies):
        if cancel.is_set():
            raise _cancelled()
        report(step, total, f"fitting {strategy}")
        source = marks if strategy == "curated" else chosen if strategy == "random" else None
        heads[strategy] = retrain(sess, source, strategy, cfg, progress=False)
    if cancel.is_set():
        raise _cancelled()
    report(len(strategies), total, "scoring")
    scored = evaluate(sess, heads, split=test_split)
    records = []
    for name, row in scored.iterrows():
        method = "ERM" if name == "before" else str(name)
        rec = {"method": method, "seed": int(cfg.seed)}
        if method in heads:
            rec["C"] = heads[method].C
        rec["accuracy"] = float(row["accuracy"])
        rec["worst_group_accuracy"] = float(row["worst_group_accuracy"])
        records.append(rec)
    return ComparisonResult(
        per_seed=records,
        seeds=[int(cfg.seed)],
        test_split=test_split,
        params={**cfg.to_dict(), "seeds": [int(cfg.seed)], "test_split": test_split},
    )


def selection_frame(
    data: Any,
    samples: list[int],
    unit: int | None,
    curation: Any,
    score: Callable[[int], float | None],
) -> pd.DataFrame:
    """One row per selected sample: sample, class, prediction, mark, neuron, activation
    (of ``unit``), attribution_score (``score(sample)``) and concepts (comma-joined)."""
    import numpy as np

    acts = data.activations()
    rows = []
    for i in samples:
        facts = data.sample_facts(i)
        rows.append(
            {
                "sample": i,
                "class": facts["class"],
                "prediction": facts["prediction"],
                "mark": curation.get(i),
                "neuron": unit,
                "activation": float(acts[i, unit]) if unit is not None else np.nan,
                "attribution_score": score(i),
                "concepts": ", ".join(facts["concepts"]),
            }
        )
    columns = ["sample", "class", "prediction", "mark", "neuron", "activation"]
    return pd.DataFrame(rows, columns=[*columns, "attribution_score", "concepts"])


def _cancelled() -> Exception:
    from repwidgets.views.explorer.jobs import Cancelled

    return Cancelled("retraining")


def comparison_png(table: pd.DataFrame, width: int = 420, height: int = 220) -> bytes:
    """Bars of accuracy and worst-group accuracy per method, as a PNG.

    The background is transparent and the text and grid mid-grey, so the chart reads
    in JupyterLab's light and dark themes alike.

    Args:
        table: the ComparisonResult table (index: method; columns ``accuracy_mean`` and
            ``worst_group_accuracy_mean``).
    """
    from PIL import Image, ImageDraw

    # transparent, with mid-grey text and grid: it reads on light and dark themes
    img = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    left, right, top, bottom = 36, width - 8, 24, height - 28
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = bottom - frac * (bottom - top)
        draw.line([(left, y), (right, y)], fill=_GRID)
        draw.text((4, y - 6), f"{frac:.2f}", fill=_TEXT)
    methods = [str(m) for m in table.index]
    slot = (right - left) / max(len(methods), 1)
    bar = slot * 0.35
    for i, method in enumerate(methods):
        x0 = left + i * slot + slot * 0.12
        for j, column in enumerate(("accuracy", "worst_group_accuracy")):
            value = float(table[f"{column}_mean"].iloc[i])
            value = min(max(value, 0.0), 1.0) if value == value else 0.0
            xa = x0 + j * bar
            draw.rectangle(
                [xa, bottom - value * (bottom - top), xa + bar - 2, bottom], fill=_COLORS[column]
            )
        draw.text((x0, bottom + 6), method[:12], fill=_TEXT)
    draw.rectangle([left, 6, left + 10, 16], fill=_COLORS["accuracy"])
    draw.text((left + 14, 5), "accuracy", fill=_TEXT)
    draw.rectangle([left + 90, 6, left + 100, 16], fill=_COLORS["worst_group_accuracy"])
    draw.text((left + 104, 5), "worst-group accuracy", fill=_TEXT)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


class ActionBar(ipywidgets.VBox):
    """Flag buttons, export, retrain, and the retraining table and plot.

    Attributes:
        flag_buttons: ``{mark: Button}`` (``rw-x-flag-keep``, ``-spurious``, ``-exclude``).
        export_button: writes the selection CSV (``rw-x-export``).
        retrain_button: ``rw-x-retrain``; table: Output (``rw-x-retrain-table``);
        plot: Image (``rw-x-retrain-plot``); counts: the curation's counts.
    """

    def __init__(self) -> None:
        self.flag_buttons = {}
        tips = {
            "keep": "Keep: a good example of its class",
            "spurious": "Spurious: its label is right but it contradicts the shortcut "
            "(upweighted when retraining)",
            "exclude": "Exclude: leave it out of retraining",
        }
        for mark in MARKS:
            button = ipywidgets.Button(
                description=mark, tooltip=tips[mark], layout=ipywidgets.Layout(width="auto")
            )
            button.add_class(f"rw-x-flag-{mark}")
            self.flag_buttons[mark] = button
        self.export_button = ipywidgets.Button(
            description="Export CSV",
            icon="download",
            tooltip="Write the selection to a CSV file",
            layout=ipywidgets.Layout(width="auto"),
        )
        self.export_button.add_class("rw-x-export")
        self.retrain_button = ipywidgets.Button(
            description="Retrain last layer",
            icon="refresh",
            tooltip="Fit the last layer on the curated marks and compare with ERM and the "
            "group oracle (runs in the background)",
            layout=ipywidgets.Layout(width="auto"),
        )
        self.retrain_button.add_class("rw-x-retrain")
        self.selection_label = ipywidgets.Label("no samples selected")
        self.counts = ipywidgets.Label("")
        self.table = ipywidgets.Output()
        self.table.add_class("rw-x-retrain-table")
        self.plot = ipywidgets.Image(format="png")
        self.plot.add_class("rw-x-retrain-plot")
        self.plot.layout.display = "none"
        self.selection_label.layout.min_width = "9em"
        self.counts.layout.min_width = "16em"
        buttons = ipywidgets.HBox(
            [
                self.selection_label,
                *self.flag_buttons.values(),
                self.export_button,
                self.retrain_button,
                self.counts,
            ]
        )
        #: holds the progress and status of the job an action started (see Explorer)
        self.job_slot = ipywidgets.HBox([])
        super().__init__([buttons, self.job_slot, ipywidgets.HBox([self.table, self.plot])])

    def show_comparison(self, result: Any) -> None:
        """Show a ComparisonResult as its table and bar chart (replacing the last)."""
        table = result.to_frame()
        # no-break spaces keep each header on one row
        shown = table[["accuracy_mean", "worst_group_accuracy_mean"]].rename(
            columns={
                "accuracy_mean": "accuracy",
                "worst_group_accuracy_mean": "worst\u00a0group\u00a0acc.",
            }
        )
        show_table(self.table, shown.round(3))
        self.plot.value = comparison_png(table)
        self.plot.layout.display = None
