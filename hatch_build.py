"""Build step for wheels, sdists and editable installs: bundle the widgets' JavaScript.

The bundles in ``repwidgets/static/`` are made from ``js/`` with ``npm ci`` (which
installs exactly what ``js/package-lock.json`` lists and never rewrites it) and
``npm run build``. Nothing runs when the bundles are already newer than their sources,
so a build from an sdist (which ships the bundles) needs no Node.js.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


def bundle_paths(root: Path) -> list[Path]:
    """The files the build makes: per widget entry ``js/src/<name>.ts`` its script and
    its stylesheet."""
    src = root / "js" / "src"
    entries = sorted(p.stem for p in src.glob("*.ts") if not p.name.endswith(".d.ts"))
    static = root / "repwidgets" / "static"
    return [static / f"{name}{ext}" for name in entries or ["gallery"] for ext in (".js", ".css")]


def newest_mtime(paths) -> float:
    """The latest modification time among ``paths`` (files, or folders searched deeply)."""
    newest = 0.0
    for path in paths:
        path = Path(path)
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            newest = max(newest, file.stat().st_mtime)
    return newest


def bundles_are_current(root: Path) -> bool:
    """True when every bundle exists and is newer than the JS sources and the lock file."""
    built = bundle_paths(root)
    if not all(path.is_file() for path in built):
        return False
    js = root / "js"
    if not (js / "src").is_dir():
        return True
    sources = [js / "src", js / "build.mjs", js / "package.json", js / "package-lock.json"]
    oldest_bundle = min(path.stat().st_mtime for path in built)
    return newest_mtime(p for p in sources if p.exists()) <= oldest_bundle


def npm_modules_are_current(js: Path) -> bool:
    """True when ``npm ci`` already ran after the last change of the lock file."""
    marker = js / "node_modules" / ".package-lock.json"
    return marker.is_file() and marker.stat().st_mtime >= (js / "package-lock.json").stat().st_mtime


def build_js(root: Path) -> None:
    """Run ``npm ci`` (when needed) and ``npm run build`` in ``root/js``."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            "Building repwidgets needs Node.js 18+ and npm to bundle the widgets' JavaScript "
            "(js/ -> repwidgets/static/). Install Node.js (https://nodejs.org) and build again."
        )
    js = root / "js"
    if not npm_modules_are_current(js):
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=js, check=True
        )
    subprocess.run([npm, "run", "--silent", "build"], cwd=js, check=True)


class JavaScriptBuildHook(BuildHookInterface):
    """Hatchling hook that makes sure the JavaScript bundles exist before packaging."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        root = Path(self.root)
        built = all(path.is_file() for path in bundle_paths(root))
        if not bundles_are_current(root):
            if built and shutil.which("npm") is None:
                self.app.display_warning(
                    "The JavaScript bundles are older than js/; without npm they are packaged "
                    "as they are. Install Node.js 18+ to rebuild them."
                )
            else:
                build_js(root)
        missing = [p.name for p in bundle_paths(root) if not p.is_file()]
        if missing:
            raise RuntimeError(
                f"The JavaScript build did not produce repwidgets/static/{missing[0]}; run "
                "`cd js && npm ci && npm run build` to see the error."
            )
