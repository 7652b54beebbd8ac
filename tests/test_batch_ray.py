"""``text3d batch --ray``: the prompts as tasks on a local Ray cluster (the loopback stands in for a cluster)."""

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import psutil
import pytest
from test_batch import manifest, write
from test_export import validate

from text3d.app import batch_ray
from text3d.cli import main

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def batch_args(prompts, out, model, *more):
    return ["batch", str(prompts), "--out-root", str(out), "--preset", "tiny-test", "--model", str(model), "--quiet",
            *more]


def test_a_ray_batch_runs_every_prompt_records_failures_and_a_rerun_skips_the_finished(tmp_path, tiny_sd_path,
                                                                                      capsys):
    f = write(tmp_path / "p.txt", "a red cube\na green cube\na blue cube | guide.sds.model.model=/nonexistent\n")
    out = tmp_path / "out"
    code = main(batch_args(f, out, tiny_sd_path, "--ray", "--ray-cpus", "2"))  # every CPU here: one task at a time
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out.strip() == f"2 done, 0 skipped, 1 failed (see {out / 'manifest.jsonl'})"
    records = manifest(out)
    assert [r["status"] for r in records] == ["done", "done", "failed"]
    assert "/nonexistent" in records[2]["error"] and "\n" not in records[2]["error"]  # an application error
    assert [r["attempts"] for r in records] == [1, 1, 1]  # ... is not retried
    assert str(out / "a-red-cube-0" / "model.glb") in records[0]["outputs"]
    assert (out / "a-green-cube-0" / "model.glb").stat().st_size > 0
    assert all(r["seconds"] > 0 for r in records[:2])
    assert not list(out.glob(".ray-probe-*"))  # the storage check cleans up
    first, second = (log_span(out / name / "log.txt") for name in ("a-red-cube-0", "a-green-cube-0"))
    assert min(first[1], second[1]) <= max(first[0], second[0])  # the two runs did not overlap

    code = main(batch_args(f, out, tiny_sd_path, "--ray"))
    assert code == 1
    assert capsys.readouterr().out.strip() == f"0 done, 2 skipped, 1 failed (see {out / 'manifest.jsonl'})"
    again = manifest(out)
    assert [r["skipped"] for r in again] == [True, True, False]
    assert again[0]["seconds"] == records[0]["seconds"]  # the earlier time is kept


