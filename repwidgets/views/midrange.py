"""The view of a mid-range band: the curation grid over the band's candidates.

``m.widget()`` keeps the marks in memory; ``m.curate(path)`` (the same view with a
path) saves them to a file on every change. Moving the band asks the result for the
candidates of the new band, which needs the session.

Example:
    >>> m = rw.midrange.select(sess, class_index=0)   # doctest: +SKIP
    >>> cur = m.curate("curation.json")               # same as midrange_view(m, path=...)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from repwidgets.views._session import session_of
from repwidgets.widgets.curation import CurationSelector

if TYPE_CHECKING:
    from repwidgets.engines.midrange import MidrangeResult
    from repwidgets.session import Session

__all__ = ["midrange_view"]


def midrange_view(
    result: MidrangeResult,
    path: str | os.PathLike | None = None,
    session: Session | None = None,
    **kwargs: Any,
) -> CurationSelector:
    """A :class:`CurationSelector` over the band's samples, marks kept in ``path``.

    Args:
        result: a mid-range band.
        path: the curation file (None: marks in memory only).
        session: the session for thumbnails and for moving the band (default: the one
            the result came from; needed for a band loaded from a file).
        **kwargs: passed to :class:`CurationSelector` (thumb_size, height, image_size).
    """
    sess = session_of(result, session)
    candidates = result.candidates(session=sess)  # moving the band reselects with it
    return CurationSelector(candidates, candidates.curation(path), images=sess, **kwargs)
