"""Hostile inputs and faults: every one ends in a clean one-line error or in correct behaviour, and nothing already
produced is lost (docs/reliability.md lists the promises and these tests)."""

from __future__ import annotations

import errno
import json
import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import trimesh

from text3d.app.jobs import generate as jobs_generate
from text3d.app.presets import load_config
from text3d.app.run_dir import RunDir
from text3d.cli import main
from text3d.errors import TrainingError, UserError, WriteFailed
from text3d.field.hashgrid import HashGridConfig, HashGridEncoding
from text3d.io import write_text
from text3d.renderer.cameras import spherical_cameras
from text3d.renderer.mesh import Mesh, MeshRenderer
from text3d.stage.geometry import DMTet

REPO = Path(__file__).resolve().parent.parent
TINY = str(REPO / "configs" / "tiny-test.yaml")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def cli(args: list[str], capsys) -> tuple[int, list[str]]:
    """Exit code and stderr's lines, the log's warnings left out (a run may warn on its way)."""
    code = main(args)
    return code, [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("WARNING: ")]


TINY_TOY = ["coarse.max_steps=4", "geometry.max_steps=2", "texture.max_steps=2", "geometry.tet_resolution=16",
            "coarse.renderer.occupancy.warmup_steps=1", "export.turntable_frames=2", "export.turntable_resolution=32",
            "trainer.checkpoint_every=2", "trainer.log_every=1"]
"""The toy preset cut down to seconds."""


def tiny_generate(out: Path, *extra: str) -> list[str]:
    return ["generate", "a red cube", "--preset", "toy", "--out", str(out), "--quiet", *TINY_TOY, *extra]


# --------------------------------------------------------------------------------------------------------------------
# Empty renders and vanished surfaces


def test_a_hash_encoding_of_no_points_is_empty():
    enc = HashGridEncoding(HashGridConfig(n_levels=3, log2_hashmap_size=8, base_resolution=2, max_resolution=8))
    assert enc(torch.zeros(0, 3)).shape == (0, 6)


def test_a_view_that_covers_nothing_shows_the_background():
    sphere = trimesh.creation.icosphere(subdivisions=1)
    mesh = Mesh(torch.tensor(sphere.vertices, dtype=torch.float32) * 0.1 + 5.0, torch.tensor(sphere.faces))
    one = torch.ones(1)
    camera = spherical_cameras(0 * one, 0 * one, 2 * one, 50 * one, 8, 8)  # looks at the origin, the mesh is behind
    asked = []
    out = MeshRenderer().render(mesh, camera, albedo=lambda p: asked.append(len(p)) or torch.zeros(len(p), 3))
    assert asked == [0]
    assert torch.equal(out["rgb"], torch.ones(1, 8, 8, 3)) and out["opacity"].sum() == 0


def test_a_one_pixel_geometry_camera_runs(tmp_path, capsys):
    code, err = cli(tiny_generate(tmp_path / "run", "geometry.camera.height=1", "geometry.camera.width=1"), capsys)
    assert code == 0, err
    assert (tmp_path / "run" / "model.glb").is_file()


def test_a_vanished_surface_stops_with_one_line_and_a_resume_with_new_settings_gets_past_it(
    tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    real = DMTet.init_from_density
    monkeypatch.setattr(DMTet, "init_from_density", lambda self, fn, level: self.sdf.data.fill_(1.0))
    code, err = cli(tiny_generate(out), capsys)
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith("text3d: error: geometry: the surface vanished (empty mesh); lower geometry.lr_sdf")
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["coarse-0000002.pt", "coarse-0000004.pt"]
    monkeypatch.setattr(DMTet, "init_from_density", real)
    # The geometry stage has not finished: its settings may change on --resume, the coarse stage's may not.
    code, err = cli([*tiny_generate(out, "coarse.lr_network=0.5"), "--resume"], capsys)
    assert code == 2 and "differs in coarse.lr_network" in err[-1]
    code, err = cli([*tiny_generate(out, "geometry.lr_sdf=0.0005", "trainer.cpu_threads=1"), "--resume"], capsys)
    assert code == 0, err
    assert "lr_sdf: 0.0005" in (out / "config.yaml").read_text()
    assert (out / "model.glb").is_file()


# --------------------------------------------------------------------------------------------------------------------
# One process per run directory; what a failed start leaves; temp files of killed writers


def test_a_second_process_on_a_held_run_directory_is_refused_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
         "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'%d' % os.getpid()); print('held', flush=True); "
         "time.sleep(60)", str(out / ".lock")],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        code, err = cli(tiny_generate(out), capsys)
        assert code == 2 and err[-1] == (
            f"text3d: error: {out} is in use by another text3d process (PID {holder.pid}); wait for it to end, "
            "or choose another --out"
        )
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing written
    finally:
        holder.kill()
        holder.wait()
    # A killed holder releases the lock.
    code, err = cli(tiny_generate(out), capsys)
    assert code == 0, err