def log_span(log: Path) -> tuple[datetime, datetime]:
    """The times of the first and the last line of a run's ``log.txt``."""
    lines = log.read_text().splitlines()
    return tuple(datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f") for line in (lines[0], lines[-1]))


@contextlib.contextmanager
def batch_driver(cmd, env=None):
    """The batch ``cmd`` started as a process (``text3d batch --ray``, the Ray driver); killed if a test leaves it."""
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield driver
    finally:
        if driver.poll() is None:
            driver.kill()


def wait_for(driver: subprocess.Popen, found, what: str, seconds: float = 240):
    """Poll ``found()`` until it gives something (returned) while ``driver`` runs."""
    deadline = time.monotonic() + seconds
    while not (result := found()):
        if driver.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no {what}: {driver.communicate()}")
        time.sleep(0.1)
    return result


def kill_and_finish(driver: subprocess.Popen, pids, out: Path, runs: int) -> None:
    """SIGKILL ``pids``; the batch must then end with all its ``runs`` done."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    stdout, stderr = driver.communicate(timeout=600)
    assert driver.returncode == 0, stderr[-3000:]
    assert stdout.strip().endswith(f"{runs} done, 0 skipped, 0 failed (see {out / 'manifest.jsonl'})")


def test_a_killed_worker_is_retried_and_its_run_resumes_from_the_last_checkpoint(tmp_path, tiny_sd_path):
    f = write(tmp_path / "p.txt", "a red cube | coarse.max_steps=60 trainer.checkpoint_every=5\n")
    out = tmp_path / "out"
    run = out / "a-red-cube-0"
    with batch_driver([sys.executable, "-m", "text3d", *batch_args(f, out, tiny_sd_path, "--ray")]) as driver:
        wait_for(driver, lambda: list(run.glob("checkpoints/coarse-*.pt")), "checkpoint")
        worker = int((run / ".lock").read_text().split()[0])  # the process holding the run: the Ray worker
        assert worker != driver.pid
        kill_and_finish(driver, [worker], out, runs=1)
    (record,) = manifest(out)
    assert record["status"] == "done" and record["error"] is None and record["attempts"] == 2
    log = (run / "log.txt").read_text()
    assert "coarse: resumed from coarse-" in log  # the second attempt went on from the checkpoint
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["coarse"]["steps"] == 60


def test_ctrl_c_cancels_the_tasks_and_the_runs_resume_on_the_next_invocation(tmp_path, tiny_sd_path):
    f = write(tmp_path / "p.txt", "a red cube | coarse.max_steps=200 trainer.checkpoint_every=5\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "text3d", *batch_args(f, out, tiny_sd_path, "--ray")]
    run = out / "a-red-cube-0"
    with batch_driver(cmd) as driver:
        wait_for(driver, lambda: list(run.glob("checkpoints/coarse-*.pt")), "checkpoint")
        driver.send_signal(signal.SIGINT)
        _, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 130, stderr[-3000:]
    assert "interrupted" in stderr
    assert [r["status"] for r in manifest(out)] == ["stopped"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "coarse: resumed from coarse-" in (run / "log.txt").read_text()
    assert [r["status"] for r in manifest(out)] == ["done"]


def test_the_storage_probe_tells_a_local_folder_from_shared_storage(tmp_path):
    probe = tmp_path / ".ray-probe-x"
    assert batch_ray._sees_token(str(probe), "abc") == "not there: a local folder, not shared storage"
    probe.write_text("other")
    assert batch_ray._sees_token(str(probe), "abc") == "another folder of the same name"
    probe.write_text("abc")
    assert batch_ray._sees_token(str(probe), "abc") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ray-probe-x"]  # its own write is removed


def test_bad_ray_options_are_one_line_errors(tmp_path, tiny_sd_path, capsys, monkeypatch):
    f = write(tmp_path / "p.txt", "a red cube\n")
    with pytest.raises(SystemExit) as exit_:
        main(batch_args(f, tmp_path / "out", tiny_sd_path, "--ray", "--ray-cpus", "0"))
    assert exit_.value.code == 2 and "--ray-cpus: 0 is below 1" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(batch_args(f, tmp_path / "out", tiny_sd_path, "--ray")) == 2
    assert capsys.readouterr().err.strip() == (
        "text3d: error: --ray runs the whole batch from one process: start it without accelerate launch")
    monkeypatch.delenv("WORLD_SIZE")
    code = main(batch_args(f, tmp_path / "out", tiny_sd_path, "--ray", "host-that-does-not-exist:6379"))
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("text3d: error: cannot connect to the Ray cluster at host-that-does-not-exist:6379")
    assert not (tmp_path / "out").exists()
    # A prompt the toy model cannot draw is no task to retry or record: the batch stops before Ray starts.
    oov = write(tmp_path / "oov.txt", "a red cube\na red spaceship\n")
    assert main(["batch", str(oov), "--out-root", str(tmp_path / "out"), "--preset", "toy", "--ray"]) == 2
    assert capsys.readouterr().err.startswith(
        f"text3d: error: {oov}:2: the bundled toy model does not know the prompt 'a red spaceship'")
    assert not (tmp_path / "out").exists()
    assert main(batch_args(f, tmp_path / "out", tiny_sd_path, "--ray", "--ray-cpus", "4096")) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        "text3d: error: --ray-cpus 4096: the largest node of the Ray cluster has ")
    assert not (tmp_path / "out").exists()


@pytest.fixture
def two_nodes():
    """A Ray cluster of two nodes on 127.0.0.1 (see loopback_cluster.py): (its address, the PID of the second node's
    raylet, the environment a driver needs: the cluster's auth token)."""
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "HF_HUB_OFFLINE": "1"}
    cluster = subprocess.Popen([sys.executable, str(Path(__file__).with_name("loopback_cluster.py"))], env=env,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        started = json.loads(cluster.stdout.readline() or "{}")
        assert "address" in started, "the loopback cluster did not start"
        yield started["address"], started["second_raylet"], env
    finally:
        cluster.stdin.close()
        try:
            cluster.wait(timeout=60)
        except subprocess.TimeoutExpired:
            cluster.kill()


def test_two_nodes_run_every_prompt_once_and_a_dead_node_s_prompt_resumes_on_the_other(tmp_path, tiny_sd_path,
                                                                                      two_nodes):
    address, second_raylet, env = two_nodes
    lines = [f"a {c} {s} | coarse.max_steps=40 trainer.checkpoint_every=5\n" for c in ("red", "green", "blue")
             for s in ("cube", "ball")]
    f = write(tmp_path / "p.txt", "".join(lines))
    out = tmp_path / "out"
    stranger = subprocess.run([sys.executable, "-m", "text3d", *batch_args(f, out, tiny_sd_path, "--ray", address)],
                              env={**env, "RAY_AUTH_TOKEN": "not-the-token"}, capture_output=True, text=True,
                              timeout=120, check=False)
    assert stranger.returncode == 2
    assert stranger.stderr.strip().splitlines()[-1] == (
        f"text3d: error: cannot connect to the Ray cluster at {address}: it refused this machine's authentication "
        "token: give the cluster's token in RAY_AUTH_TOKEN, in a file named by RAY_AUTH_TOKEN_PATH, or in "
        "~/.ray/auth_token")

    with batch_driver([sys.executable, "-m", "text3d", *batch_args(f, out, tiny_sd_path, "--ray", address)],
                      env) as driver:

        def second_node_run():
            """(a run held by a worker of the second node, with a checkpoint; that node's PIDs), or None."""
            node = psutil.Process(second_raylet)
            pids = {second_raylet, *(p.pid for p in node.children(recursive=True))}
            for lock in out.glob("*/.lock"):
                with contextlib.suppress(ValueError, IndexError, FileNotFoundError):
                    if int(lock.read_text().split()[0]) in pids and list(lock.parent.glob("checkpoints/coarse-*")):
                        return lock.parent, pids
            return None

        victim, pids = wait_for(driver, second_node_run, "run with a checkpoint on the second node")
        kill_and_finish(driver, pids, out, runs=6)  # every process of the second node
    records = manifest(out)
    assert [r["status"] for r in records] == ["done"] * 6 and len({r["run_dir"] for r in records}) == 6
    for record in records:
        run = Path(record["run_dir"])
        assert (run / "model.glb").read_bytes()[:4] == b"glTF"
        starts = (run / "log.txt").read_text().count("INFO text3d.app.jobs: generate: 'a ")  # the pipeline's starts
        assert starts == record["attempts"] == (2 if run == victim else 1), (run.name, starts, record["attempts"])
    assert "coarse: resumed from coarse-" in (victim / "log.txt").read_text()
    for record in records:  # last: it skips the test where the Khronos validator is not installed
        assert validate(Path(record["run_dir"]) / "model.glb")["numErrors"] == 0
