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


@pytest.fixture
def one_thread():
    """Torch on one thread during the test (the tests share two cores between workers)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def fresh_curations():
    """Forget the curation files other tests opened (one open store per file)."""
    from repwidgets.curation_store import Curation

    Curation._forget()
    yield
    Curation._forget()


@pytest.fixture(scope="module")
def synth():
    """The mid-range tests' session over planted features (see test_midrange.py)."""
    from test_midrange import synthetic_session

    torch.set_num_threads(1)
    return synthetic_session()


@pytest.fixture(scope="module")
def attribution_session():
    """The attribution tests' small trained session (see test_attribution_probes.py)."""
    from test_attribution_probes import make_tiny_session

    return make_tiny_session()
