"""The standalone HTML report: bokeh figures (resources inline), tables and images.

The page opens offline: bokeh's JavaScript is embedded, images are data URIs, and
every piece of text that comes from data is HTML-escaped. The demo's
sections (:mod:`repwidgets.demo`) are built with the same calls.
"""

from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

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
