"""Read NeRF-synthetic (Blender) style multi-view datasets: ours from :mod:`text3d.data.synthetic` and the originals.

Layout: ``<root>/transforms_<split>.json`` holding ``{"camera_angle_x": <horizontal FoV, radians>, "frames":
[{"file_path": "./train/r_0", "transform_matrix": <4x4 camera-to-world, OpenGL axes>}, ...]}``; ``file_path`` is
relative to ``root`` and may omit the ``.png`` suffix. Every problem is reported as a one-line :class:`UserError`
naming the file (and key) at fault.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from text3d.errors import UserError
from text3d.renderer.cameras import Cameras


@dataclass
class ViewSet:
    """Posed images of one dataset split."""

    images: Tensor
    """[N, H, W, 4] float32 RGBA, straight (not premultiplied) alpha, in [0, 1]."""
    cameras: Cameras
    """The N cameras; ``cameras.index`` is the frame order in the split (``arange(N)``)."""

    def __len__(self) -> int:
        return self.images.shape[0]

    def composite(self, background: Tensor) -> Tensor:
        """The images over a solid ``background: [3]``: ``[N, H, W, 3]``."""
        alpha = self.images[..., 3:]
        bg = background.to(self.images)
        return self.images[..., :3] * alpha + bg * (1.0 - alpha)


def load_views(root: str | os.PathLike, split: str, downscale: int = 1) -> ViewSet:
    """Load split ``split`` (e.g. ``"train"``, ``"test"``) of the dataset in folder ``root``.

    ``downscale`` shrinks the images by an integer factor that must divide their size (area average of
    premultiplied colour, so the colour of partly covered edge pixels is not darkened by the transparent part).
    The vertical field of view follows from ``camera_angle_x`` and the image aspect ratio.
    """
    root = Path(root)
    if not root.exists():
        raise UserError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise UserError(f"dataset path {root} is not a folder")
    if isinstance(downscale, bool) or not isinstance(downscale, int) or downscale < 1:
        raise UserError(f"downscale must be a positive integer, got {downscale!r}")

    path = root / f"transforms_{split}.json"
    data = _read_json(path, root)
    if not isinstance(data, dict):
        raise UserError(f"{path}: top level must be a JSON object, got {_json_type(data)}")
    fov_x = data.get("camera_angle_x")
    if fov_x is None:
        raise UserError(f"{path}: missing key 'camera_angle_x'")
    if not _is_number(fov_x) or not 0.0 < fov_x < math.pi:
        raise UserError(f"{path}: 'camera_angle_x' must be a number of radians in (0, pi), got {fov_x!r}")
    frames = data.get("frames")
    if frames is None:
        raise UserError(f"{path}: missing key 'frames'")
    if not isinstance(frames, list):
        raise UserError(f"{path}: 'frames' must be a list, got {_json_type(frames)}")
    if not frames:
        raise UserError(f"{path}: 'frames' is empty")

    matrices, images = [], []
    size: tuple[int, int] | None = None
    for i, frame in enumerate(frames):
        where = f"{path}: frames[{i}]"
        if not isinstance(frame, dict):
            raise UserError(f"{where} must be an object, got {_json_type(frame)}")
        for key in ("file_path", "transform_matrix"):
            if key not in frame:
                raise UserError(f"{where}: missing key '{key}'")
        matrices.append(_parse_matrix(frame["transform_matrix"], f"{where}.transform_matrix"))
        image_path = _find_image(root, frame["file_path"], f"{where}.file_path")
        image = _read_image(image_path)
        if size is None:
            size = image.shape[:2]
            if size[0] % downscale or size[1] % downscale:
                raise UserError(
                    f"downscale {downscale} does not divide the image size {size[1]}x{size[0]} of {image_path}"
                )
        elif image.shape[:2] != size:
            raise UserError(
                f"{image_path}: image size {image.shape[1]}x{image.shape[0]} differs from the split's first image"
                f" ({size[1]}x{size[0]})"
            )
        images.append(_downscale(image, downscale))  # one at a time: full-size originals can be large

    assert size is not None
    height, width = size[0] // downscale, size[1] // downscale
    n = len(frames)
    fov_y = 2.0 * math.atan(math.tan(0.5 * fov_x) * height / width)
    cameras = Cameras(
        c2w=torch.tensor(np.stack(matrices), dtype=torch.float32),
        fov_y=torch.full((n,), fov_y, dtype=torch.float32),
        height=height,
        width=width,
        index=torch.arange(n),
    )
    return ViewSet(torch.stack(images), cameras)


def _read_json(path: Path, root: Path) -> Any:
    if not path.is_file():
        found = sorted(p.name for p in root.glob("transforms_*.json"))
        available = f"found: {', '.join(found)}" if found else "no transforms_*.json in the folder"
        raise UserError(f"{path} not found ({available})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read: {_one_line(e)}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None


def _parse_matrix(value: Any, where: str) -> np.ndarray:
    """A validated camera-to-world matrix ``[4, 4]`` float64."""
    if not (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(row, list) and len(row) == 4 and all(_is_number(v) for v in row) for row in value)
    ):
        raise UserError(f"{where} must be a 4x4 list of numbers")
    m = np.array(value, dtype=np.float64)
    if not np.isfinite(m).all():
        raise UserError(f"{where} has non-finite entries")
    if not np.allclose(m[3], [0.0, 0.0, 0.0, 1.0], rtol=0.0, atol=1e-6):
        raise UserError(f"{where}: last row must be [0, 0, 0, 1], got {m[3].tolist()}")
    return m


def _find_image(root: Path, file_path: Any, where: str) -> Path:
    if not isinstance(file_path, str) or not file_path:
        raise UserError(f"{where} must be a non-empty string, got {file_path!r}")
    rel = file_path
    while rel.startswith("./"):
        rel = rel[2:]
    # The Blender datasets store paths without the ".png" suffix; ours too, but accept either.
    candidates = [root / rel, root / (rel + ".png")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise UserError(f"{where}: image {file_path!r} not found (tried {' and '.join(map(str, candidates))})")


def _read_image(path: Path) -> Tensor:
    """``[H, W, 4]`` float32 RGBA in [0, 1] (alpha 1 for RGB images)."""
    import imageio.v3 as iio

    try:
        # Pillow only: imageio's fallback plugins answer undecodable files with install hints, not the cause.
        # Pillow decodes 16-bit RGB(A) PNGs to their 8 most significant bits, which is plenty here.
        array = iio.imread(path, plugin="pillow")
    except (OSError, ValueError, SyntaxError) as e:  # imageio wraps most decoder failures in OSError
        raise UserError(f"{path}: cannot read image: {_one_line(e)}") from None
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        channels = 1 if array.ndim == 2 else array.shape[-1]
        raise UserError(f"{path}: expected an RGB or RGBA image, got {channels} channel(s) with shape {array.shape}")
    if array.dtype != np.uint8:
        raise UserError(f"{path}: unsupported pixel type {array.dtype} (expected 8-bit or 16-bit RGB/RGBA)")
    image = torch.from_numpy(array.astype(np.float32) / 255.0)
    if image.shape[2] == 3:
        image = torch.cat([image, torch.ones_like(image[..., :1])], dim=-1)
    return image


def _downscale(image: Tensor, factor: int) -> Tensor:
    """Area-average ``image: [H, W, 4]`` (straight alpha) by ``factor`` -> ``[H / factor, W / factor, 4]``."""
    if factor == 1:
        return image
    h, w = image.shape[0] // factor, image.shape[1] // factor
    blocks = image.reshape(h, factor, w, factor, 4)
    alpha = blocks[..., 3:].mean(dim=(1, 3))
    premultiplied = (blocks[..., :3] * blocks[..., 3:]).mean(dim=(1, 3))
    rgb = torch.where(alpha > 0.0, premultiplied / alpha.clamp(min=1e-12), 0.0)
    return torch.cat([rgb.clamp(0.0, 1.0), alpha], dim=-1)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
