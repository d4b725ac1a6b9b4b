"""Helpers shared by the benchmark scripts: machine description, timing, JSON output and
the headless Chromium the front-end figures are measured in.

Importing it puts ``tests/`` and ``tests/browser/`` on ``sys.path``: the benchmarks
compare against the same oracles (``reference_invert``) and drive the same browser
harness as the tests."""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch


def machine() -> dict:
    """What the figures were measured on."""
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    """The fastest of ``repeats`` wall-clock timings of ``fn()`` in seconds."""
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def emit(name: str, figures: dict) -> None:
    """Print the benchmark's one JSON object."""
    print(json.dumps({"benchmark": name, "machine": machine(), **figures}, indent=2))
    sys.stdout.flush()


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "browser"))
from harness import CHROMIUM, CHROMIUM_ARGS  # noqa: E402


@contextmanager
def headless_chromium(viewport: dict | None = None, extra_args: Sequence[str] = ()) -> Iterator:
    """A Playwright browser context on Debian's Chromium with a fresh profile folder."""
    if not Path(CHROMIUM).is_file():
        raise SystemExit(f"Chromium is missing at {CHROMIUM}: apt-get install chromium.")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=[*CHROMIUM_ARGS, *extra_args],
            headless=True,
            viewport=viewport or {"width": 1100, "height": 800},
        )
        try:
            yield context
        finally:
            context.close()
