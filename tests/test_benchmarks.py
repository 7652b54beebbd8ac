"""The GPU benchmark scripts run end to end on the CPU with a tiny model (their code, not their timings), so the
first run on a GPU machine does not fail on a renamed function or a changed stage."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_check  # a script folder, not a package


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_sds_step_measures_every_stage_against_the_floor(tiny_sd_path, tmp_path):
    out = tmp_path / "figures.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "sds_step.py"), "--cpu", "--model", str(tiny_sd_path),
           "--preset", "tiny-test", "--steps", "1", "--json", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
    (preset,) = json.loads(out.read_text())["presets"]
    assert preset["floor_ms"] == pytest.approx(preset["unet_cfg_ms"] + preset["vae_encode_fwd_bwd_ms"], abs=0.02)
    assert list(preset["stages"]) == ["coarse", "geometry", "texture"]
    for stage in preset["stages"].values():
        assert stage["step_ms"] > 0
        assert stage["ratio_to_floor"] == pytest.approx(stage["step_ms"] / preset["floor_ms"], rel=0.01)


def test_gpu_check_end_to_end_part_and_its_report(tiny_sd_path, tmp_path, monkeypatch):
    work = tmp_path / "work"
    (work / "model").parent.mkdir()
    (work / "model").symlink_to(tiny_sd_path)
    kept = []  # the stage figures handed over as each stage ends, for a run stopped before its end
    result = gpu_check.e2e_run("tiny-test", work, cuda=False, turntable=False, keep=kept.append)
    assert [list(k) for k in kept] == [["coarse"], ["coarse", "geometry"], ["coarse", "geometry", "texture"]]
    assert kept[-1] == result["stages"]
    assert set(result["stages"]) == {"coarse", "geometry", "texture"}
    assert all(s["steady_step_ms"] > 0 and s["full_steps"] == s["steps"] for s in result["stages"].values())
    assert result["fixed_seconds"] > 0
    stages = result["stages"].values()
    full = result["fixed_seconds"] + sum(s["steady_step_ms"] * s["full_steps"] / 1000 for s in stages)
    assert result["extrapolated_full_minutes"] == pytest.approx(full / 60, abs=0.01)

    junit = tmp_path / "junit.xml"
    junit.write_text(
        '<testsuites><testsuite><testcase classname="tests.t" name="ok"/><testcase classname="tests.t" name="bad">'
        '<failure message="AssertionError: 1 != 2">...</failure></testcase>'
        '<testcase classname="tests.t" name="skip"><skipped/></testcase></testsuite></testsuites>'
    )
    tests = gpu_check._junit_summary([junit])
    assert (tests["passed"], tests["failed"], tests["skipped"]) == (1, 1, 1)
    assert tests["failures"] == ["tests.t::bad: AssertionError: 1 != 2"]
    report = {"mode": "gpu", "started": "now", "seconds": 1.0, "parts": {
        "env": {"status": "ok", "seconds": 1.0, "gpu": "Test GPU", "torch": "2.11"},
        "tests": {"status": "failed", "seconds": 2.0, **tests, "output_tail": "1 failed"},
        "e2e": {"status": "timeout", "seconds": 3.0, "presets": {"tiny-test": result},
                "unfinished_presets": {"preview": kept[0]}},
    }}
    text = gpu_check.markdown(report)
    assert "## End to end, `preview`: stopped before its end" in text
    assert f"| coarse | {kept[0]['coarse']['steps']} |" in text.split("`preview`")[1]
    assert "## End to end, `tiny-test`" in text and f"{result['extrapolated_full_minutes']} min" in text
    assert "tests.t::bad" in text and "## tests: failed" in text
    assert "tiny-test:" in gpu_check.summary(report)


def test_gpu_check_kills_a_part_that_overruns_its_limit(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text("")
    cmd = [sys.executable, "-c", "import subprocess, sys, time; print('started', flush=True); "
           "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"]
    code, seconds, tail = gpu_check.run_logged(cmd, {}, 1.5, log, "part slow")
    assert code == 124 and seconds < 10
    assert "started" in tail and "killed after" in log.read_text()


def test_toy_sds_pull_prints_a_row_per_prompt_and_guidance():
    import toy_sds_pull

    images = torch.ones(1, 3, 12, 12)
    images[0, :, 4:8, 4:8] = 0.2  # a 4x4 object: its ring is the 3 pixels around it, the rest is background
    masks = toy_sds_pull.regions(images)
    assert masks["object"].sum() == 16 and masks["ring"].sum() == 10 * 10 - 16 and masks["background"].sum() == 44

    cmd = [sys.executable, str(REPO / "benchmarks" / "toy_sds_pull.py"), "--prompts", "green torus", "red cube",
           "--guidance", "1", "20", "--views", "2", "--draws", "2"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO).stdout.splitlines()
    rows = [line.split() for line in out[1:]]
    assert [(r[0], r[1], r[2]) for r in rows] == [("green", "torus", "1"), ("green", "torus", "20"),
                                                  ("red", "cube", "1"), ("red", "cube", "20")]
    values = [[float(v.rstrip(",")) for v in r[3:]] for r in rows]
    assert all(len(v) == 9 and all(abs(x) < 2 for x in v) for v in values)
    assert values[0] != values[1]  # the guidance scale changes the pull
    bad = subprocess.run([*cmd[:2], "--prompts", "teal torus"], check=False, capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "want 'COLOUR SHAPE'" in bad.stderr
