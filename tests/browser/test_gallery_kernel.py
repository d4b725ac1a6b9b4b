"""All the way round: a real kernel, the gallery displayed in JupyterLab 4 / Notebook 7,
clicks in Chromium, and the selection read back from the kernel with jupyter_client."""

from __future__ import annotations

import importlib.util
import json
import queue
import time
from pathlib import Path

import pytest
from servers import JupyterServer as Server
from support import ROOT, need

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent

SETUP_CELL = f"""\
import sys
sys.path[:0] = [{str(ROOT)!r}, {str(HERE)!r}]
from harness import make_cards, thumbnail
from repwidgets.widgets import NeuronGallery

g = NeuronGallery(
    make_cards(64, 8),
    image_source=lambda keys: [thumbnail(int(k)) for k in keys],
    title="kernel round trip",
    height=480,
)
g"""


# Start commands without awaiting them: their promises settle only when cells finish.
RUN_ALL = """() => {
  window.jupyterapp.commands.execute('notebook:run-all-cells').catch(() => {});
  return true;
}"""
KERNEL_IDLE = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const kernel = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!kernel && kernel.status === 'idle' && kernel.connectionStatus === 'connected';
}"""
DARK_THEME = """() => {
  window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})
    .catch(() => {});
  return true;
}"""


def open_and_run(
    page, server, path: str, widget: str, failure_png: Path | None = None, wait_idle: bool = True
) -> None:
    """Open the notebook at ``path`` in the server's app, run its cells, wait for ``widget``.

    The cells run exactly once, after the kernel is idle, and the run command is not
    awaited (its promise can stay pending while the kernel starts): running them twice
    would bind the notebook's variable to a new widget, not the one on screen. Returns
    once the widget's element is on the page and the kernel is idle again; on failure
    the page is saved to ``failure_png`` and the error names any open dialog. With
    ``wait_idle=False`` it returns as soon as the widget is there, while later cells
    may still run.
    """
    page.goto(f"{server.url}/{path}", timeout=120_000)
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.started", timeout=120_000)
    page.wait_for_function("() => window.jupyterapp.started.then(() => true)", timeout=120_000)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    page.wait_for_function(KERNEL_IDLE, timeout=180_000)
    page.evaluate(RUN_ALL)
    try:
        page.wait_for_selector(widget, timeout=240_000)
    except Exception:
        if failure_png is not None:
            page.screenshot(path=str(failure_png))
        dialogs = page.eval_on_selector_all(".jp-Dialog", "els => els.map(e => e.innerText)")
        raise AssertionError(f"{widget} did not appear; dialogs: {dialogs}") from None
    if wait_idle:
        page.wait_for_function(KERNEL_IDLE, timeout=120_000)


def mean_brightness(png: bytes) -> float:
    """Mean grey level (0..255) of a PNG screenshot."""
    import io

    import numpy as np
    from PIL import Image

    return float(np.asarray(Image.open(io.BytesIO(png)).convert("L")).mean())


def write_notebook(path: Path, cells: tuple[str, ...] = (SETUP_CELL,)) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


def kernel_eval(server: Server, code: str, timeout: float = 60) -> str:
    """Run ``code`` in the notebook's own kernel and return what it printed."""
    from jupyter_client import BlockingKernelClient

    sessions = server.api("/api/sessions")
    assert len(sessions) == 1, sessions
    kernel_id = sessions[0]["kernel"]["id"]
    client = BlockingKernelClient(connection_file=str(server.runtime / f"kernel-{kernel_id}.json"))
    client.load_connection_file()
    client.start_channels()
    try:
        msg_id = client.execute(code, store_history=False)
        out = []
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                msg = client.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                raise AssertionError("\n".join(msg["content"]["traceback"]))
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out)
        raise TimeoutError(f"no answer from the kernel to {code!r}")
    finally:
        client.stop_channels()


def selected_in_kernel(server: Server, expected: list[int], timeout: float = 30) -> list[int]:
    """Poll ``g.selected`` in the kernel until it equals ``expected`` (or time runs out)."""
    deadline = time.time() + timeout
    value = None
    while time.time() < deadline:
        value = json.loads(kernel_eval(server, "import json; print(json.dumps(g.selected))"))
        if value == expected:
            return value
        time.sleep(0.5)
    return value


