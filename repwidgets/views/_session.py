"""Where a view finds the session that draws a result's images."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from repwidgets.session import Session


def session_of(result: Any, session: Session | None = None) -> Session | None:
    """``session`` if given, else the session the result was computed with (or None)."""
    return session if session is not None else getattr(result, "_session", None)


def require_session(result: Any, session: Session | None = None) -> Session:
    """:func:`session_of`, or a ValueError saying how to pass one (a result loaded from a
    file has no session, so it has no images to show)."""
    sess = session_of(result, session)
    if sess is None:
        raise ValueError(
            "This result has no session (it was loaded from a file), so it has no images to "
            "show: call r.widget(session=sess)."
        )
    return sess
