"""The toy world: six primitive shapes in six flat colours, captioned ``"a {color} {shape}"``.

Objects are z-up, centred at the origin and sized alike (each fits :data:`~text3d.data.objects.OBJECT_RADIUS` and
spans most of it), so that shape and colour are the only things a caption has to say.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import Tensor

from text3d.data.objects import (
    ORIGIN,
    ProceduralObject,
    Vec3,
    sd_box,
    sd_cone,
    sd_cylinder,
    sd_sphere,
    sd_torus,
)
from text3d.data.synthetic import DEFAULT_AMBIENT, DEFAULT_LIGHT_DIR, normals, trace
from text3d.renderer.cameras import CameraConfig, Cameras, CameraSampler
from text3d.toy.vocabulary import COLORS, SHAPES, caption

LIGHT_JITTER = 0.25
"""Standard deviation of the per-image perturbation of the (unit) default light direction."""
AMBIENT_RANGE = (DEFAULT_AMBIENT - 0.1, DEFAULT_AMBIENT + 0.1)
"""Per-image ambient light is drawn uniformly from this range."""


def sd_pyramid(x: Tensor, half_base: float, height: float, center: Vec3 = ORIGIN) -> Tensor:
    """Square pyramid with its axis along z, base of side ``2 * half_base``, centred at mid-height (exact distance).

    ``x: [..., 3] -> [...]``. The slanted faces follow Inigo Quilez's ``sdPyramid`` (unit base at y = 0, y up):
    points are scaled to a unit base, with z as his y.
    """
    s = 2.0 * half_base
    c = torch.tensor(center, dtype=x.dtype, device=x.device)
    p = (x - c) / s
    h = height / s
    py = p[..., 2] + 0.5 * h  # base at zero height
    # Fold into one eighth by symmetry: |x|, |y| and order them so that the nearest face is the +x one.
    a, b = p[..., 0].abs(), p[..., 1].abs()
    px, pz = torch.maximum(a, b) - 0.5, torch.minimum(a, b) - 0.5
    m2 = h * h + 0.25
    qx = pz
    qy = h * py - 0.5 * px
    qz = h * px + 0.5 * py
    sm = (-qx).clamp(min=0.0)
    t = ((qy - 0.5 * pz) / (m2 + 0.25)).clamp(0.0, 1.0)
    da = m2 * (qx + sm).square() + qy.square()
    db = m2 * (qx + 0.5 * t).square() + (qy - m2 * t).square()
    inside_band = torch.minimum(qy, -qx * m2 - qy * 0.5) > 0.0
    d2 = torch.where(inside_band, torch.zeros_like(da), torch.minimum(da, db))
    side = ((d2 + qz.square()) / m2).sqrt() * torch.sign(torch.maximum(qz, -py))
    # The face formula alone ignores the base. Inside, the body is also bounded by the base plane; below that plane
    # the nearest point is on the base square (the pyramid lies in the prism over it).
    below = torch.stack([a - 0.5, b - 0.5], dim=-1).clamp(min=0.0)
    under = torch.cat([below, py.unsqueeze(-1)], dim=-1).norm(dim=-1)
    return s * torch.where(py < 0.0, under, torch.where(side < 0.0, torch.maximum(side, -py), side))


# Sizes: every shape reaches 0.6-0.73 from the origin (OBJECT_RADIUS is 0.75).
_SDFS: dict[str, Callable[[Tensor], Tensor]] = {
    "cube": lambda x: sd_box(x, (0.4, 0.4, 0.4), rounding=0.02),
    "sphere": lambda x: sd_sphere(x, 0.6),
    "cone": lambda x: sd_cone(x, 0.48, 0.5),
    "cylinder": lambda x: sd_cylinder(x, 0.45, 0.45),
    "torus": lambda x: sd_torus(x, 0.45, 0.2),
    "pyramid": lambda x: sd_pyramid(x, 0.42, 0.84),
}


def toy_object(shape: str, color: str) -> ProceduralObject:
    """The toy object ``shape`` (one of :data:`SHAPES`) in the flat colour ``color`` (a key of :data:`COLORS`)."""
    if shape not in _SDFS:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    if color not in COLORS:
        raise ValueError(f"unknown colour {color!r}; known: {', '.join(COLORS)}")
    rgb = COLORS[color]

    def flat(x: Tensor) -> Tensor:
        return torch.tensor(rgb, dtype=x.dtype, device=x.device).expand(x.shape[:-1] + (3,))

    return ProceduralObject(f"{color}_{shape}", _SDFS[shape], flat)


def render_toy_batch(
    n: int,
    resolution: int,
    generator: torch.Generator,
    camera: CameraConfig | None = None,
    supersample: int = 2,
    obj: tuple[str, str] | None = None,
) -> tuple[Tensor, list[str], Cameras]:
    """``n`` random toy objects (or ``obj``, a ``(colour, shape)`` pair, in every image) from random views,
    composited on white.

    Views come from ``camera`` (default: the coarse stage's default :class:`CameraConfig`) at ``resolution``²;
    shading is Lambertian under a light jittered around the dataset default with a random ambient term.
    Each pixel averages ``supersample``² rays. Returns ``images: [n, 3, H, W]`` in [0, 1], their captions and the
    ``n`` cameras.
    Deterministic for a given generator state.
    """
    shape_ids = torch.randint(len(SHAPES), (n,), generator=generator)
    color_ids = torch.randint(len(COLORS), (n,), generator=generator)
    if obj is not None:  # drawn all the same, so the views match those of a random batch
        if obj[1] not in SHAPES or obj[0] not in COLORS:
            raise ValueError(f"unknown toy object {obj!r}; colours: {', '.join(COLORS)}; shapes: {', '.join(SHAPES)}")
        shape_ids = torch.full_like(shape_ids, SHAPES.index(obj[1]))
        color_ids = torch.full_like(color_ids, list(COLORS).index(obj[0]))
    config = replace(camera or CameraConfig(), height=resolution, width=resolution)
    cameras = CameraSampler(config)(generator, n)
    light = torch.tensor(DEFAULT_LIGHT_DIR) / math.dist(DEFAULT_LIGHT_DIR, ORIGIN)
    lights = light + LIGHT_JITTER * torch.randn(n, 3, generator=generator)
    lights = lights / lights.norm(dim=-1, keepdim=True)
    lo, hi = AMBIENT_RANGE
    ambient = lo + (hi - lo) * torch.rand(n, generator=generator)
    palette = torch.tensor(list(COLORS.values()))

    s = supersample
    fine = Cameras(cameras.c2w, cameras.fov_y, resolution * s, resolution * s)
    origins, directions = (r.reshape(n, -1, 3) for r in fine.rays())  # [n, R, 3]
    rgba = torch.zeros(n, origins.shape[1], 4)
    # One trace per shape over all its images: far fewer (and larger) SDF calls than one render per image.
    for k, shape in enumerate(SHAPES):
        views = (shape_ids == k).nonzero().squeeze(1)
        if views.numel() == 0:
            continue
        hit, points = trace(_SDFS[shape], origins[views].reshape(-1, 3), directions[views].reshape(-1, 3))
        view_of_ray = views.repeat_interleave(origins.shape[1])[hit]
        p = points[hit]
        lambert = (normals(_SDFS[shape], p) * lights[view_of_ray]).sum(-1).clamp(min=0.0)
        a = ambient[view_of_ray]
        shaded = palette[color_ids[view_of_ray]] * (a + (1.0 - a) * lambert)[:, None]
        block = torch.zeros(views.numel() * origins.shape[1], 4)
        block[hit] = torch.cat([shaded, torch.ones_like(shaded[:, :1])], dim=-1)
        rgba[views] = block.reshape(views.numel(), -1, 4)
    # Composite each ray on white, then average the sub-pixel samples.
    rgb = rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])
    images = rgb.reshape(n, resolution, s, resolution, s, 3).mean(dim=(2, 4)).permute(0, 3, 1, 2)
    captions = [caption(list(COLORS)[c], SHAPES[k]) for k, c in zip(shape_ids.tolist(), color_ids.tolist())]
    return images.clamp(0.0, 1.0), captions, cameras
