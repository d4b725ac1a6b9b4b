"""Every tutorial notebook executes from top to bottom without an error."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))

#: Smaller sizes for notebooks with a cell tagged "parameters": its source is replaced.
SMALL = {
    "06_your_model": "N_TRAIN, N_VAL, N_TEST = 240, 120, 160\nIMAGE_SIZE = 32\nEPOCHS = 1",
    "07_explorer": "ATTRIBUTION = dict(max_train=200, proj_dim=32, n_targets=8)\n"
    "RETRAIN = dict(C=1.0)\n"
    "SETTINGS = {'dora': {'n_signals': 1, 'steps': 8, 'signal_size': 16},"
    " 'invert': {'max_length': 2, 'beam_size': 3}}\n"
    "CONCEPTS = False\n"
    "N_TRAIN = 1000",
}


def with_small_parameters(notebook, name: str):
    """``notebook`` with its "parameters" cell replaced by :data:`SMALL`'s (if listed)."""
    if name in SMALL:
        cells = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(cells) == 1, f"{name} needs one cell tagged 'parameters'"
        cells[0].source = SMALL[name]
    return notebook


@pytest.mark.notebook
@pytest.mark.demo
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, demo_session, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    notebook = with_small_parameters(nbformat.read(path, as_version=4), path.stem)
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors, errors


def test_there_are_tutorials():
    assert any(p.stem.startswith("00_") for p in NOTEBOOKS), "the quick start notebook is missing"
