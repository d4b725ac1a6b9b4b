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


def test_typecheck_and_function_length():
    """`npm run typecheck`: tsc finds no error and no function in js/src passes 150 lines."""
    require(shutil.which("npm") is not None, "npm (Node.js)")
    require((JS / "node_modules").is_dir(), "js/node_modules (run `make test`, which runs npm ci)")
    result = subprocess.run(
        ["npm", "run", "--silent", "typecheck"], cwd=JS, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


def test_function_length_check_names_a_long_function(tmp_path):
    """The length check fails with the function's name and length (checked at a low limit)."""
    require(shutil.which("node") is not None, "node (Node.js)")
    require((JS / "node_modules" / "typescript").is_dir(), "js/node_modules (run npm ci)")
    result = subprocess.run(
        ["node", "scripts/function-length.mjs", "20"], cwd=JS, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "function gridKey is" in result.stderr and "lines long (limit 20)" in result.stderr


def test_every_widget_entry_has_its_css():
    """Each widget entry js/src/<name>.ts has js/src/<name>.css (shipped as the widget's _css)."""
    entries = sorted(p.stem for p in (JS / "src").glob("*.ts") if not p.name.endswith(".d.ts"))
    assert entries
    for name in entries:
        assert (JS / "src" / f"{name}.css").is_file(), f"js/src/{name}.css is missing"
    for path in (JS / "src").rglob("*.ts"):
        text = path.read_text()
        assert "document.head" not in text and "<style" not in text, (
            f"{path}: CSS belongs in a .css file"
        )


def test_static_css_is_the_built_stylesheet_or_empty():
    """Each widget's _css is its built static/<name>.css; an unknown name gives no CSS."""
    from repwidgets.widgets import ConceptBrowser, CurationSelector, DistanceHeatmap, NeuronGallery
    from repwidgets.widgets._transport import STATIC_DIR, static_css

    assert static_css("no-such-widget") == ""
    for cls, name in [
        (NeuronGallery, "gallery"),
        (DistanceHeatmap, "heatmap"),
        (ConceptBrowser, "clusters"),
        (CurationSelector, "curation"),
    ]:
        built = STATIC_DIR / f"{name}.css"
        require(built.is_file(), f"the JS build repwidgets/static/{name}.css (run `make js`)")
        assert static_css(name) == built
        assert ".rw-root" in built.read_text()  # the theme variables come first
        assert cls._css is not None
