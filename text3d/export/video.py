"""Turntable videos and contact sheets of rendered views."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from text3d.io import atomic_path, write_image


def write_turntable(frames: Sequence[np.ndarray] | np.ndarray, path: Path, fps: int = 24) -> Path:
    """Write ``frames: [N, H, W, 3]`` uint8 as an H.264 MP4 (yuv420p, plays in browsers) at ``fps``, atomically.

    yuv420p needs even sizes: an odd height or width gets its last row or column repeated.
    """
    import imageio.v2 as imageio

    video = np.asarray(frames, dtype=np.uint8)
    if video.ndim != 4 or video.shape[-1] != 3 or len(video) == 0:
        raise ValueError(f"frames: expected [N, H, W, 3] with N > 0, got {list(video.shape)}")
    h, w = video.shape[1:3]
    video = np.pad(video, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    path = Path(path)
    with atomic_path(path) as tmp:
        # macro_block_size=2: keep the exact size instead of imageio's resize to multiples of 16.
        imageio.mimwrite(tmp, video, format="FFMPEG", fps=fps, codec="libx264", pixelformat="yuv420p",
                         macro_block_size=2)
    return path


def contact_sheet(images: Sequence[np.ndarray] | np.ndarray, columns: int | None = None) -> np.ndarray:
    """Tile ``images: [N, H, W, C]`` row by row into ``[rows * H, columns * W, C]``; empty cells are white.

    ``columns`` defaults to ``ceil(sqrt(N))``.
    """
    tiles = np.asarray(images)
    n, h, w, c = tiles.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    white = np.iinfo(tiles.dtype).max if tiles.dtype.kind in "iu" else 1.0
    grid = np.full((rows * columns, h, w, c), white, dtype=tiles.dtype)
    grid[:n] = tiles
    return grid.reshape(rows, columns, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, columns * w, c)


def write_contact_sheet(images: Sequence[np.ndarray] | np.ndarray, path: Path, columns: int | None = None) -> Path:
    """:func:`contact_sheet` of ``images: [N, H, W, C]`` written as a PNG (atomically)."""
    write_image(path, contact_sheet(images, columns))
    return Path(path)
