"""A normal (non-editable) install works from any directory: the presets, the toy model and the kernel sources ship
inside the wheel."""

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A venv holding a wheel of this checkout (its dependencies from the test environment's site-packages)."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp / "dist"), str(REPO)], check=True, capture_output=True, text=True)
    (wheel,) = (tmp / "dist").glob("text3d-*.whl")
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(tmp / "venv")
    python = tmp / "venv" / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    str(wheel)], check=True, capture_output=True, text=True)
    return tmp


def run(venv_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of the checkout on the path
    env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run([str(venv_dir / "venv" / "bin" / "text3d"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_the_wheel_carries_the_presets_and_the_kernel_sources(installed):
    away = installed / "elsewhere"
    away.mkdir()
    where = subprocess.run(
        [str(installed / "venv" / "bin" / "python"), "-c",
         "import text3d, text3d.app.presets as p, text3d.kernels as k; print(text3d.__file__); "
         "print(p.preset_dir()); print(p.preset_names()); print(k.source_dir())"],
        cwd=away, capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": ""},
    ).stdout.splitlines()
    package = Path(where[0]).parent
    assert package.is_relative_to(installed / "venv"), where  # the installed copy, not the checkout
    assert Path(where[1]) == package / "presets"
    assert eval(where[2]) == sorted(p.stem for p in (REPO / "configs").glob("*.yaml"))
    assert Path(where[3]) == package / "kernels" / "sources"
    assert {p.name for p in (REPO / "cuda").iterdir()} <= {p.name for p in Path(where[3]).iterdir()}

    result = run(installed, away, "config", "--preset", "toy")
    assert result.returncode == 0, result.stderr
    assert "text3d-toy" in result.stdout


def test_the_main_job_runs_from_another_directory(installed):
    away = installed / "elsewhere-2"
    away.mkdir()
    result = run(installed, away, "generate", "a red cube", "--preset", "toy", "--quiet", "coarse.max_steps=4",
                 "geometry.max_steps=2", "texture.max_steps=2", "coarse.renderer.occupancy.warmup_steps=1",
                 "geometry.tet_resolution=16", "export.turntable_frames=2", "export.turntable_resolution=32")
    assert result.returncode == 0, result.stderr[-2000:]
    run_dir = away / "outputs" / "a-red-cube-0"
    assert (run_dir / "model.glb").stat().st_size > 0
    assert "guide:" in (run_dir / "config.yaml").read_text()