@pytest.fixture(params=["lab", "notebook"])
def server(request, tmp_path):
    app = request.param
    need(importlib.util.find_spec("jupyterlab") is not None, "the Python package jupyterlab")
    if app == "notebook":
        need(importlib.util.find_spec("notebook") is not None, "the Python package notebook (7)")
    root = tmp_path / "notebooks"
    root.mkdir()
    write_notebook(root / "gallery.ipynb")
    srv = Server(app, root, tmp_path)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def test_clicks_in_the_browser_reach_the_kernel(server, chromium, bundle, artifacts):
    page = chromium.new_page()
    page.set_viewport_size({"width": 1400, "height": 1000})
    try:
        path = "lab/tree/gallery.ipynb" if server.app == "lab" else "notebooks/gallery.ipynb"
        open_and_run(
            page,
            server,
            path,
            ".rw-card[data-id='2']",
            artifacts / f"gallery-{server.app}-failed.png",
        )
        page.wait_for_function(
            "() => [...document.querySelectorAll('.rw-card[data-id=\"1\"] img.rw-thumb')]"
            ".every(i => i.complete && i.naturalWidth > 0)",
            timeout=60_000,
        )

        # a click selects one card, ctrl-click adds another
        page.click(".rw-card[data-id='1'] .rw-card-label")
        page.click(".rw-card[data-id='2'] .rw-card-label", modifiers=["Control"])
        assert selected_in_kernel(server, [1, 2]) == [1, 2]

        # keyboard: right arrow moves to card 3, space selects it; the notebook ignores the keys
        page.keyboard.press("ArrowRight")
        page.keyboard.press("Space")
        assert selected_in_kernel(server, [1, 2, 3]) == [1, 2, 3]
        page.screenshot(path=str(artifacts / f"gallery-{server.app}.png"))

        # a plain click starts over with that one card
        page.click(".rw-card[data-id='0'] .rw-card-scores")
        assert selected_in_kernel(server, [0]) == [0]

        # Python -> browser: the kernel sets the selection and the page follows
        kernel_eval(server, "g.selected = [2]")
        page.wait_for_function(
            "() => [...document.querySelectorAll('.rw-card.rw-selected')]"
            ".map(e => e.dataset.id).join() === '2'",
            timeout=30_000,
        )

        # theme: the widget follows the notebook's dark theme
        page.evaluate(DARK_THEME)
        page.wait_for_function(
            "() => document.body.dataset.jpThemeLight === 'false'", timeout=30_000
        )
        page.wait_for_timeout(500)
        bg = page.eval_on_selector(".rw-gallery", "e => getComputedStyle(e).backgroundColor")
        rgb = [int(x) for x in bg[bg.index("(") + 1 : bg.index(")")].split(",")[:3]]
        assert sum(rgb) / 3 < 80, bg
        # the selected card stays dark too, so its light text keeps its contrast
        shot = page.locator(".rw-card.rw-selected .rw-card-scores").screenshot()
        assert mean_brightness(shot) < 110
        page.screenshot(path=str(artifacts / f"gallery-{server.app}-dark.png"))
    finally:
        page.close()


# --- a busy kernel ------------------------------------------------------------------------

#: Seconds the widget waits before checking on its requests, and how long the kernel
#: stays busy: several checks' worth, so the requests outlive what used to be a limit.
PATIENCE = 2
BUSY_SECONDS = 16

BUSY_CELL = f"""\
import time
time.sleep({BUSY_SECONDS})
awake_at = time.time()
print("awake")"""

#: Notes the type and arrival time of every message the gallery's kernel side receives.
RECORD_CELL = """\
import time
received = []
_answer = g._router.handle

def _record(content, buffers=None):
    if isinstance(content, dict):
        received.append((content.get("type"), time.time()))
    return _answer(content, buffers)

g._router.handle = _record"""

WAITING_SHOWN = """() => {
  const w = document.querySelector('.rw-gallery .rw-waiting');
  return !!w && /waiting for the kernel/.test(w.textContent);
}"""

THUMBS_STATE = """() => {
  const cards = [...document.querySelectorAll('.rw-gallery .rw-card')].filter((c) => c.style.display !== 'none');
  const imgs = cards.flatMap((c) => [...c.querySelectorAll('img.rw-thumb')]).filter((i) => i.style.visibility !== 'hidden');
  return {
    total: imgs.length,
    loaded: imgs.filter((i) => i.getAttribute('src') && i.complete && i.naturalWidth > 0).length,
    failed: imgs.filter((i) => i.classList.contains('rw-failed')).length,
    message: document.querySelector('.rw-gallery .rw-message').textContent,
    waiting: document.querySelector('.rw-gallery .rw-waiting').textContent,
  };
}"""

