import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
import yaml

from text3d.app.schema import Text3DConfig
from text3d.cli import main
from text3d.config import field_docs

TINY = "tiny-test"  # found in the repo's configs/
REPO = Path(__file__).resolve().parent.parent


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv", [["--help"], ["reconstruct", "--help"], ["make-dataset", "--help"]])
def test_help_works_from_the_console_script(argv):
    proc = subprocess.run([sys.executable, "-m", "text3d", *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "usage: text3d" in proc.stdout


def test_import_does_not_pull_optional_backends():
    code = (
        "import sys, text3d, text3d.cli, text3d.app.jobs;"
        "bad = [m for m in ('tinycudann', 'nvdiffrast', 'gradio') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_config_key_is_documented():
    docs = field_docs(Text3DConfig)
    missing = [k for k, v in docs.items() if not v.strip()]
    assert len(docs) > 40 and missing == []


@pytest.mark.parametrize(
    "override, message",
    [
        ("coarse.max_step=5", r"unknown key 'coarse\.max_step'.*did you mean 'coarse\.max_steps'"),
        ("coarse.max_steps=abc", r"'coarse\.max_steps' expects int"),
        ("coarse.lr_encoding=-1", r"'coarse\.lr_encoding' must be > 0"),
        ("coarse.renderer.shading=shiny", r"'coarse\.renderer\.shading'"),
        ("coarse.camera.fov_range=[70,40]", r"coarse\.camera"),
        ("export.compress=[meshopt,draco]", r"'export': compress takes one geometry codec"),
    ],
)
def test_config_errors_are_one_line_with_exit_code_2(override, message, tiny_dataset, tmp_path, capsys):
    code, out, err = run(["reconstruct", str(tiny_dataset), "--out", str(tmp_path / "r"), override], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("text3d: error: config:")
    assert re.search(message, err), err
    assert not (tmp_path / "r").exists()  # nothing written for a bad config


def test_reconstruct_end_to_end_then_refuse_overwrite_then_resume(tiny_dataset, tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, out, err = run(["reconstruct", str(tiny_dataset), "--out", str(out_dir), "--preset", TINY, "--quiet"], capsys)
    assert code == 0, err
    metrics = json.loads((out_dir / "metrics.json").read_text())["coarse"]
    assert metrics["psnr"] > 8.0 and len(metrics["psnr_per_view"]) == 3
    mesh = trimesh.load(out_dir / "coarse.glb", force="mesh")
    assert len(mesh.faces) > 0 and mesh.visual.kind == "vertex"
    saved = yaml.safe_load((out_dir / "config.yaml").read_text())
    assert saved["data"]["path"] == str(tiny_dataset) and saved["coarse"]["max_steps"] == 6
    assert (out_dir / "log.txt").exists()
    previews = sorted(p.name for p in (out_dir / "previews").iterdir())
    assert previews == ["coarse-0000003.png", "coarse-0000006.png", "geometry-0000003.png", "texture-0000003.png"]
    for name in ("model.glb", "model.obj", "model.mtl", "model.png", "turntable.mp4", "contact_sheet.png"):
        assert (out_dir / name).stat().st_size > 0, name
    exported = json.loads((out_dir / "metrics.json").read_text())["export"]
    assert exported["faces"] > 0 and len(exported["psnr_per_view"]) == 3

    before = {p: p.stat().st_mtime_ns for p in out_dir.rglob("*") if p.is_file()}
    code, _, err = run(["reconstruct", str(tiny_dataset), "--out", str(out_dir), "--preset", TINY], capsys)
    assert code == 2 and "already holds a run" in err
    assert {p: p.stat().st_mtime_ns for p in out_dir.rglob("*") if p.is_file()} == before

    code, _, err = run(
        ["reconstruct", str(tiny_dataset), "--out", str(out_dir), "--preset", TINY, "--resume", "seed=3"], capsys
    )
    assert code == 2 and "config differs in seed" in err

    code, out, err = run(["reconstruct", str(tiny_dataset), "--out", str(out_dir), "--preset", TINY, "--resume"], capsys)
    assert code == 0, err
    assert "test PSNR" in out


def test_bad_dataset_and_bad_output_paths(tmp_path, capsys):
    code, _, err = run(["reconstruct", str(tmp_path / "nope"), "--preset", TINY], capsys)
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    code, _, err = run(["make-dataset", str(tmp_path / "full")], capsys)
    assert code == 2 and "not an empty folder" in err
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    code, _, err = run(["reconstruct", str(tmp_path), "--preset", "no-such-preset"], capsys)
    assert code == 2 and "preset" in err


def test_config_command_prints_resolved_yaml_and_keys(capsys):
    code, out, _ = run(["config", "--preset", TINY, "seed=5"], capsys)
    assert code == 0 and yaml.safe_load(out)["seed"] == 5
    code, out, _ = run(["config", "--keys"], capsys)
    assert code == 0 and "coarse.field.encoding.log2_hashmap_size" in out


def test_export_rebuilds_the_files_from_checkpoints(tiny_dataset, tmp_path, capsys):
    out_dir = tmp_path / "run"
    assert main(["reconstruct", str(tiny_dataset), "--out", str(out_dir), "--preset", TINY, "--quiet"]) == 0
    for name in ("model.glb", "model.obj", "model.png", "turntable.mp4"):
        (out_dir / name).unlink()
    code, out, err = run(["export", str(out_dir)], capsys)
    assert code == 0, err
    for name in ("model.glb", "model.obj", "model.mtl", "model.png", "turntable.mp4", "contact_sheet.png"):
        assert (out_dir / name).stat().st_size > 0, name
    mesh = trimesh.load(out_dir / "model.glb", force="mesh")
    assert len(mesh.faces) > 0 and mesh.visual.kind == "texture"
    code, _, err = run(["export", str(tmp_path / "nothing-here")], capsys)
    assert code == 2 and "not a text3d run directory" in err

    # Other export settings: the files follow them, config.yaml records them, the test views score the new mesh.
    metrics = json.loads((out_dir / "metrics.json").read_text())
    before = metrics["export"]
    metrics["export"] = {k: v for k, v in before.items() if not k.startswith("psnr")}
    (out_dir / "metrics.json").write_text(json.dumps(metrics))  # so that scores found after are new ones
    code, _, err = run(["export", str(out_dir), "export.height_m=0.25", "export.texture.texture_size=64"], capsys)
    assert code == 0, err
    mesh = trimesh.load(out_dir / "model.glb", force="mesh", process=False)
    assert np.ptp(mesh.vertices[:, 1]) == pytest.approx(0.25, abs=1e-4)
    assert mesh.visual.material.baseColorTexture.size == (64, 64)
    saved = yaml.safe_load((out_dir / "config.yaml").read_text())["export"]
    assert saved["height_m"] == 0.25 and saved["texture"]["texture_size"] == 64
    after = json.loads((out_dir / "metrics.json").read_text())["export"]
    assert after["size_m"][1] == pytest.approx(0.25, abs=1e-4) and after["texture_size"] == 64
    assert len(after["psnr_per_view"]) == 3 and after["psnr"] == pytest.approx(before["psnr"], abs=1.0)
    config_before = (out_dir / "config.yaml").read_text()
    for bad, message in (("coarse.max_steps=1", "only export.* settings can change on re-export"),
                         ("export.height_m=-1", "export.height_m")):
        code, _, err = run(["export", str(out_dir), bad], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert (out_dir / "config.yaml").read_text() == config_before


def test_compression_without_its_tool_is_one_line_before_the_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no gltf-transform there
    code, _, err = run(["generate", "a red cube", "--preset", "toy", "--out", str(tmp_path / "r"),
                        "export.compress=[meshopt,webp]"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "export.compress=meshopt,webp needs glTF Transform's 'gltf-transform' command on PATH" in err
    assert not (tmp_path / "r").exists()


def test_quiet_generate_prints_no_library_progress_bars(tmp_path):
    """In a fresh process (as a user runs it): the model libraries' own loading bars stay hidden."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "text3d", "generate", "a blue sphere", "--preset", "toy", "--out", str(out),
           "--quiet", "coarse.max_steps=2", "geometry.max_steps=1", "texture.max_steps=1",
           "export.turntable_frames=2", "export.turntable_resolution=32"]
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "it/s]" not in result.stderr and "Loading weights" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["generate", "a red cube", "coarse.max_step=3"],
        ["generate", "a red cube", "--seed", "-1"],
        ["generate", "a pink dog"],
        ["reconstruct", "examples/toy", "--preset", "nope"],
        ["batch", "no-such-prompts.txt"],
        ["config", "coarse.max_step=3"],
        ["ui", "--max-queue", "0"],
        ["export", "outputs/no-such-run", "coarse.max_steps=1"],
    ],
)
def test_mistakes_answer_before_torch_is_imported(argv):
    """Arguments and configs are checked first: a mistake never waits for torch (benchmarks/first_error.py times
    it)."""
    code = ("import sys; from text3d.cli import main; code = main(sys.argv[1:]); "
            "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'gradio', 'accelerate') if m in sys.modules]; "
            "print(code, heavy)")
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=REPO)
    assert result.stdout.strip().splitlines()[-1] == "2 []", result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("text3d: error: ")
