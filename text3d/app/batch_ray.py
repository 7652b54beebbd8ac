"""Batch runs on a Ray cluster: one Ray task per prompt, taken by whichever worker is free, retried on a lost worker.

The driver (the ``text3d batch --ray`` process) plans every item as :mod:`text3d.app.batch` does, checks that every
node sees the output root (it must be shared storage: NFS or the like, mounted at the same path), then submits one
task per unfinished run. A task asks for one GPU on a cluster that has GPUs, else ``cpus`` CPUs, and runs the ordinary
single-run pipeline into its run directory. Faults:

- A worker or node that dies takes its task with it; Ray runs the task again (``retries`` times at most) and the
  new attempt resumes the run from its last checkpoint. A run directory still locked by the dead attempt (an NFS lock
  outlives its client by the server's lease) is waited for.
- An application error (a bad prompt, a diverged run) is not retried: it is recorded as ``failed``.
- Ctrl-C on the driver cancels the outstanding tasks; their runs keep their checkpoints and resume on the next
  invocation, which also skips every finished run.

Only the driver writes ``manifest.jsonl``, atomically, after every finished task.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from text3d.app.batch import BatchResult, Manifest, generate_record, manifest_record, one_line
from text3d.app.batch_plan import PlannedRun
from text3d.errors import UserError

# How long a retried task waits for its run directory's lock: a lock held over NFS by a dead node is released when
# the server's lease for that client expires (90 s by default on Linux NFSv4 servers).
LOCK_WAIT_SECONDS = 300.0


def run_plan_on_ray(
    plan: Sequence[PlannedRun],
    out_root: Path,
    address: str | None = None,
    source: str = "prompts",
    progress: bool = False,
    cpus: int = 1,
    retries: int = 3,
) -> BatchResult:
    """Run a planned batch as Ray tasks on the cluster at ``address`` (``auto``: the running one; ``host:port`` or
    ``ray://host:port``; None: Ray's rule, the cluster ``ray start`` started on this machine, else a new local one,
    shut down at the end). See the module docstring."""
    import ray

    _connect(ray, address)
    try:
        nodes = [n for n in ray.nodes() if n["Alive"]]
        gpus = ray.cluster_resources().get("GPU", 0) > 0
        resources = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": cpus}
        largest = max((n["Resources"].get("CPU", 0) for n in nodes), default=0)
        if not gpus and largest < cpus:
            raise UserError(f"--ray-cpus {cpus}: the largest node of the Ray cluster has {largest:g} CPUs; no task "
                            "would ever start")
        out_root.mkdir(parents=True, exist_ok=True)
        _check_shared_storage(ray, nodes, out_root)
        manifest = Manifest(out_root, plan, rank=0, world=1)
        manifest.start()
        # On the driver's node: a node that dies must not take the record of every run's attempts with it.
        here = _on_node(ray.get_runtime_context().get_node_id())
        tracker = ray.remote(num_cpus=0)(Tracker).options(scheduling_strategy=here).remote()
        task = ray.remote(_generate_task).options(**resources, max_retries=retries, retry_exceptions=False)
        pending = {}
        for run in plan:
            skipped = manifest.skipped(run, 0)
            if skipped:
                manifest.update(skipped)
            else:
                pending[task.remote(run, tracker)] = run
        _drive(ray, pending, manifest, tracker, source, progress, total=len(plan))
    finally:
        ray.shutdown()
    manifest.finish()
    return BatchResult(manifest.merged(), manifest.path, 0)


def _connect(ray, address: str | None) -> None:
    where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
    if address not in (None, "auto"):
        # Ray retries an unreachable address for minutes, logging as it goes: ask the network first.
        problem = _unreachable(address)
        if problem:
            raise UserError(f"cannot connect to {where}: {problem}")
    try:
        # Worker output goes to each run's log.txt; echoed here it would tear through the progress bar.
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise UserError(f"cannot connect to {where}: {_refused_token(ray, e) or one_line(e)}") from None


def _refused_token(ray, error: BaseException) -> str | None:
    """What to do when ``error`` (from ``ray.init``) comes from a cluster that refused this process's auth token."""
    while error is not None:
        # Ray 2.60 reports the GCS's refusal as text inside a RuntimeError, not always as the exception itself.
        if isinstance(error, ray.exceptions.AuthenticationError) or "InvalidAuthToken" in str(error):
            return ("it refused this machine's authentication token: give the cluster's token in RAY_AUTH_TOKEN, in "
                    "a file named by RAY_AUTH_TOKEN_PATH, or in ~/.ray/auth_token")
        error = error.__cause__ or error.__context__
    return None


def _unreachable(address: str, timeout: float = 10.0) -> str | None:
    """Why no TCP connection opens to ``address`` (``host:port`` or ``ray://host:port``); None when one does."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return "expected auto, host:port or ray://host:port"
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        return e.strerror or str(e) or type(e).__name__
    return None


def _on_node(node_id: str):
    """A Ray scheduling strategy: on that node and no other."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id, soft=False)


