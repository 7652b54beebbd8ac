"""Texture baking: a colour function of world points written into a mesh's UV atlas."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from text3d.errors import TrainingError
from text3d.renderer import rasterizer as rz


@torch.no_grad()
def bake_texture(
    vertices: Tensor,
    faces: Tensor | np.ndarray,
    uvs: Tensor | np.ndarray,
    color_fn: Callable[[Tensor], Tensor],
    size: int = 1024,
    padding: int = 4,
    chunk: int = 1 << 16,
    backend: rz.Backend = "auto",
) -> np.ndarray:
    """Bake ``color_fn`` over the surface into a ``[size, size, 3]`` uint8 texture.

    ``vertices: [V, 3]`` world positions (their device is where everything runs), ``faces: [F, 3]`` int,
    ``uvs: [V, 2]`` in [0, 1] with v up, as :func:`text3d.export.uv.unwrap` returns them. ``color_fn`` maps world
    points ``[N, 3]`` to colours ``[N, 3]`` in [0, 1] and is called on at most ``chunk`` points at a time.
    Each texel whose centre a triangle covers gets the colour of its surface point; charts are then grown by
    ``padding`` texels so that bilinear (and nearby mipmap) lookups at chart borders don't pick up background;
    texels farther out get the mean colour. Rows are in image order (row 0 on top, at v = 1), the layout
    ``trimesh.visual.TextureVisuals`` expects; trimesh flips v for glTF, whose v = 0 is the image's top row.
    """
    device = vertices.device
    uv = torch.as_tensor(uvs, dtype=torch.float32, device=device)
    tri = torch.as_tensor(faces, device=device).to(torch.int32)
    # The UV layout as a flat scene: uv -> NDC xy, so texel (i, j) is the rasterizer's pixel (i, j).
    pos = torch.cat([uv * 2 - 1, torch.zeros_like(uv[:, :1]), torch.ones_like(uv[:, :1])], dim=-1)[None]
    rast, _ = rz.rasterize(pos, tri, (size, size), backend=backend)
    covered = rast[0, ..., 3] > 0  # [H, W]
    if not covered.any():
        raise TrainingError(f"bake: the UV layout covers no texel of the {size}x{size} texture")
    points = rz.interpolate(vertices.float(), rast, tri, backend=backend)[0][covered]  # [N, 3]
    colors = torch.zeros(size, size, 3, device=device)
    colors[covered] = torch.cat([color_fn(p).float().clamp(0.0, 1.0) for p in points.split(chunk)])
    colors, filled = dilate(colors, covered, padding)
    colors[~filled] = colors[covered].mean(0)
    image = rz.flip_y(colors[None])[0]  # the rasterizer's row 0 is v = 0, the image's bottom
    return (image * 255.0).round().to(torch.uint8).cpu().numpy()


def dilate(image: Tensor, mask: Tensor, iterations: int) -> tuple[Tensor, Tensor]:
    """Grow the ``mask: [H, W]`` bool region of ``image: [H, W, C]`` by ``iterations`` texels.

    Each step fills the empty texels next to filled ones (8-neighbourhood) with the mean of those neighbours.
    Returns the new image and mask; filled texels keep their values.
    """
    image = torch.where(mask[..., None], image, 0.0)
    values = image.permute(2, 0, 1)[None]  # [1, C, H, W]
    weight = mask[None, None].to(image.dtype)  # [1, 1, H, W]
    for _ in range(iterations):
        # avg_pool's divisor cancels out in the ratio: the result is the mean over filled neighbours.
        total = F.avg_pool2d(values, 3, stride=1, padding=1)
        count = F.avg_pool2d(weight, 3, stride=1, padding=1)
        grow = (count > 0) & (weight == 0)
        values = torch.where(grow, total / count.clamp(min=1e-12), values)
        weight = torch.where(grow, 1.0, weight)
    return values[0].permute(1, 2, 0), weight[0, 0] > 0
