"""The compressed copy of the GLB, made by glTF Transform's command-line tool (``gltf-transform``, npm
``@gltf-transform/cli``): meshopt or Draco geometry, WebP textures. ``model.glb`` stays as it was written: every
glTF client reads it, while the compressed copy needs a client with the extensions' decoders (README: Using the
asset)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from text3d.errors import TrainingError, UserError
from text3d.io import atomic_open

TOOL = "gltf-transform"
INSTALL = "npm install -g @gltf-transform/cli@4"
TIMEOUT = 300.0
"""Seconds one gltf-transform command may take."""


def find_tool() -> str | None:
    """The path of ``gltf-transform`` on PATH, or None."""
    return shutil.which(TOOL)


def check_compression(compress: Sequence[str]) -> None:
    """A one-line :class:`UserError` before a run starts when ``compress`` (``export.compress``) cannot be done."""
    if compress and find_tool() is None:
        raise UserError(f"export.compress={','.join(compress)} needs glTF Transform's '{TOOL}' command on PATH "
                        f"({INSTALL}); or leave export.compress empty")


_NAME_ORDER = ("meshopt", "draco", "webp")
_RUN_ORDER = ("webp", "meshopt", "draco")
"""Textures first: a later command re-encodes the images but decodes the geometry and writes it plain."""


def compressed_name(stem: str, compress: Sequence[str]) -> str:
    """The compressed copy's file name, which says what it needs: ``model.meshopt.webp.glb``."""
    return ".".join([stem, *sorted(compress, key=_NAME_ORDER.index), "glb"])


def compress_glb(src: Path, compress: Sequence[str], timeout: float = TIMEOUT) -> Path:
    """Write ``src``'s compressed copy beside it (:func:`compressed_name`), made by the ``gltf-transform`` commands
    ``compress`` names (``meshopt``, ``draco``, ``webp``; texture ones first), each with its own defaults.

    Raises :class:`TrainingError` when a command fails or runs past ``timeout`` seconds; ``src`` is never changed.
    """
    tool = find_tool()
    if tool is None:  # check_compression ran at the start; the tool went away since
        raise TrainingError(f"export: '{TOOL}' is no longer on PATH ({INSTALL})")
    dst = src.with_name(compressed_name(src.name.removesuffix(".glb"), compress))
    with tempfile.TemporaryDirectory(prefix="text3d-compress-") as tmp:
        current = src
        for i, command in enumerate(sorted(compress, key=_RUN_ORDER.index)):
            out = Path(tmp) / f"{i}-{command}.glb"
            try:
                done = subprocess.run([tool, command, str(current), str(out)], capture_output=True, text=True,
                                      timeout=timeout, check=False)
            except subprocess.TimeoutExpired:
                raise TrainingError(f"export: {TOOL} {command} ran past its {timeout:g} s timeout") from None
            if done.returncode != 0 or not out.is_file():
                lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
                raise TrainingError(f"export: {TOOL} {command} failed ({lines[-1].strip() if lines else 'no output'})")
            current = out
        with atomic_open(dst, "wb") as f:
            f.write(current.read_bytes())
    return dst
