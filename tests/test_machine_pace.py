"""Sharing the machine and knowing its pace: the CPU threads a job picks, and the time a run announces at its start."""

from __future__ import annotations

import json

import pytest
import torch

from text3d.app import pace
from text3d.app.presets import load_config
from text3d.stage import cpu_threads
from text3d.stage.config import TrainerConfig
from text3d.stage.trainer import make_accelerator


@pytest.fixture
def no_omp_env(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


@pytest.mark.parametrize(("usage", "threads"), [([3.0, 5.0], 2), ([97.0, 4.0], 1), ([99.0, 100.0], 1),
                                                ([10.0, 80.0, 2.0, 60.0], 2)])
def test_a_job_takes_the_idle_cores(no_omp_env, monkeypatch, usage, threads):
    monkeypatch.setattr(cpu_threads.psutil, "cpu_percent", lambda interval, percpu: usage)
    assert cpu_threads.choose_cpu_threads(0) == threads


def test_a_set_thread_count_wins_over_the_machine_and_the_environment(monkeypatch):
    monkeypatch.setattr(cpu_threads.psutil, "cpu_percent", lambda interval, percpu: pytest.fail("sampled"))
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads.choose_cpu_threads(0) == 3  # the user's environment
    assert cpu_threads.choose_cpu_threads(5) == 5  # the config's key


def test_a_malformed_omp_setting_is_ignored(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")
    monkeypatch.setattr(cpu_threads.psutil, "cpu_percent", lambda interval, percpu: [0.0])
    assert cpu_threads.choose_cpu_threads(0) == 1


def test_the_accelerator_sets_torchs_threads():
    before = torch.get_num_threads()
    try:
        make_accelerator(TrainerConfig(device="cpu", cpu_threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def _metrics(coarse_seconds: float, steps: dict[str, int]) -> dict:
    seconds = {"coarse": coarse_seconds, "geometry": 2.0, "texture": 1.0}
    return {**{name: {"steps": n, "train_seconds": seconds[name]} for name, n in steps.items()},
            "export": {"faces": 10, "seconds": 3.0}}


def test_a_finished_runs_pace_estimates_the_next_run_with_other_step_counts(monkeypatch, tmp_path):
    monkeypatch.setenv("TEXT3D_CACHE_DIR", str(tmp_path))
    config = load_config("toy", ["coarse.max_steps=100", "geometry.max_steps=20", "texture.max_steps=10"])
    assert pace.estimate_seconds(config, 2) is None  # no run yet
    pace.record(config, 2, _metrics(10.0, {"coarse": 100, "geometry": 20, "texture": 10}), wall_seconds=20.0)
    assert pace.estimate_seconds(config, 2) == pytest.approx(20.0)
    # Twice the coarse steps, another prompt and seed: the pace per step carries over.
    longer = load_config("toy", ["coarse.max_steps=200", "geometry.max_steps=20", "texture.max_steps=10",
                                 "prompt.text=a blue sphere", "seed=7"])
    assert pace.estimate_seconds(longer, 2) == pytest.approx(30.0)
    # Another thread count, another resolution, a skipped stage: no measured pace, no guess.
    assert pace.estimate_seconds(config, 1) is None
    assert pace.estimate_seconds(load_config("toy", ["guide.sds.resolution=64"]), 2) is None
    assert pace.estimate_seconds(load_config("toy", ["texture.enabled=false"]), 2) is None


def test_a_damaged_pace_file_means_no_estimate_and_is_replaced(monkeypatch, tmp_path):
    monkeypatch.setenv("TEXT3D_CACHE_DIR", str(tmp_path))
    (tmp_path / "pace.json").write_text("{not json")
    config = load_config("toy", [])
    assert pace.estimate_seconds(config, 2) is None
    steps = {name: getattr(config, name).max_steps for name in ("coarse", "geometry", "texture")}
    pace.record(config, 2, _metrics(10.0, steps), wall_seconds=30.0)
    assert len(json.loads((tmp_path / "pace.json").read_text())) == 1
    assert pace.estimate_seconds(config, 2) == pytest.approx(30.0)


def test_a_second_run_like_the_first_announces_its_time(monkeypatch, tmp_path, capsys):
    from text3d.cli import main

    monkeypatch.setenv("TEXT3D_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tiny = ["--preset", "toy", "coarse.max_steps=3", "geometry.max_steps=1", "texture.max_steps=1",
            "geometry.tet_resolution=16", "export.turntable_frames=0", "trainer.cpu_threads=1"]
    assert main(["generate", "a red cube", "--out", str(tmp_path / "a"), *tiny]) == 0
    assert "text3d: about" not in capsys.readouterr().err  # nothing measured yet
    # Another prompt, more steps: the same pace per step, so an estimate.
    assert main(["generate", "a blue sphere", "--out", str(tmp_path / "b"), *tiny, "coarse.max_steps=30"]) == 0
    line = next(ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("text3d: about"))
    assert line.endswith("on this machine with 1 CPU thread(s), as its last run like this one"), line
    first = json.loads((tmp_path / "cache" / "pace.json").read_text())
    assert len(first) == 1 and set(next(iter(first.values()))["per_step"]) == {"coarse", "geometry", "texture"}
    # A resumed run says nothing: what is left is not the whole run.
    assert main(["generate", "a blue sphere", "--out", str(tmp_path / "b"), *tiny, "coarse.max_steps=30",
                 "--resume"]) == 0
    assert "text3d: about" not in capsys.readouterr().err


def test_the_ui_says_the_time_left_in_the_stage_and_to_the_end(monkeypatch, tmp_path):
    from text3d.stage.trainer import Progress
    from text3d.ui.app import job_status
    from text3d.ui.jobs import Job

    monkeypatch.setenv("TEXT3D_CACHE_DIR", str(tmp_path))
    config = load_config("toy", ["coarse.max_steps=100", "geometry.max_steps=20", "texture.max_steps=10"])
    job = Job(config, tmp_path)
    job.cpu_threads = 2
    job.progress = Progress("coarse", 0, 100)
    assert "estimating the time left" in job_status(job)  # no step timed yet: no "0:00 left"
    job.progress = Progress("coarse", 50, 100, elapsed=30.0)
    assert "about 0:30 left ·" in job_status(job)  # no finished run like it: the stage only
    pace.record(config, 2, _metrics(10.0, {"coarse": 100, "geometry": 20, "texture": 10}), wall_seconds=20.0)
    # The rest of this stage at its live pace, then geometry 2 s + texture 1 s + export 3 s as measured.
    assert "about 0:30 left (about 0:36 to the end) ·" in job_status(job)
    job.progress = Progress("texture", 5, 10, elapsed=4.0)
    assert "about 0:04 left (about 0:07 to the end) ·" in job_status(job)
