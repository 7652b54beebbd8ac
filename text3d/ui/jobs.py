"""Generation jobs for the web UI: :func:`text3d.app.jobs.generate` in a worker thread, followed through a queue.

The trainer's callbacks (worker thread) record the latest progress and preview and put a wake-up on the job's
queue; the UI's generator function waits on that queue and streams the state to the browser. Cancel sets the
job's ``threading.Event``, which the trainer checks between steps: it stops and keeps a checkpoint of the last
completed step.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from text3d.app.jobs import JobResult, generate
from text3d.app.schema import Text3DConfig
from text3d.errors import TrainingError, UserError
from text3d.stage.trainer import Callback, Progress
from text3d.ui.runs import choose_run_dir

log = logging.getLogger(__name__)


class Job(Callback):
    """One ``generate`` run. The trainer calls its hooks from the worker thread; the UI reads its fields."""

    def __init__(self, config: Text3DConfig, output_root: Path) -> None:
        self.config = config
        self.output_root = output_root
        self.run_dir: Path | None = None
        """Chosen when the job starts (see :func:`choose_run_dir`)."""
        self.stop_event = threading.Event()
        self.started = time.monotonic()
        self.waiting = False
        """True while another job still holds the runner (e.g. one that is stopping)."""
        self.progress: Progress | None = None
        self.cpu_threads: int | None = None
        """The CPU threads the job trains with (known from its first stage on)."""
        self.stage_done = False
        """The stage in ``progress`` has ended (the next stage, or the export, is being prepared)."""
        self.preview: Path | None = None
        self.checkpoint: Path | None = None
        self.result: JobResult | None = None
        self.error: Exception | None = None
        self._done = threading.Event()
        self._wake: queue.Queue[None] = queue.Queue()

    # --- trainer hooks (worker thread) ---
    def on_start(self, progress: Progress) -> None:
        self.cpu_threads = torch.get_num_threads()  # the worker thread's, set by the job (make_accelerator)
        self._update(progress, stage_done=False)

    def on_step(self, progress: Progress) -> None:
        self._update(progress, stage_done=False)

    def on_preview(self, progress: Progress, path: Path) -> None:
        self.preview = path
        self._wake.put(None)

    def on_checkpoint(self, progress: Progress, path: Path) -> None:
        self.checkpoint = path

    def on_end(self, progress: Progress) -> None:
        self._update(progress, stage_done=True)

    def _update(self, progress: Progress, stage_done: bool) -> None:
        self.progress, self.stage_done = progress, stage_done
        self._wake.put(None)

    # --- lifecycle ---
    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def stopped(self) -> bool:
        return self.result is not None and self.result.stopped

    def cancel(self) -> None:
        self.stop_event.set()

    def run(self) -> None:
        """The worker's body for this job: pick the run directory, generate; errors are kept for the page."""
        try:
            self.run_dir, resume = choose_run_dir(self.output_root, self.config)
            if self.stop_event.is_set():  # cancelled while waiting: nothing is written
                self.result = JobResult(self.run_dir, stopped=True)
            else:
                self.result = generate(self.config, self.run_dir, resume, [self], self.stop_event)
        except (UserError, TrainingError) as e:
            log.warning("web UI job '%s': %s", self.config.prompt.text, e)
            self.error = e
        except Exception as e:  # the browser gets one line; the log keeps the traceback
            log.exception("web UI job '%s' failed", self.config.prompt.text)
            self.error = e
        finally:
            self._done.set()
            self._wake.put(None)

    def updates(self, interval: float = 1.0) -> Iterator[None]:
        """Yield whenever there is news (and at least every ``interval`` s, for the clock) until the job ends."""
        while not self.done:
            try:
                self._wake.get(timeout=interval)
            except queue.Empty:
                pass
            while not self._wake.empty():  # coalesce a burst of steps into one update
                self._wake.get_nowait()
            if not self.done:
                yield

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)


class JobRunner:
    """Runs jobs one at a time on one long-lived worker thread, and finds each browser session's job for Cancel.

    One thread for every job, not one each: glibc gives each new thread's allocations their own arena and keeps
    freed memory there, so the server grew with every job (measured: +211 MB over 8 jobs, +26 MB on one thread).
    After each job the freed memory is handed back to the system. A job queued behind a running one (e.g. one that
    is still stopping after a Cancel) waits, and says so.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[str, Job]] = queue.Queue()
        self._jobs: dict[str, Job] = {}
        self._busy = threading.Event()
        threading.Thread(target=self._work, name="text3d-jobs", daemon=True).start()

    def start(self, session: str, config: Text3DConfig, output_root: Path) -> Job:
        job = Job(config, output_root)
        job.waiting = self._busy.is_set() or not self._queue.empty()
        self._jobs[session] = job
        self._queue.put((session, job))
        return job

    def _work(self) -> None:
        while True:
            session, job = self._queue.get()
            self._busy.set()
            if job.waiting:
                job.waiting = False
                job._wake.put(None)
            try:
                job.run()
            finally:
                if self._jobs.get(session) is job:
                    del self._jobs[session]
                release_memory()
                self._busy.clear()

    def job_of(self, session: str) -> Job | None:
        """The running (or waiting) job started by ``session``."""
        return self._jobs.get(session)


def release_memory() -> None:
    """Collect garbage and give freed heap memory back to the system (glibc's malloc_trim; a no-op elsewhere)."""
    gc.collect()
    if _libc is not None:
        _libc.malloc_trim(0)


def _load_libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):  # not glibc
        return None


_libc = _load_libc()
