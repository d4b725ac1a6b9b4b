"""Shared fixtures: the demo session (trained once, then cached) and CI strictness."""

from __future__ import annotations

import pytest
import torch


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
