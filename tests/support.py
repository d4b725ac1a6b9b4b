"""Helpers shared by the tests: CI strictness and the built JS bundles."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "repwidgets" / "static"
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, missing: str) -> None:
    """Skip when a piece the test needs is missing; on CI a missing piece is a failure."""
    if condition:
        return
    if ON_CI:
        pytest.fail(f"{missing} is missing, and nothing may be skipped on CI.")
    pytest.skip(f"{missing} is missing")


need = require


def ensure_bundle(name: str = "gallery") -> Path:
    """The built widget bundle, building it with npm when the sources are newer."""
    out = STATIC / f"{name}.js"
    css = STATIC / f"{name}.css"
    js = ROOT / "js"
    sources = [*(js / "src").rglob("*.ts"), *(js / "src").rglob("*.css"), js / "build.mjs"]
    built = [out, css]
    stale = not all(p.is_file() for p in built) or any(
        s.stat().st_mtime > min(p.stat().st_mtime for p in built) for s in sources
    )
    if stale and (js / "node_modules").is_dir() and shutil.which("npm"):
        subprocess.run(["npm", "run", "--silent", "build"], cwd=js, check=True, timeout=300)
    require(out.is_file(), f"the JS build repwidgets/static/{name}.js (run `make js`)")
    require(css.is_file(), f"the JS build repwidgets/static/{name}.css (run `make js`)")
    return out
