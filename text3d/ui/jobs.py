"""Generation jobs for the web UI: :func:`text3d.app.jobs.generate` in a worker thread, followed through a queue.

The trainer's callbacks (worker thread) record the latest progress and preview and put a wake-up on the job's
queue; the UI's generator function waits on that queue and streams the state to the browser. Cancel sets the
job's ``threading.Event``, which the trainer checks between steps: it stops and keeps a checkpoint of the last
completed step.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

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

    def run(self, lock: threading.Lock) -> None:
        """The worker thread's body: wait for ``lock`` (one job at a time), pick the run directory, generate."""
        try:
            if not lock.acquire(blocking=False):
                self.waiting = True
                self._wake.put(None)
                lock.acquire()
                self.waiting = False
            try:
                # Chosen under the lock: no other job is writing, so "a stopped run of this config" is really stopped.
                self.run_dir, resume = choose_run_dir(self.output_root, self.config)
                if self.stop_event.is_set():  # cancelled while waiting: nothing is written
                    self.result = JobResult(self.run_dir, stopped=True)
                else:
                    self.result = generate(self.config, self.run_dir, resume, [self], self.stop_event)
            finally:
                lock.release()
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
    """Starts jobs in worker threads, one at a time, and finds each browser session's job for Cancel.

    The lock makes "one at a time" hold even when the UI stopped following a job (a cancelled event, a
    closed page): the next job waits until that one has stopped and saved its checkpoint.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}

    def start(self, session: str, config: Text3DConfig, output_root: Path) -> Job:
        job = Job(config, output_root)
        self._jobs[session] = job
        threading.Thread(target=self._run, args=(session, job), name="text3d-job", daemon=True).start()
        return job

    def _run(self, session: str, job: Job) -> None:
        job.run(self._lock)
        if self._jobs.get(session) is job:
            del self._jobs[session]

    def job_of(self, session: str) -> Job | None:
        """The running (or waiting) job started by ``session``."""
        return self._jobs.get(session)
