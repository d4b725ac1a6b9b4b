"""The demo: one section per method, run on the embedded default by ``make demo``.

Each method has a module here with two functions: ``run(sess) -> dict`` computes the
method's section (``title``, ``summary_lines``, and optionally ``result``, ``tables``,
``images``, ``figures``) and ``add_to_report(report, section, sess)`` adds the tables
and images made from its result. :data:`METHODS` is the registry that the
``repwidgets demo`` command and the report read; adding a method adds one name here
and one module beside this file.

Example:
    >>> section = run_section("invert", rw.demo_session())   # doctest: +SKIP
    >>> report = add_section(Report("demo"), "invert", section)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from repwidgets.report import Report
    from repwidgets.session import Session

__all__ = ["METHODS", "add_section", "prose_lines", "run_section", "section_module"]

#: The methods of the demo, in report order; each is a module ``repwidgets.demo.<name>``.
METHODS: tuple[str, ...] = ("invert", "dora", "concepts", "midrange", "attribution")


def section_module(method: str) -> ModuleType:
    """The demo module of ``method``; a ValueError naming the methods when unknown."""
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; the demo has {', '.join(METHODS)}.")
    return importlib.import_module(f"repwidgets.demo.{method}")


def run_section(method: str, sess: Session, **options: Any) -> dict[str, Any]:
    """Run ``method`` on ``sess`` and return its report section (``options`` go to the
    method's ``run``, e.g. fewer steps in tests)."""
    return section_module(method).run(sess, **options)


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


def add_section(report: Report, method: str, section: dict, sess: Session | None = None) -> Report:
    """Add one method's demo section: its summary sentences, then tables and images made
    from its result (where the section carries one and a session can draw the images),
    then its figures."""
    report.add_section(section["title"])
    for line in prose_lines(section.get("summary_lines", [])):
        report.add_text(line)
    if section.get("result") is not None:
        section_module(method).add_to_report(report, section, sess)
    for frame in section.get("tables", []):
        report.add_table(frame)
    for images, captions in section.get("images", []):
        report.add_images(images, captions)
    for fig in section.get("figures", []):
        report.add_figure(fig)
    return report
