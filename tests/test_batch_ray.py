"""``text3d batch --ray``: the prompts as tasks on a local Ray cluster (the loopback stands in for a cluster)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from test_batch import manifest, write

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
    f = write(tmp_path / "p.txt", "a red cube\na blue cube | guide.sds.model.model=/nonexistent\na green cube\n")
    out = tmp_path / "out"
    code = main(batch_args(f, out, tiny_sd_path, "--ray"))
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out.strip() == f"2 done, 0 skipped, 1 failed (see {out / 'manifest.jsonl'})"
    records = manifest(out)
    assert [r["status"] for r in records] == ["done", "failed", "done"]
    assert "/nonexistent" in records[1]["error"] and "\n" not in records[1]["error"]  # an application error
    assert [r["attempts"] for r in records] == [1, 1, 1]  # ... is not retried
    assert str(out / "a-red-cube-0" / "model.glb") in records[0]["outputs"]
    assert (out / "a-green-cube-0" / "model.glb").stat().st_size > 0
    assert all(r["seconds"] > 0 for r in records)
    assert not list(out.glob(".ray-probe-*"))  # the storage check cleans up

    code = main(batch_args(f, out, tiny_sd_path, "--ray"))
    assert code == 1
    assert capsys.readouterr().out.strip() == f"0 done, 2 skipped, 1 failed (see {out / 'manifest.jsonl'})"
    again = manifest(out)
    assert [r["skipped"] for r in again] == [True, False, True]
    assert again[0]["seconds"] == records[0]["seconds"]  # the earlier time is kept


def start_until_checkpoint(cmd, run) -> subprocess.Popen:
    """Start the batch ``cmd``; return once ``run`` has its first coarse checkpoint."""
    driver = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not list((run / "checkpoints").glob("coarse-*.pt")):
        if driver.poll() is not None or time.monotonic() > deadline:
            driver.kill()
            pytest.fail(f"no checkpoint in {run}: {driver.communicate()}")
        time.sleep(0.2)
    return driver


def test_a_killed_worker_is_retried_and_its_run_resumes_from_the_last_checkpoint(tmp_path, tiny_sd_path):
    f = write(tmp_path / "p.txt", "a red cube | coarse.max_steps=60 trainer.checkpoint_every=5\n")
    out = tmp_path / "out"
    run = out / "a-red-cube-0"
    driver = start_until_checkpoint([sys.executable, "-m", "text3d", *batch_args(f, out, tiny_sd_path, "--ray")], run)
    try:
        worker = int((run / ".lock").read_text().split()[0])  # the process holding the run: the Ray worker
        assert worker != driver.pid
        os.kill(worker, signal.SIGKILL)
        stdout, stderr = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, stderr[-3000:]
    assert stdout.strip().endswith(f"1 done, 0 skipped, 0 failed (see {out / 'manifest.jsonl'})")
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
    driver = start_until_checkpoint(cmd, run)
    try:
        driver.send_signal(signal.SIGINT)
        _, stderr = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
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

