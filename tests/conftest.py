"""Shared fixtures: the demo session (trained once, then cached) and CI strictness."""

from __future__ import annotations

import os

import pytest
import torch

ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, missing: str) -> None:
    """Skip when a piece the test needs is missing; on CI a missing piece is a failure."""
    if condition:
        return
    if ON_CI:
        pytest.fail(f"{missing} is missing, and nothing may be skipped on CI.")
    pytest.skip(f"{missing} is missing")


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def demo_session():
    """The embedded default session (shapes data + the default CNN, cached)."""
    import repwidgets as rw

    return rw.demo_session(seed=0, progress=False)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
