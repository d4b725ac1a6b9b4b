"""Background work of the explorer: one worker, with progress, a status line and Cancel.

Attribution, retraining and extraction all run the session's model; two of them at
once would put forward hooks from two threads on one model. :data:`MODEL_LOCK` is the
one lock every job holds while it runs, so model use is serialised across all the
explorers of a kernel. A job runs in a daemon thread (the kernel keeps answering the
widgets meanwhile) or, with ``wait=True``, in the caller's thread; either way it reports
``(done, total, stage)`` to an ``IntProgress`` and a status ``Label``, and a Cancel
button sets its ``threading.Event``, which the job checks between steps.

Example:
    >>> jobs = Jobs()
    >>> job = jobs.start("sum", lambda report, cancel: sum(range(10)), wait=True)
    >>> job.result
    45
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import ipywidgets

__all__ = ["MODEL_LOCK", "Cancelled", "Job", "Jobs"]

#: Held by every job while it runs: one user of the session's model at a time.
MODEL_LOCK = threading.RLock()

Report = Callable[[int, int, str], None]
Work = Callable[[Report, threading.Event], Any]


class Cancelled(Exception):  # noqa: N818 - the name says what happened
    """A job stopped because its Cancel button (or :meth:`Jobs.cancel`) was pressed."""


class Job:
    """One unit of background work: its state, result or error, and its cancel flag.

    Attributes:
        name: what it does, shown in the status line.
        state: "queued", "running", "done", "cancelled" or "failed".
        result: what the work returned (when done).
        error: the exception it raised (when failed or cancelled).
        cancel_event: set to ask the work to stop.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = "queued"
        self.result: Any = None
        self.error: BaseException | None = None
        self.cancel_event = threading.Event()
        self.thread: threading.Thread | None = None
        self._finished = threading.Event()
        self.seconds = 0.0

    @property
    def done(self) -> bool:
        """True once the job has finished (done, cancelled or failed)."""
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job finishes (True) or ``timeout`` seconds pass (False)."""
        return self._finished.wait(timeout)

    def cancel(self) -> None:
        """Ask the job to stop at its next check."""
        self.cancel_event.set()

    def __repr__(self) -> str:
        return f"Job({self.name!r}, {self.state})"


class Jobs:
    """The explorer's worker: one job at a time, its progress bar, status and Cancel.

    Attributes:
        progress: ``IntProgress`` of the running job (class ``rw-x-progress``); it and
            Cancel are hidden (and the bar reset) while no job runs.
        status: the status ``Label`` (class ``rw-x-status``).
        cancel_button: stops the running job (class ``rw-x-cancel``).
        box: the three in one row, to place in a view.
        current: the last job started (or None).
    """

    def __init__(self) -> None:
        self.progress = ipywidgets.IntProgress(value=0, min=0, max=1, description="")
        self.progress.add_class("rw-x-progress")
        self.status = ipywidgets.Label("ready")
        self.status.add_class("rw-x-status")
        self.cancel_button = ipywidgets.Button(
            description="Cancel", icon="stop", disabled=True, tooltip="Stop the running job"
        )
        self.cancel_button.add_class("rw-x-cancel")
        self.cancel_button.on_click(lambda _b: self.cancel())
        self.box = ipywidgets.HBox([self.progress, self.cancel_button, self.status])
        self._show_running(False)
        self.current: Job | None = None
        self._lock = threading.Lock()

    def _show_running(self, running: bool) -> None:
        """The progress bar and Cancel show only while a job runs (the status stays)."""
        shown = None if running else "none"
        self.progress.layout.display = shown
        self.cancel_button.layout.display = shown
        if not running:
            self.progress.value, self.progress.max = 0, 1

    @property
    def busy(self) -> bool:
        """True while a job is queued or running."""
        job = self.current
        return job is not None and not job.done

    def say(self, text: str) -> None:
        """Show ``text`` in the status line (as text, never HTML)."""
        self.status.value = str(text)

    def cancel(self) -> None:
        """Ask the running job to stop."""
        job = self.current
        if job is not None and not job.done:
            job.cancel()
            self.say(f"{job.name}: cancelling…")

    def start(
        self,
        name: str,
        work: Work,
        *,
        wait: bool = False,
        on_done: Callable[[Job], None] | None = None,
    ) -> Job:
        """Run ``work(report, cancel_event)`` under :data:`MODEL_LOCK`.

        Args:
            name: shown in the status line.
            work: the function; it calls ``report(done, total, stage)`` and checks
                ``cancel_event`` (raise :class:`Cancelled`, or the engine's own, to stop).
            wait: run in this thread and return when finished (errors are re-raised);
                False runs in a background thread and returns at once.
            on_done: called with the finished job (also when it failed or was cancelled).

        Raises:
            RuntimeError: another job of this explorer is still running.
        """
        with self._lock:
            if self.busy:
                raise RuntimeError(
                    f"{self.current.name!r} is still running; wait for it or press Cancel "
                    "(x.jobs.cancel()) first."
                )
            job = Job(name)
            self.current = job
        self.progress.value, self.progress.max = 0, 1
        self.cancel_button.disabled = False
        self._show_running(True)
        self.say(f"{name}: waiting for the model…")
        if wait:
            self._run(job, work, on_done)
            if job.error is not None:
                raise job.error
            return job
        job.thread = threading.Thread(
            target=self._run, args=(job, work, on_done), name=f"repwidgets-{name}", daemon=True
        )
        job.thread.start()
        return job

    def _report(self, job: Job) -> Report:
        def report(done: int, total: int, stage: str = "") -> None:
            total = max(int(total), 1)
            self.progress.max = total
            self.progress.value = min(max(int(done), 0), total)
            self.say(f"{job.name}: {stage} {int(done)}/{total}".replace("  ", " "))

        return report

    def _run(self, job: Job, work: Work, on_done: Callable[[Job], None] | None) -> None:
        t0 = time.perf_counter()
        try:
            with MODEL_LOCK:
                job.state = "running"
                if job.cancel_event.is_set():
                    raise Cancelled(job.name)
                job.result = work(self._report(job), job.cancel_event)
            job.state = "done"
        except BaseException as exc:  # the thread must always finish the job
            job.error = exc
            job.state = "cancelled" if _is_cancel(exc, job) else "failed"
            if job.state == "failed" and job.thread is not None:
                traceback.print_exc()
        job.seconds = time.perf_counter() - t0
        self.cancel_button.disabled = True
        self._show_running(False)
        if job.state == "done":
            self.say(f"{job.name}: done in {job.seconds:.1f} s")
        elif job.state == "cancelled":
            self.say(f"{job.name}: cancelled")
        else:
            self.say(f"{job.name} failed: {type(job.error).__name__}: {job.error}")
        job._finished.set()
        if on_done is not None:
            try:
                on_done(job)
            except Exception as exc:  # a broken display must not hide the result
                self.say(f"{job.name}: could not show the result: {exc}")


def _is_cancel(exc: BaseException, job: Job) -> bool:
    """A Cancelled of ours or an engine's, or any error after the cancel flag was set."""
    return type(exc).__name__ == "Cancelled" or job.cancel_event.is_set()
