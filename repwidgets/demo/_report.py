"""Small helpers the demo sections share when they add images and tables to a report."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


def thumbnails(sess, indices: Sequence[int], split: str, size: int = 96) -> list[bytes]:
    """PNG thumbnails of ``indices`` (none without a session)."""
    if sess is None or not len(indices):
        return []
    return list(sess.thumbnails([int(i) for i in indices], split, size=size))


def columns(frame: pd.DataFrame, wanted: Sequence[str]) -> pd.DataFrame:
    """The ``wanted`` columns that ``frame`` has, in that order."""
    return frame[[c for c in wanted if c in frame.columns]]
