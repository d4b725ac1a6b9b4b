"""Servers the browser tests drive: Jupyter (Lab or Notebook 7) and ``marimo run``.

Each runs in its own process group on a free local port, is ready when its health URL
answers, and is stopped with its whole group (kernels included).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_with_project(**extra: str) -> dict[str, str]:
    """This environment with the project on PYTHONPATH (and ``extra`` variables)."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, **extra}


class BackgroundServer:
    """A server process: started in a new session, logged to a file, stopped as a group."""

    name = "server"
    health_path = "/"

    def __init__(self, cmd: list[str], cwd: Path, env: dict, log: Path, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the {self.name} server exited: see {self.log.name}")
            try:
                with urllib.request.urlopen(self.url + self.health_path, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"the {self.name} server did not start in {timeout} s: {self.log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()


class JupyterServer(BackgroundServer):
    """A Jupyter server (``app="lab"``: JupyterLab, else Notebook 7) with no token."""

    health_path = "/api/status"

    def __init__(self, app: str, root: Path, home: Path) -> None:
        self.app = self.name = app
        self.runtime = home / "runtime"
        port = free_port()
        env = env_with_project(
            JUPYTER_RUNTIME_DIR=str(self.runtime),
            JUPYTER_CONFIG_DIR=str(home / "config"),
            JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        )
        cmd = [
            sys.executable,
            "-m",
            "jupyterlab" if app == "lab" else "notebook",
            "--no-browser",
            f"--port={port}",
            "--ServerApp.port_retries=0",
            "--ServerApp.ip=127.0.0.1",
            "--IdentityProvider.token=",
            "--ServerApp.password=",
            "--ServerApp.disable_check_xsrf=True",
            f"--ServerApp.root_dir={root}",
            "--expose-app-in-browser",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        super().__init__(cmd, root, env, home / f"{app}.log", port)

    def api(self, path: str):
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as r:
            return json.loads(r.read())


class MarimoServer(BackgroundServer):
    """``marimo run --headless`` of one app file."""

    name = "marimo"
    health_path = "/health"

    def __init__(self, app: Path, log: Path) -> None:
        port = free_port()
        cmd = [sys.executable, "-m", "marimo", "run", "--headless", "--host", "127.0.0.1"]
        cmd += ["--port", str(port), "--no-token", str(app)]
        super().__init__(cmd, app.parent, env_with_project(), log, port)