def test_the_lock_is_held_while_a_job_runs(tmp_path):
    run = RunDir(tmp_path / "run")
    config = load_config(TINY)
    with run.hold(config):
        fd = os.open(tmp_path / "run" / ".lock", os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
        with pytest.raises(UserError, match=f"PID {os.getpid()}"):
            with RunDir(tmp_path / "run").hold(config, resume=True):
                pass


@pytest.mark.parametrize("existing", [False, True])
def test_a_job_that_fails_before_its_first_checkpoint_leaves_the_directory_as_it_found_it(tmp_path, existing):
    out = tmp_path / "run"
    if existing:
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    with pytest.raises(TrainingError, match="boom"):
        with RunDir(out).hold(load_config(TINY)):
            assert (out / "config.yaml").is_file()
            raise TrainingError("boom")
    if existing:
        assert sorted(p.name for p in out.iterdir()) == [".lock", "notes.txt"]
    else:
        assert not out.exists()


def test_a_failed_start_does_not_block_the_next_run(tmp_path, capsys):
    out = tmp_path / "run"
    code, err = cli(["generate", "a red cube", "--preset", "toy", "--out", str(out), "guide.sds.model.model=/nope"],
                    capsys)
    assert code == 2 and "does not exist" in err[-1]
    code, err = cli(tiny_generate(out), capsys)
    assert code == 0, err


def test_temp_files_of_killed_writes_are_removed_when_the_run_is_opened(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(tiny_generate(out), capsys)[0] == 0
    leftovers = [out / ".config.yaml.x1.tmp.yaml", out / "previews" / ".coarse-0000004.png.x2.tmp.png",
                 out / "checkpoints" / ".coarse-0000004.pt.x3.tmp.pt", out / ".model.glb.x4.tmp.glb"]
    for p in leftovers:
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"")
    code, err = cli(["export", str(out)], capsys)
    assert code == 0, err
    assert not any(p.exists() for p in leftovers)


# --------------------------------------------------------------------------------------------------------------------
# Write failures


def test_an_unwritable_output_is_one_line_before_the_run_starts(tmp_path, capsys):
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        if os.access(read_only, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root without CAP_DAC_OVERRIDE limits)")
        code, err = cli(tiny_generate(read_only / "run"), capsys)
        assert code == 2 and err[-1].startswith(f"text3d: error: cannot write {read_only / 'run'}: Permission denied")
    finally:
        read_only.chmod(0o755)


@pytest.mark.parametrize("out", ["/proc/self/run", "/dev/null/run"])
def test_an_impossible_output_path_is_one_line(out, capsys):
    code, err = cli(tiny_generate(Path(out)), capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("text3d: error: "), err


def test_an_empty_out_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "a red cube", "--preset", "toy", "--out", ""])
    assert exit_.value.code == 2 and "--out: an empty path" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_disk_full_checkpoint_stops_the_run_with_one_line_and_keeps_the_last_good_one(tmp_path, capsys,
                                                                                         monkeypatch):
    out = tmp_path / "run"
    real_save = torch.save
    saves = []

    def save(obj, f, *args, **kwargs):
        saves.append(f)
        if len(saves) == 2:  # the second checkpoint: the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    code, err = cli(tiny_generate(out), capsys)
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith("text3d: error: cannot write ") and err[0].endswith(
        "coarse-0000004.pt: No space left on device")
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["coarse-0000002.pt"]
    monkeypatch.setattr(torch, "save", real_save)
    code, err = cli([*tiny_generate(out), "--resume"], capsys)
    assert code == 0, err


def test_write_text_failure_names_the_file(tmp_path):
    target = tmp_path / "dir-is-a-file"
    target.write_text("x")
    with pytest.raises(WriteFailed, match=f"cannot write {target / 'a.txt'}: "):
        write_text(target / "a.txt", "hello")



# --------------------------------------------------------------------------------------------------------------------
# Export never silently replaces a finished asset with an earlier stage's


@pytest.fixture
def finished_run(tmp_path, capsys) -> Path:
    out = tmp_path / "run"
    assert cli(tiny_generate(out), capsys)[0] == 0
    return out


def snapshot(run: Path) -> dict[str, bytes]:
    return {name: (run / name).read_bytes() for name in ("model.glb", "model.png", "metrics.json")}


