"""The widgets' TypeScript unit tests (vitest), run from pytest so one command runs all."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from support import require

JS = Path(__file__).parent.parent / "js"


def test_vitest_suite_passes():
    require(shutil.which("npm") is not None, "npm (Node.js)")
    require((JS / "node_modules").is_dir(), "js/node_modules (run `make test`, which runs npm ci)")
    result = subprocess.run(
        ["npm", "test", "--silent"], cwd=JS, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
