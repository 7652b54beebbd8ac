"""Batch runs: every prompt of a prompt file into its own run directory, with a manifest; resumable, and shared
between processes.

Every item's config and run directory are planned (:mod:`text3d.app.batch_plan`) before anything runs; a re-run of
the same file and command skips finished runs and resumes unfinished ones. ``<out_root>/manifest.jsonl`` has one
record per item.

Several processes (``accelerate launch --multi_gpu --num_processes N -m text3d batch ...``; on a CPU too, where
``--multi_gpu`` is still what makes accelerate start N processes, gloo between them) share the items round-robin by
index. Each rank rewrites its own ``manifest.<rank>.jsonl`` after every item, then merges all
shards into ``manifest.jsonl`` under a file lock; after a final barrier rank 0 writes the merged manifest and removes
the shards. Every file is replaced atomically, so a kill at any point leaves complete files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
from accelerate import PartialState
from tqdm import tqdm

from text3d.app.batch_plan import PlannedRun, plan_batch
from text3d.app.jobs import generate
from text3d.app.presets import GPU_PRESET
from text3d.app.progress import TqdmCallback
from text3d.app.prompt_files import BatchItem
from text3d.app.run_dir import is_finished
from text3d.app.schema import Text3DConfig
from text3d.errors import RunDirBusy, TrainingError, UserError
from text3d.io import write_text
from text3d.stage.trainer import Callback

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
# Ranks meet at the final barrier as far apart as their shares' run times differ (hours on a GPU); the gloo and
# NCCL default of 10-30 minutes would abort a healthy batch.
_BARRIER_TIMEOUT = timedelta(days=7)


# --- Manifest -------------------------------------------------------------------------------------------------------
class Manifest:
    """``manifest.jsonl``: one record per item in file order; items not (yet) run this time are ``pending``.

    A single process rewrites it after every item. With several, each rank rewrites its own shard
    ``manifest.<rank>.jsonl`` and then merges every shard into ``manifest.jsonl`` under an exclusive lock, so the last
    merge has read each shard's latest state; :meth:`finish` (rank 0, after the final barrier) writes the final merge
    and removes the shards.
    """

    def __init__(self, out_root: Path, plan: Sequence[PlannedRun], rank: int, world: int) -> None:
        self.out_root, self.rank, self.world = out_root, rank, world
        self.path = out_root / MANIFEST
        self.pending = [manifest_record(run, "pending", rank=run.index % world) for run in plan]
        self.mine: dict[int, dict] = {}
        # What an earlier invocation recorded of the runs it finished: their time is kept when they are skipped.
        earlier = _read_jsonl(self.path) if self.path.is_file() else []
        self.finished_before = {r["run_dir"]: r for r in earlier if r.get("status") == "done"}

    def skipped(self, run: PlannedRun, rank: int) -> dict | None:
        """The record of a run an earlier invocation finished (left alone, its time kept); None if unfinished."""
        if not is_finished(run.run_dir):
            return None
        earlier = self.finished_before.get(str(run.run_dir), {})
        return manifest_record(run, "done", rank, earlier.get("seconds"), skipped=True)

    def shard(self, rank: int) -> Path:
        return self.out_root / f"manifest.{rank}.jsonl"

    def start(self) -> None:
        """Rank 0, before the first barrier: drop shards of an earlier killed batch; list every item as pending."""
        for stale in self.out_root.glob("manifest.*.jsonl"):
            if stale.name.split(".")[1].isdigit():
                stale.unlink()
        _write_jsonl(self.path, self.pending)

    def update(self, record: dict) -> None:
        self.mine[record["line"]] = record
        if self.world == 1:
            _write_jsonl(self.path, self.merged())
            return
        _write_jsonl(self.shard(self.rank), list(self.mine.values()))
        with self._lock():
            _write_jsonl(self.path, self.merged())

    def merged(self) -> list[dict]:
        done = dict(self.mine)
        if self.world > 1:
            for rank in range(self.world):
                path = self.shard(rank)
                if path.exists():
                    done.update((r["line"], r) for r in _read_jsonl(path))
        return [done.get(r["line"], r) for r in self.pending]

    def finish(self) -> None:
        _write_jsonl(self.path, self.merged())
        for rank in range(self.world):
            self.shard(rank).unlink(missing_ok=True)
        (self.out_root / ".manifest.lock").unlink(missing_ok=True)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with open(self.out_root / ".manifest.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
            yield


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _write_jsonl(path: Path, records: Sequence[dict]) -> None:
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def manifest_record(run: PlannedRun, status: str, rank: int, seconds: float | None = None, error: str | None = None,
                    skipped: bool = False) -> dict:
    """An item's manifest record. A run finished by an earlier invocation is ``done`` with ``skipped`` true (this
    invocation left it alone) and keeps the earlier record's ``seconds``."""
    outputs, stage_seconds = [], {}
    if status == "done":
        # Every top-level file but the run's own bookkeeping (and temp files of atomic writes).
        files = sorted(p for p in run.run_dir.iterdir() if p.is_file() and not p.name.startswith("."))
        outputs = [str(p) for p in files if p.name not in ("config.yaml", "log.txt")]
        metrics = json.loads((run.run_dir / "metrics.json").read_text())
        stage_seconds = {k: v["train_seconds"] for k, v in metrics.items() if "train_seconds" in v}
    return {
        "line": run.item.line,
        "prompt": run.config.prompt.text,
        "seed": run.config.seed,
        "run_dir": str(run.run_dir),
        "status": status,
        "outputs": outputs,
        "seconds": seconds,
        "stage_seconds": stage_seconds,
        "error": error,
        "rank": rank,
        "skipped": skipped,
    }


