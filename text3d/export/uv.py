"""UV unwrapping with xatlas, isolated in a child process so that a crash or a stall becomes a one-line error."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import text3d
from text3d.errors import TrainingError
from text3d.io import atomic_open

log = logging.getLogger(__name__)

WORKER_MODULE = "text3d.export.uv_worker"


def _worker_command(workdir: Path) -> list[str]:
    return [sys.executable, "-m", WORKER_MODULE, str(workdir)]


def unwrap(
    vertices: np.ndarray,
    faces: np.ndarray,
    timeout: float = 120.0,
    max_faces: int = 30_000,
    texture_size: int = 1024,
    padding: int = 4,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Charts and a UV atlas for a triangle mesh.

    ``vertices: [V, 3]`` float, ``faces: [F, 3]`` int. A mesh above ``max_faces`` faces is decimated to that count
    first. Charts are packed for a ``texture_size``² texture, ``padding`` texels apart (so a bake can dilate into the
    gaps). Returns ``vertices [V', 3]`` (same dtype; vertices on seams are duplicated), ``faces [F', 3]`` int64
    (F' = F unless decimated) and ``uvs [V', 2]`` float32 in [0, 1], v pointing up (OpenGL/OBJ convention).
    Raises :class:`TrainingError` when xatlas crashes, fails or runs past ``timeout`` seconds.
    """
    vertices, faces = np.asarray(vertices), np.asarray(faces)
    if len(faces) == 0:
        raise TrainingError("uv unwrap: the mesh has no faces")
    if not np.isfinite(vertices).all():
        raise TrainingError("uv unwrap: the mesh has non-finite vertex positions")
    if len(faces) > max_faces:
        log.info("uv unwrap: decimating %d faces to %d before xatlas", len(faces), max_faces)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="text3d-uv-") as tmp:
        workdir = Path(tmp)
        with atomic_open(workdir / "in.npz", "wb") as f:
            np.savez(f, vertices=vertices, faces=faces, max_faces=max_faces, texture_size=texture_size,
                     padding=padding)
        _run_worker(workdir, timeout, f"{len(vertices)} vertices, {len(faces)} faces")
        with np.load(workdir / "out.npz") as out:
            new_vertices, new_faces, uvs = out["vertices"], out["faces"], out["uvs"]
    if not np.isfinite(uvs).all():
        raise TrainingError("uv unwrap: xatlas returned non-finite uvs")
    log.info("uv unwrap: %d faces, %d vertices with seams split, in %.1f s",
             len(new_faces), len(new_vertices), time.perf_counter() - start)
    return new_vertices, new_faces, uvs


def _run_worker(workdir: Path, timeout: float, what: str) -> None:
    """Run the worker on ``workdir``; any way it fails is a :class:`TrainingError`."""
    # The worker must import text3d even when it is used from a source tree that is not installed.
    env = dict(os.environ)
    root = str(Path(text3d.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    try:
        proc = subprocess.run(_worker_command(workdir), env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        raise TrainingError(f"uv unwrap: xatlas ran past its {timeout:g} s timeout on {what}; "
                            "lower max_faces or raise the timeout") from None
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        raise TrainingError(f"uv unwrap: xatlas crashed ({name}) on {what}; try a different max_faces")
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise TrainingError(f"uv unwrap: the xatlas worker failed (exit code {proc.returncode}) on {what}: {last}")