def _check_shared_storage(ray, nodes: list[dict], out_root: Path) -> None:
    """Every node (of ``ray.nodes()``) must see the driver's ``out_root``: a token the driver writes is read back on
    each."""
    token = secrets.token_hex(8)
    probe = out_root / f".ray-probe-{token}"
    probe.write_text(token)
    try:
        check = ray.remote(num_cpus=0)(_sees_token)
        refs = {}
        for n in nodes:
            on_node = check.options(scheduling_strategy=_on_node(n["NodeID"]))
            refs[n["NodeManagerAddress"]] = on_node.remote(str(probe), token)
        for node, ref in refs.items():
            problem = ray.get(ref)
            if problem:
                raise UserError(f"Ray node {node} cannot use --out-root {out_root} ({problem}); put it on storage "
                                "that every node mounts at the same path")
    finally:
        probe.unlink(missing_ok=True)


def _sees_token(probe: str, token: str) -> str | None:
    """On one node: None when ``probe`` holds ``token`` and its folder is writable there, else why not."""
    path = Path(probe)
    try:
        if path.read_text() != token:
            return "another folder of the same name"
        mine = path.with_name(f"{path.name}-{socket.gethostname()}-{os.getpid()}")
        mine.write_text(token)
        mine.unlink()
    except FileNotFoundError:
        return "not there: a local folder, not shared storage"
    except OSError as e:
        return e.strerror or type(e).__name__
    return None


def _drive(ray, pending: dict, manifest: Manifest, tracker, source: str, progress: bool, total: int) -> None:
    """Collect finished tasks into the manifest as they come; show what each worker runs; Ctrl-C cancels the rest."""
    counts = {"done": 0, "failed": 0}
    shown: dict[str, tuple[str, int]] = {}
    with tqdm(total=total, initial=total - len(pending), desc="prompts", unit="prompt", disable=not progress,
              dynamic_ncols=True) as bar:
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=1.0, fetch_local=False)
                running = ray.get(tracker.running.remote())  # after the wait: it knows every finished task's attempts
                for ref in ready:
                    run = pending.pop(ref)
                    attempts = max(running.get(str(run.run_dir), ("", 1))[1], 1)  # a task's report may come late
                    record = {**_result(ray, ref, run), "attempts": attempts}
                    manifest.update(record)
                    counts["done" if record["status"] == "done" else "failed"] += 1
                    shown.pop(str(run.run_dir), None)
                    if record["status"] == "failed":
                        tqdm.write(f"text3d: {source}:{run.item.line} failed: {record['error']}", file=sys.stderr)
                    bar.update(1)
                pending_dirs = {str(r.run_dir) for r in pending.values()}
                for run_dir, (worker, attempt) in running.items():
                    if run_dir in pending_dirs and shown.get(run_dir) != (worker, attempt):
                        shown[run_dir] = (worker, attempt)  # a new start: a free worker, or a retry after a lost one
                        if progress:
                            again = f" (attempt {attempt})" if attempt > 1 else ""
                            tqdm.write(f"{worker}: {Path(run_dir).name}{again}", file=sys.stderr)
                retrying = sum(1 for _, attempt in shown.values() if attempt > 1)
                bar.set_postfix(done=counts["done"], failed=counts["failed"], retrying=retrying, refresh=False)
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref)  # raises KeyboardInterrupt in the task: the run stops; its checkpoints stay
            for run in pending.values():
                manifest.update(manifest_record(run, "stopped", 0))
            raise


def _result(ray, ref, run: PlannedRun) -> dict:
    """The task's manifest record; a task whose workers kept dying is ``failed`` with Ray's reason."""
    try:
        return ray.get(ref)
    except (ray.exceptions.RayError, OSError) as e:
        reason = " ".join(str(e).split())[:300]
        return manifest_record(run, "failed", 0, error=f"the Ray task was lost: {type(e).__name__}: {reason}")


class Tracker:
    """A Ray actor: which worker runs which run directory, and how many attempts each run has had."""

    def __init__(self) -> None:
        self.attempts: dict[str, int] = {}
        self.workers: dict[str, str] = {}

    def started(self, run_dir: str, worker: str) -> None:
        self.attempts[run_dir] = self.attempts.get(run_dir, 0) + 1
        self.workers[run_dir] = worker

    def running(self) -> dict[str, tuple[str, int]]:
        return {run_dir: (worker, self.attempts[run_dir]) for run_dir, worker in self.workers.items()}


def _generate_task(run: PlannedRun, tracker) -> dict:
    """One Ray task: generate ``run`` (resuming it from its last checkpoint if an earlier attempt made one)."""
    logging.getLogger("text3d").setLevel(logging.INFO)  # as the CLI sets it: the run's log.txt gets the same lines
    # Not waited for: a task blocked in ray.get lends its CPUs to the next task, which would then run alongside it.
    tracker.started.remote(str(run.run_dir), f"{socket.gethostname()}:{os.getpid()}")
    return generate_record(run, 0, busy_wait=LOCK_WAIT_SECONDS)