ALL_THUMBS_LOADED = (
    "() => { const s = (" + THUMBS_STATE + ")(); return s.total > 0 && s.loaded === s.total; }"
)


PATIENT_SETUP = SETUP_CELL.replace("height=480,", f"height=480,\n    request_patience={PATIENCE},")

#: Drops the first image request the kernel receives, as if it was lost on the way.
LOSSY_CELL = """\
lost = []
_handle = g._router.handle

def _lose_first_fetch(content, buffers=None):
    if isinstance(content, dict) and content.get("type") == "fetch" and not lost:
        lost.append(content["request_id"])
        return None
    return _handle(content, buffers)

g._router.handle = _lose_first_fetch"""


def shown_after(setup: str, patch: str) -> str:
    """The setup cell with ``patch`` run before its last line displays the gallery."""
    assert setup.endswith("\ng"), setup
    return setup[: -len("g")] + patch + "\ng"


@pytest.fixture
def lab_root(tmp_path):
    """A JupyterLab server and the folder it serves (tests write their notebooks there)."""
    need(importlib.util.find_spec("jupyterlab") is not None, "the Python package jupyterlab")
    root = tmp_path / "notebooks"
    root.mkdir()
    srv = Server("lab", root, tmp_path)
    try:
        srv.wait_ready()
        yield srv, root
    finally:
        srv.stop()


def test_images_wait_for_a_busy_kernel_and_arrive(lab_root, chromium, artifacts):
    """Run All: the gallery's image requests queue behind a long cell; the widget says it
    is waiting and shows the images once the kernel is free, without being displayed again."""
    busy_lab, root = lab_root
    assert f"request_patience={PATIENCE}" in PATIENT_SETUP
    write_notebook(root / "busy.ipynb", (shown_after(PATIENT_SETUP, RECORD_CELL), BUSY_CELL))
    page = chromium.new_page()
    page.set_viewport_size({"width": 1400, "height": 1000})
    try:
        open_and_run(
            page,
            busy_lab,
            "lab/tree/busy.ipynb",
            ".rw-gallery .rw-card",
            artifacts / "gallery-busy-failed.png",
            wait_idle=False,
        )
        page.wait_for_function(WAITING_SHOWN, timeout=30_000)
        during = page.evaluate(THUMBS_STATE)
        assert during["total"] > 0 and during["loaded"] == 0, during
        page.screenshot(path=str(artifacts / "gallery-busy-waiting.png"))

        page.wait_for_function(KERNEL_IDLE, timeout=120_000)
        page.wait_for_function(ALL_THUMBS_LOADED, timeout=60_000)
        after = page.evaluate(THUMBS_STATE)
        assert after["failed"] == 0 and after["message"] == "", after
        assert after["waiting"] == "", after
        # the requests waited behind the busy cell, longer than the widget's patience:
        # its pings queued behind them too
        report = "import json; print(json.dumps({'received': received, 'awake_at': awake_at}))"
        seen = json.loads(kernel_eval(busy_lab, report))
        fetched = [t for kind, t in seen["received"] if kind == "fetch"]
        assert fetched and min(fetched) >= seen["awake_at"], seen
        assert any(kind == "ping" for kind, _ in seen["received"]), seen
        assert page.locator(".rw-gallery").count() == 1  # the same view, not a new display
        outputs = page.eval_on_selector_all(
            ".jp-OutputArea-output", "els => els.map(e => e.innerText).join(' ')"
        )
        assert "awake" in outputs
        page.screenshot(path=str(artifacts / "gallery-busy-loaded.png"))
    finally:
        page.close()


def test_a_lost_image_request_is_sent_again(lab_root, chromium, artifacts):
    """The kernel never answers the first image request: a later ping is answered, so
    the page sends the request again and the images arrive."""
    server, root = lab_root
    write_notebook(root / "lossy.ipynb", (shown_after(PATIENT_SETUP, LOSSY_CELL),))
    page = chromium.new_page()
    page.set_viewport_size({"width": 1400, "height": 1000})
    try:
        open_and_run(
            page, server, "lab/tree/lossy.ipynb", ".rw-gallery .rw-card", artifacts / "lossy.png"
        )
        page.wait_for_function(ALL_THUMBS_LOADED, timeout=60_000)
        after = page.evaluate(THUMBS_STATE)
        assert after["failed"] == 0 and after["message"] == "", after
        lost = json.loads(kernel_eval(server, "import json; print(json.dumps(lost))"))
        assert len(lost) == 1, lost  # one request was dropped, and still its images came
    finally:
        page.close()
