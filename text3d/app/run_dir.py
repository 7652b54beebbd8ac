"""Run directories: ``outputs/<slug>-<seed>/`` with the resolved config, log, checkpoints and outputs; held by one
process at a time."""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import re
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from text3d.app.schema import Text3DConfig
from text3d.config import build, diff, load_yaml, to_yaml
from text3d.errors import RunDirBusy, UserError, WriteFailed
from text3d.io import os_reason, remove_temp_files, write_text
from text3d.stage.checkpoints import CheckpointStore
from text3d.stage.config import STAGE_NAMES

log = logging.getLogger(__name__)

DEFAULT_OUTPUT_ROOT = Path("outputs")
FAILED = ".failed"


def slugify(text: str, max_len: int = 48) -> str:
    """A file-name-safe slug of user text: lowercase ASCII letters, digits and single dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:max_len].strip("-")
    return slug or "run"


def run_names(config: Text3DConfig, name: str | None = None) -> Iterator[str]:
    """Directory names for a run, in order of preference: ``<slug>-<seed>``, then ``…-2``, ``…-3``, ...

    ``name`` (default: the prompt) is slugified: user text reaches a path only through :func:`slugify`.
    """
    base = f"{slugify(name if name is not None else config.prompt.text)}-{config.seed}"
    yield base
    for k in itertools.count(2):
        yield f"{base}-{k}"


def saved_config(path: Path) -> Text3DConfig:
    """The config a run directory was made with (its ``config.yaml``); ``UserError`` if it does not load."""
    return build(Text3DConfig, [load_yaml(path / "config.yaml")])


def holds_config(path: Path, config: Text3DConfig) -> bool:
    """Whether ``path`` holds a run made with exactly ``config`` (an older schema's run never does)."""
    try:
        return not diff(saved_config(path), config)
    except UserError:
        return False


def is_finished(path: Path) -> bool:
    """A run that got through export (``metrics.json`` is written last, after ``model.glb``)."""
    return (path / "metrics.json").is_file() and (path / "model.glb").is_file()


def failed(path: Path) -> str | None:
    """Why the last job in ``path`` failed after writing checkpoints (its ``.failed`` line), else None. Such a
    run stays resumable by hand (``--resume``, with changed settings); nothing resumes it on its own."""
    marker = path / FAILED
    return marker.read_text().strip() if marker.is_file() else None


@dataclass
class RunDir:
    """A run directory, held by one process at a time while a job writes to it (see :meth:`hold`)."""

    path: Path

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @contextlib.contextmanager
    def hold(self, config: Text3DConfig | None = None, resume: bool = False) -> Iterator[RunDir]:
        """Hold the directory for one job; ``config`` starts or resumes a run in it, None re-opens a run (export).

        - One process at a time: an OS lock on ``.lock`` (released when the process ends, however it ends); a
          second process gets a one-line error naming the holder's PID.
        - Temp files that killed writers left behind are removed.
        - A new run writes ``config.yaml``. An existing run is never overwritten: without ``resume`` it is an error;
          a resumed run may change the settings of stages that have not finished (and the trainer's cadence and
          threads), every other difference is an error naming the keys.
        - While held, text3d's log also goes to ``log.txt``. A job that fails before its first checkpoint leaves the
          directory as it found it (gone, if the job made it).
        """
        made = not self.path.exists()
        if not made and not self.path.is_dir():
            raise UserError(f"output path {self.path} exists and is not a directory")
        if config is not None and not resume and self.config_path.exists():
            self._refuse_overwrite()  # before the lock: a refused run touches nothing
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            lock = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UserError(f"cannot write {self.path}: {os_reason(e)}") from None
        had = {name: (self.path / name).exists() for name in ("config.yaml", "log.txt")}
        try:
            self._lock(lock)
            for folder in (self.path, self.path / "previews", self.path / "checkpoints"):
                for p in remove_temp_files(folder):
                    log.info("removed %s, left behind by a killed write", p)
            if config is not None:
                self._start(config, resume)
                (self.path / FAILED).unlink(missing_ok=True)  # a new attempt
            elif not self.config_path.exists():
                raise UserError(f"{self.path} is not a text3d run directory (no config.yaml)")
            with self._log_to_file():
                yield self
        except BaseException as e:
            if config is not None and not self._checkpoints():
                self._undo(made, had)
            elif config is not None and isinstance(e, Exception):
                with contextlib.suppress(OSError):  # the marker is a courtesy; the error itself matters more
                    (self.path / FAILED).write_text(" ".join(f"{type(e).__name__}: {e}".split()) + "\n")
            raise
        finally:
            os.close(lock)  # releases the lock; the file stays, so that no two processes ever lock different ones

    def _lock(self, fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 256, 0).decode(errors="replace").strip() or "unknown"
            raise RunDirBusy(f"{self.path} is in use by another text3d process (PID {holder}); wait for it to end, "
                             "or choose another --out") from None
        os.ftruncate(fd, 0)
        # The host too: on shared storage the holder may be a process on another machine.
        os.pwrite(fd, f"{os.getpid()} on {socket.gethostname()}\n".encode(), 0)

    def _start(self, config: Text3DConfig, resume: bool) -> None:
        if self.config_path.exists():
            if not resume:
                self._refuse_overwrite()
            saved = saved_config(self.path)
            changed = diff(saved, config)
            fixed = [k for k in changed if not k.startswith(self._changeable(saved))]
            if fixed:
                raise UserError(f"cannot resume {self.path}: the config differs in {', '.join(fixed)} (a resumed run "
                                "may change only the settings of stages that have not finished)")
            if changed:
                log.info("resuming %s with changed %s", self.path, ", ".join(changed))
        self.save_config(config)

    def save_config(self, config: Text3DConfig) -> None:
        """Write ``config.yaml``, the run's record of the settings its files were made with (atomically)."""
        try:
            write_text(self.config_path, to_yaml(config))
        except WriteFailed as e:
            raise UserError(str(e)) from None

    def _refuse_overwrite(self) -> None:
        raise UserError(f"{self.path} already holds a run; pass --resume to continue it, or choose another --out")

    def _changeable(self, saved: Text3DConfig) -> tuple[str, ...]:
        """Key prefixes a resume may change: the sections of unfinished stages, the trainer's cadence and threads, and
        the export while the run is unfinished."""
        steps = {name: max((s for s, _ in self._store().list(name)), default=-1) for name in STAGE_NAMES}
        unfinished = tuple(f"{name}." for name in STAGE_NAMES if steps[name] < getattr(saved, name).max_steps)
        export = () if is_finished(self.path) else ("export.",)
        return (*unfinished, *export, *(f"trainer.{k}" for k in _RUNNING))

    def _store(self) -> CheckpointStore:
        return CheckpointStore(self.path / "checkpoints", keep=1)

    def _checkpoints(self) -> bool:
        return any(self._store().list(name) for name in STAGE_NAMES)

    def _undo(self, made: bool, had: dict[str, bool]) -> None:
        """Leave the directory as the failed job found it."""
        if made:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        for name, existed in had.items():
            if not existed:
                (self.path / name).unlink(missing_ok=True)

    @contextlib.contextmanager
    def _log_to_file(self) -> Iterator[None]:
        handler = logging.FileHandler(self.path / "log.txt")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("text3d").addHandler(handler)
        try:
            yield
        finally:
            logging.getLogger("text3d").removeHandler(handler)
            handler.close()


# Settings of the trainer that change how a run goes (how often it reports, previews and checkpoints; its CPU
# threads), not what it trains.
_RUNNING = ("log_every", "preview_every", "checkpoint_every", "keep_checkpoints", "cpu_threads")
