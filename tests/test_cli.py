"""The repwidgets command end to end on a tiny configuration."""

from __future__ import annotations

import re
import stat
import subprocess
import sys

import pytest

from repwidgets.cli import _methods, main


def test_help_lists_demo(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "demo" in capsys.readouterr().out


def test_unknown_method_is_named():
    with pytest.raises(SystemExit, match="Unknown method.*'nope'"):
        _methods("invert,nope")


@pytest.mark.slow
def test_demo_end_to_end_on_a_tiny_configuration(tmp_path):
    env = {"REPWIDGETS_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    report = tmp_path / "out" / "index.html"
    command = [
        sys.executable, "-m", "repwidgets.cli", "demo", "--n-train", "300", "--n-test", "120",
        "--epochs", "1", "--methods", "none", "--quiet", "--report", str(report),
    ]  # fmt: skip
    first = subprocess.run(
        ["/bin/sh", "-c", 'umask 022 && exec "$@"', "sh", *command],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    out = first.stdout
    assert "Test accuracy" in out and "worst group" in out
    assert "features.conv1" in out and str(tmp_path / "cache") in out
    page = report.read_text()
    assert "Training curves" in page and "Test accuracy per group" in page
    assert "data:image/png;base64" in page
    assert stat.S_IMODE(report.stat().st_mode) == 0o644, oct(report.stat().st_mode)
    body = page[page.index("</head><body>") :]
    assert body.count("<table") >= 3, "data, groups and timings should be tables"
    assert not re.search(
        r"\b[A-Z]\w*\((\w+=|\.\.\.)", re.sub(r"<script.*?</script>", "", body, flags=re.S)
    )
    assert list((tmp_path / "cache").rglob("*.pt")), "the trained model was not cached"

    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Test accuracy" in second.stdout
