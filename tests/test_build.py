"""The package build: the JS lock file is complete and building never rewrites it."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT, require

LOCK = ROOT / "js" / "package-lock.json"


def _load_hook_module():
    spec = importlib.util.spec_from_file_location("hatch_build_under_test", ROOT / "hatch_build.py")
    module = importlib.util.module_from_spec(spec)
    require(importlib.util.find_spec("hatchling") is not None, "hatchling (the test extras)")
    spec.loader.exec_module(module)
    return module


def _resolve(packages: dict, parent: str, name: str) -> str | None:
    """Where npm finds ``name`` from package path ``parent`` (nested node_modules first)."""
    here = parent
    while True:
        candidate = f"{here}/node_modules/{name}" if here else f"node_modules/{name}"
        if candidate in packages:
            return candidate
        if not here:
            return None
        cut = here.rfind("/node_modules/")
        here = here[:cut] if cut >= 0 else ""


def test_lock_lists_every_dependency_of_every_package_for_every_platform():
    lock = json.loads(LOCK.read_text())
    packages = lock["packages"]
    missing = []
    for path, meta in packages.items():
        wanted = {**meta.get("dependencies", {}), **meta.get("optionalDependencies", {})}
        if path == "":
            wanted.update(meta.get("devDependencies", {}))
        for name in wanted:
            if _resolve(packages, path, name) is None:
                missing.append(f"{path or '<root>'} -> {name}")
    assert not missing, (
        "js/package-lock.json lacks packages that npm ci needs on some platform "
        f"(regenerate with `npm install --package-lock-only` in js/): {missing[:10]}"
    )


def test_lock_matches_package_json():
    manifest = json.loads((ROOT / "js" / "package.json").read_text())
    root = json.loads(LOCK.read_text())["packages"][""]
    assert root.get("devDependencies", {}) == manifest.get("devDependencies", {})
    assert root.get("dependencies", {}) == manifest.get("dependencies", {})


def test_rollup_binaries_for_the_common_platforms_are_locked():
    packages = json.loads(LOCK.read_text())["packages"]
    if "node_modules/rollup" not in packages:
        pytest.skip("rollup is not part of the JS toolchain any more")
    for name in (
        "linux-x64-gnu",
        "linux-arm64-gnu",
        "darwin-x64",
        "darwin-arm64",
        "win32-x64-msvc",
    ):
        assert f"node_modules/@rollup/rollup-{name}" in packages, name


def test_makefile_installs_js_with_npm_ci():
    recipe = [
        line.strip()
        for line in (ROOT / "Makefile").read_text().splitlines()
        if line.startswith("\t") and "npm " in line and " run " not in line
    ]
    assert recipe, "no npm install step in the Makefile"
    assert all("npm ci" in line for line in recipe), recipe


def test_build_hook_runs_npm_ci_then_build_and_nothing_when_current(tmp_path, monkeypatch):
    hook = _load_hook_module()
    (tmp_path / "js" / "src").mkdir(parents=True)
    (tmp_path / "js" / "src" / "gallery.ts").write_text("export {};\n")
    (tmp_path / "js" / "package-lock.json").write_text("{}\n")
    static = tmp_path / "repwidgets" / "static"
    static.mkdir(parents=True)
    calls = []

    def fake_run(cmd, cwd, check):
        calls.append(cmd[1:])
        if cmd[1] == "ci":
            (Path(cwd) / "node_modules").mkdir(exist_ok=True)
            (Path(cwd) / "node_modules" / ".package-lock.json").write_text("{}\n")
        if cmd[1:3] == ["run", "--silent"]:
            (static / "gallery.js").write_text("//\n")
            (static / "gallery.css").write_text("/**/\n")

    monkeypatch.setattr(hook.shutil, "which", lambda _name: "/usr/bin/npm")
    monkeypatch.setattr(hook.subprocess, "run", fake_run)
    assert not hook.bundles_are_current(tmp_path)
    hook.build_js(tmp_path)
    assert [c[0] for c in calls] == ["ci", "run"]
    assert "install" not in [c[0] for c in calls]
    later = (static / "gallery.js").stat().st_mtime + 10
    os.utime(static / "gallery.js", (later, later))
    os.utime(static / "gallery.css", (later, later))
    assert hook.bundles_are_current(tmp_path)
    (static / "gallery.css").rename(static / "gallery.css.bak")
    assert not hook.bundles_are_current(tmp_path)  # a widget without its stylesheet is rebuilt
    (static / "gallery.css.bak").rename(static / "gallery.css")
    calls.clear()
    hook.build_js(tmp_path)  # node_modules is current: only the bundling step runs
    assert [c[0] for c in calls] == ["run"]


def test_build_hook_without_npm_names_node(tmp_path, monkeypatch):
    hook = _load_hook_module()
    monkeypatch.setattr(hook.shutil, "which", lambda _name: None)
    with pytest.raises(RuntimeError, match="Node.js"):
        hook.build_js(tmp_path)


@pytest.mark.slow
def test_building_a_wheel_from_a_clone_leaves_it_unchanged(tmp_path):
    """A copy of the tracked files, built with pip, has no change in `git status` after."""
    require(shutil.which("git") is not None, "git")
    require(shutil.which("npm") is not None, "npm (Node.js)")
    require(importlib.util.find_spec("hatchling") is not None, "hatchling (the test extras)")
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    clone = tmp_path / "clone"
    for name in filter(None, tracked):
        source = ROOT / os.fsdecode(name)
        if source.is_file():
            target = clone / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], cwd=clone, check=True)
    subprocess.run([*git, "add", "-A"], cwd=clone, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "snapshot"], cwd=clone, check=True)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation"]
        + ["-q", "-w", str(tmp_path / "wheels")],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert list((tmp_path / "wheels").glob("repwidgets-*.whl"))
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True, check=True
    ).stdout
    assert status == "", f"building changed the clone:\n{status}"