# --- Running --------------------------------------------------------------------------------------------------------
@dataclass
class BatchResult:
    records: list[dict]
    """Every item's manifest record, in file order (on every rank: the final, merged manifest)."""
    manifest: Path
    rank: int
    """This process's index (0 when not launched with several)."""

    @property
    def counts(self) -> Counter:
        """Items by status, ``done`` counting those run now and ``skipped`` those finished earlier."""
        return Counter("skipped" if r.get("skipped") else r["status"] for r in self.records)

    @property
    def exit_code(self) -> int:
        """0 when every item is done (now or earlier); 1 when any failed or did not finish (stopped, killed rank)."""
        return 0 if all(r["status"] == "done" for r in self.records) else 1

    def summary(self) -> str:
        c = self.counts
        unfinished = c["pending"] + c["stopped"]
        rest = f", {unfinished} unfinished" if unfinished else ""
        return f"{c['done']} done, {c['skipped']} skipped, {c['failed']} failed{rest} (see {self.manifest})"


def run_batch(
    items: Sequence[BatchItem],
    out_root: Path,
    preset: str | None = GPU_PRESET,
    overrides: Sequence[str] = (),
    model: str | None = None,
    resume: bool = True,
    source: str = "prompts",
    progress: bool = False,
    callbacks: list[Callback] | None = None,
    stop_event: threading.Event | None = None,
    errors: Sequence[tuple[int, str]] = (),
) -> BatchResult:
    """Generate every item (this process's share of them) into ``out_root``; see the module docstring.

    A finished run (``metrics.json`` and ``model.glb``) is left alone (``done``, ``skipped`` this time, its earlier
    time kept); an unfinished one is resumed. An item's
    exception is recorded as ``failed`` and the batch goes on; ``stop_event`` stops the running item (``stopped``,
    resumable) and the batch. ``progress`` shows a bar over prompts and one per stage (on the first process only).
    """
    if not items and not errors:
        raise UserError("no prompts to generate")
    plan = plan_batch(items, out_root, preset, overrides, model, resume, source, errors)
    return run_plan(plan, out_root, source, progress, callbacks, stop_event)


