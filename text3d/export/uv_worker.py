"""Child process of :func:`text3d.export.uv.unwrap`: decimate if asked, then run xatlas.

``python -m text3d.export.uv_worker DIR`` reads ``DIR/in.npz`` (``vertices [V, 3]``, ``faces [F, 3]``,
``max_faces``, ``texture_size``, ``padding``) and writes ``DIR/out.npz`` (``vertices [V', 3]``, ``faces [F', 3]``,
``uvs [V', 2]``). It lives in its own process because xatlas can segfault or stall on some meshes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from text3d.io import atomic_open


def decimate(vertices: np.ndarray, faces: np.ndarray, max_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric edge-collapse decimation to at most ``max_faces`` faces (``fast-simplification`` via trimesh)."""
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=False).simplify_quadric_decimation(face_count=max_faces)
    return np.asarray(mesh.vertices, vertices.dtype), np.asarray(mesh.faces)


def parametrize(
    vertices: np.ndarray, faces: np.ndarray, texture_size: int, padding: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """xatlas charts packed for a ``texture_size``² texture with ``padding`` texels between charts.

    Returns ``vertices [V', 3]`` (seam vertices duplicated), ``faces [F, 3]`` int64 and ``uvs [V', 2]`` in [0, 1].
    """
    import xatlas

    atlas = xatlas.Atlas()
    atlas.add_mesh(np.ascontiguousarray(vertices, np.float32), np.ascontiguousarray(faces, np.uint32))
    pack = xatlas.PackOptions()
    pack.resolution = texture_size
    pack.padding = padding
    atlas.generate(pack_options=pack)
    vmapping, new_faces, uvs = atlas[0]
    return vertices[vmapping], new_faces.astype(np.int64), uvs


def main(workdir: Path) -> None:
    with np.load(workdir / "in.npz") as data:
        vertices, faces = data["vertices"], data["faces"]
        max_faces, texture_size, padding = (int(data[k]) for k in ("max_faces", "texture_size", "padding"))
    if len(faces) > max_faces:
        vertices, faces = decimate(vertices, faces, max_faces)
    vertices, faces, uvs = parametrize(vertices, faces, texture_size, padding)
    with atomic_open(workdir / "out.npz", "wb") as f:
        np.savez(f, vertices=vertices, faces=faces, uvs=uvs)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
