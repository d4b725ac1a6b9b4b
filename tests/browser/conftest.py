"""Fixtures for browser tests: Debian's Chromium driven by Playwright, the built bundle.

A missing piece (Chromium, Playwright, the JS build) skips the test with a message
naming it; on CI (CI=true) it fails instead, since nothing may be skipped there.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import CHROMIUM, CHROMIUM_ARGS
from support import ensure_bundle, need

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture(scope="session")
def bundle() -> Path:
    return ensure_bundle("gallery")


@pytest.fixture(scope="session")
def chromium(tmp_path_factory):
    """A Playwright browser context on Debian's Chromium with a fresh user-data dir."""
    need(Path(CHROMIUM).is_file(), f"Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "the Python package playwright")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1100, "height": 800},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(chromium):
    p = chromium.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    p.errors = errors  # type: ignore[attr-defined]
    yield p
    p.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