def run_plan(
    plan: Sequence[PlannedRun],
    out_root: Path,
    source: str = "prompts",
    progress: bool = False,
    callbacks: list[Callback] | None = None,
    stop_event: threading.Event | None = None,
) -> BatchResult:
    """Run a batch that :func:`~text3d.app.batch_plan.plan_batch` planned (see :func:`run_batch`)."""
    state = _process_state(plan[0].config)
    rank, world = state.process_index, state.num_processes
    manifest = Manifest(out_root, plan, rank, world)
    state.wait_for_everyone()  # every rank has read the earlier manifest before rank 0 rewrites it
    if state.is_main_process:
        manifest.start()
    state.wait_for_everyone()  # no rank writes its shard before rank 0 has cleared the old ones

    show = progress and state.is_local_main_process
    callbacks = [*(callbacks or []), *([TqdmCallback()] if show else [])]  # tqdm puts it below the bar over prompts
    mine = plan[rank::world]
    with tqdm(mine, desc="prompts", unit="prompt", position=0, disable=not show, dynamic_ncols=True) as bar:
        for run in bar:
            if stop_event is not None and stop_event.is_set():
                break
            record = _run_one(run, rank, manifest, callbacks, stop_event)
            if record["status"] == "failed":
                tqdm.write(f"text3d: {source}:{run.item.line} failed: {record['error']}", file=sys.stderr)
            manifest.update(record)

    state.wait_for_everyone()  # every shard is final
    if state.is_main_process:
        manifest.finish()
    state.wait_for_everyone()  # the final manifest is written
    return BatchResult(_read_jsonl(manifest.path), manifest.path, rank)


def _run_one(run: PlannedRun, rank: int, manifest: Manifest, callbacks: list[Callback],
             stop_event: threading.Event | None) -> dict:
    return manifest.skipped(run, rank) or generate_record(run, rank, callbacks, stop_event)


def generate_record(run: PlannedRun, rank: int, callbacks: list[Callback] | None = None,
                    stop_event: threading.Event | None = None, busy_wait: float = 0.0) -> dict:
    """Generate ``run`` (resuming it if it has started) and return its manifest record: ``failed`` with a one-line
    error rather than raising, so one bad prompt does not end the batch. A run directory another process holds is
    tried again every 5 s for up to ``busy_wait`` seconds."""
    t0 = time.perf_counter()
    deadline = time.monotonic() + busy_wait
    while True:
        try:
            resume = (run.run_dir / "config.yaml").exists()
            result = generate(run.config, run.run_dir, resume=resume, callbacks=callbacks, stop_event=stop_event)
            break
        except Exception as e:
            if isinstance(e, RunDirBusy) and time.monotonic() < deadline:
                time.sleep(5.0)
                continue
            if not isinstance(e, (UserError, TrainingError)):
                log.exception("%s failed", run.run_dir)  # unexpected: keep the traceback for a bug report
            return manifest_record(run, "failed", rank, round(time.perf_counter() - t0, 2), one_line(e))
    return manifest_record(run, "stopped" if result.stopped else "done", rank, round(time.perf_counter() - t0, 2))


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    if isinstance(e, (UserError, TrainingError)):
        return text
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _process_state(config: Text3DConfig) -> PartialState:
    """accelerate's process state, set up as the jobs' ``Accelerator`` will want it."""
    # On a CPU, accelerate only forms a (gloo) process group when asked for the CPU; otherwise every launched
    # process would see itself as the only one and run every prompt.
    cpu = config.trainer.device == "cpu" or not torch.cuda.is_available()
    state = PartialState(cpu=cpu, timeout=_BARRIER_TIMEOUT)
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and state.num_processes == 1:
        raise UserError(
            f"{launched} processes were launched but accelerate set up {state.num_processes}; "
            "launch with: accelerate launch --multi_gpu --num_processes N -m text3d batch ..."
        )
    return state