def test_export_with_an_unreadable_checkpoint_is_one_line_and_changes_nothing(finished_run, capsys):
    before = snapshot(finished_run)
    newest = sorted((finished_run / "checkpoints").glob("geometry-*.pt"))[-1]
    newest.write_bytes(b"torn")
    code, err = cli(["export", str(finished_run)], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith(f"text3d: error: checkpoint {newest} is unreadable")
    assert snapshot(finished_run) == before


def test_export_of_a_finished_run_without_a_stage_checkpoint_needs_from_stage(finished_run, capsys):
    before = snapshot(finished_run)
    for p in (finished_run / "checkpoints").glob("geometry-*.pt"):
        p.unlink()
    code, err = cli(["export", str(finished_run)], capsys)
    assert code == 2 and err[-1].startswith(f"text3d: error: {finished_run} has no geometry checkpoint")
    assert f"text3d export {finished_run} --from-stage coarse" in err[-1]
    assert snapshot(finished_run) == before
    code, err = cli(["export", str(finished_run), "--from-stage", "coarse"], capsys)
    assert code == 0, err
    assert json.loads((finished_run / "metrics.json").read_text())["export"]["from_stage"] == "coarse"


def test_export_of_a_finished_run_gives_the_same_bytes_and_keeps_its_scores(finished_run, capsys):
    before = snapshot(finished_run)
    assert cli(["export", str(finished_run)], capsys)[0] == 0
    after = snapshot(finished_run)
    assert after["model.glb"] == before["model.glb"] and after["model.png"] == before["model.png"]
    exported = json.loads(after["metrics.json"])["export"]
    kept = {k: v for k, v in json.loads(before["metrics.json"])["export"].items() if k != "seconds"}  # timed anew
    assert exported["from_stage"] == "texture" and exported.items() >= kept.items() and exported["seconds"] > 0


# --------------------------------------------------------------------------------------------------------------------
# Prompts, batch validation, progress


def test_control_characters_in_a_command_line_prompt_are_cleaned(tmp_path, capsys):
    out = tmp_path / "run"
    code, err = cli([*tiny_generate(out)[:1], "a red\x01cube\t", *tiny_generate(out)[2:]], capsys)
    assert code == 0, err
    assert load_config(out / "config.yaml").prompt.text == "a red cube"


def test_a_long_prompt_is_cut_in_error_lines(tmp_path, capsys):
    code, err = cli(["generate", "a red " + "x" * 10_000, "--preset", "toy", "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and len(err) == 1 and len(err[0]) < 500, err
    assert "a red xxx" in err[0] and "…" in err[0]


def test_batch_lists_every_bad_line_in_one_pass_and_runs_nothing(tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cube\na blue cube | seed=x\na green cube\na pink dog\na red cube | coarse.max_step=3\n")
    code = main(["batch", str(prompts), "--preset", "toy", "--out-root", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[0] == "text3d: error: 3 bad lines, nothing was run:"
    assert [line.split(": ", 1)[0].strip() for line in err[1:]] == [f"{prompts}:{n}" for n in (2, 4, 5)]
    assert "seed must be an integer" in err[1] and "does not know the prompt 'a pink dog'" in err[2]
    assert "unknown key 'coarse.max_step'" in err[3]
    assert not (tmp_path / "out").exists()


def test_the_eta_after_a_resume_uses_the_pace_since_the_resume():
    from text3d.stage.trainer import Progress

    assert Progress("coarse", 50, 100, start_step=50, earlier=300.0).eta is None  # nothing done yet: no guess
    p = Progress("coarse", 60, 100, elapsed=10.0, start_step=50, earlier=300.0)
    assert p.eta == pytest.approx(40.0) and p.seconds == pytest.approx(310.0)


def test_train_seconds_add_up_across_resumes(tmp_path, capsys):
    from text3d.stage.trainer import Callback

    class StopAt(Callback):
        def __init__(self, event):
            self.event = event

        def on_step(self, progress):
            if progress.stage == "coarse" and progress.step == 2:
                self.event.set()

    import threading

    config = load_config("toy", [*TINY_TOY, "prompt.text=a red cube"])
    stop = threading.Event()
    first = jobs_generate(config, tmp_path / "run", callbacks=[StopAt(stop)], stop_event=stop)
    assert first.stopped
    earlier = torch.load(tmp_path / "run" / "checkpoints" / "coarse-0000002.pt", weights_only=False)["seconds"]
    assert earlier > 0
    second = jobs_generate(config, tmp_path / "run", resume=True)
    assert second.metrics["coarse"]["train_seconds"] > earlier
    assert second.metrics["coarse"]["cpu_threads"] == torch.get_num_threads()


# --------------------------------------------------------------------------------------------------------------------
# The web UI's run directories


def test_a_run_that_failed_after_a_checkpoint_is_not_resumed_by_the_ui(tmp_path):
    from text3d.ui.runs import choose_run_dir

    config = load_config(TINY, ["prompt.text=a red cube"])
    run = RunDir(tmp_path / "a-red-cube-0")
    with pytest.raises(TrainingError, match="boom"):
        with run.hold(config):
            (run.path / "checkpoints").mkdir()
            (run.path / "checkpoints" / "coarse-0000003.pt").write_bytes(b"x")
            raise TrainingError("boom")
    assert (run.path / ".failed").read_text().strip() == "TrainingError: boom"
    assert choose_run_dir(tmp_path, config) == (tmp_path / "a-red-cube-0-2", False)
    (run.path / ".failed").unlink()
    assert choose_run_dir(tmp_path, config) == (run.path, True)  # a stopped run of the same config resumes


def test_links_and_long_names_in_the_output_root_are_refused(tmp_path, caplog):
    from text3d.ui.runs import RunView, resolve_run

    run = tmp_path / "r-0"
    (run / "previews").mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 0\n")
    (run / "contact_sheet.png").symlink_to("/etc/passwd")
    (run / "previews" / "coarse-0000004.png").write_bytes(b"png")
    (run / "previews" / ".coarse-0000008.png.x.tmp.png").write_bytes(b"")
    view = RunView.of(run)
    assert view.contact_sheet is None and "symbolic link" in caplog.text
    assert view.preview == run / "previews" / "coarse-0000004.png"  # never a temp file
    (run / "model.glb").write_bytes(b"glTF")
    (run / "model.meshopt.glb").write_bytes(b"glTF")
    (run / ".model.draco.glb.x.tmp.glb").write_bytes(b"")
    (run / "model.draco.glb").symlink_to("/etc/passwd")
    assert RunView.of(run).downloads() == [run / "model.glb", run / "model.meshopt.glb"]
    with pytest.raises(UserError, match=r"no run named 'x{60}…'"):
        resolve_run(tmp_path, "x" * 10_000)


def test_the_ui_caps_the_steps_of_a_job():
    from text3d.ui.app import job_config

    base = load_config(TINY, ["prompt.text=a red cube"])
    assert job_config(base, "a red cube", "", 0, 100, 7.5, max_steps=100).coarse.max_steps == 100
    with pytest.raises(UserError, match="Steps must be at most 100 on this server"):
        job_config(base, "a red cube", "", 0, 101, 7.5, max_steps=100)
    with pytest.raises(UserError, match="'seed'"):
        job_config(base, "a red cube", "", 2**64, 10, 7.5, max_steps=100)


# --------------------------------------------------------------------------------------------------------------------
# What held, kept


def test_kill_9_mid_stage_then_resume_gives_the_same_asset_as_an_uninterrupted_run(tmp_path):
    # One thread count for both runs: the float sums, and so the bytes, depend on it.
    args = ["--preset", "toy", "--quiet", *TINY_TOY, "coarse.max_steps=30", "trainer.checkpoint_every=3",
            "trainer.cpu_threads=2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    def generate_cmd(out: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "text3d", "generate", "a red cube", "--out", str(out), *args, *extra]

    subprocess.run(generate_cmd(tmp_path / "whole"), check=True, env=env, capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(generate_cmd(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = killed / "checkpoints" / "coarse-0000006.pt"
    while not first.exists():
        assert proc.poll() is None, "the run ended before it could be killed"
    proc.kill()  # SIGKILL: no handler runs, a write may be torn
    proc.wait()
    assert not (killed / "model.glb").exists()
    subprocess.run(generate_cmd(killed, "--resume"), check=True, env=env, capture_output=True)
    assert (killed / "model.glb").read_bytes() == (tmp_path / "whole" / "model.glb").read_bytes()


def test_every_test_that_docs_reliability_names_exists():
    import re

    doc = (REPO / "docs" / "reliability.md").read_text()
    names = set(re.findall(r"`(test_[a-z0-9_]+)`", doc))
    source = "".join(p.read_text() for p in (REPO / "tests").glob("test_*.py"))
    assert len(names) >= 25
    assert sorted(n for n in names if f"def {n}(" not in source) == []


@pytest.mark.parametrize(
    "option, message",
    [(["--seed", str(2**64)], "--seed must be >= 0 and <= 9223372036854775807"),
     (["--resolution", "100000"], "--resolution must be >= 1 and <= 4096"),
     (["--train-views", "0"], "--train-views must be >= 1")],
)
def test_make_dataset_options_out_of_range_are_one_line(tmp_path, capsys, option, message):
    code, err = cli(["make-dataset", str(tmp_path / "d"), *option], capsys)
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "d").exists()
