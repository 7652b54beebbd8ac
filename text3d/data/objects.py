"""Procedural objects: an analytic signed distance function (SDF) plus a colour function, in torch.

World is z-up (see :mod:`text3d.renderer.cameras`); the front of an object faces +x (azimuth 0).
SDFs are negative inside. Every registered object fits inside a sphere of radius :data:`OBJECT_RADIUS`.

The ``sd_*`` primitives and :func:`smooth_union` are public so that other scenes (e.g. a toy world of
coloured primitives) can be built from them. They take points ``x: [..., 3]`` and return ``[...]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from text3d.errors import UserError

Vec3 = tuple[float, float, float]
ORIGIN: Vec3 = (0.0, 0.0, 0.0)

OBJECT_RADIUS = 0.75
"""Every object in :data:`OBJECTS` lies inside the sphere of this radius around the origin."""


@dataclass(frozen=True)
class ProceduralObject:
    """A named solid: ``sdf(x: [N, 3]) -> [N]`` and ``color(x: [N, 3]) -> [N, 3]`` in [0, 1]."""

    name: str
    sdf: Callable[[Tensor], Tensor]
    color: Callable[[Tensor], Tensor]


# ---------------------------------------------------------------------------------------------------------------------
# SDF primitives (exact distances unless noted; formulas after Inigo Quilez)


def _local(x: Tensor, center: Vec3) -> Tensor:
    return x - torch.tensor(center, dtype=x.dtype, device=x.device)


def sd_sphere(x: Tensor, radius: float, center: Vec3 = ORIGIN) -> Tensor:
    """Sphere. ``x: [..., 3] -> [...]``."""
    return _local(x, center).norm(dim=-1) - radius


def sd_box(x: Tensor, half_size: Vec3, center: Vec3 = ORIGIN, rounding: float = 0.0) -> Tensor:
    """Axis-aligned box, edges rounded by ``rounding`` (outer size stays ``2 * half_size``). ``x: [..., 3] -> [...]``.

    The rounding must not exceed the smallest half size.
    """
    half = torch.tensor(half_size, dtype=x.dtype, device=x.device) - rounding
    q = _local(x, center).abs() - half
    outside = q.clamp(min=0.0).norm(dim=-1)
    inside = q.amax(dim=-1).clamp(max=0.0)
    return outside + inside - rounding


def sd_torus(x: Tensor, major_radius: float, minor_radius: float, center: Vec3 = ORIGIN) -> Tensor:
    """Torus lying flat (ring in the xy-plane, hole along z). ``x: [..., 3] -> [...]``."""
    p = _local(x, center)
    q = torch.stack([p[..., :2].norm(dim=-1) - major_radius, p[..., 2]], dim=-1)
    return q.norm(dim=-1) - minor_radius


def sd_cylinder(x: Tensor, radius: float, half_height: float, center: Vec3 = ORIGIN) -> Tensor:
    """Capped cylinder with its axis along z. ``x: [..., 3] -> [...]``."""
    p = _local(x, center)
    d = torch.stack([p[..., :2].norm(dim=-1) - radius, p[..., 2].abs() - half_height], dim=-1)
    return d.amax(dim=-1).clamp(max=0.0) + d.clamp(min=0.0).norm(dim=-1)


def sd_cone(
    x: Tensor, bottom_radius: float, half_height: float, top_radius: float = 0.0, center: Vec3 = ORIGIN
) -> Tensor:
    """Capped cone (frustum) with its axis along z, centred at mid-height; ``top_radius=0`` gives a pointed cone.

    ``x: [..., 3] -> [...]``.
    """
    p = _local(x, center)
    qx, qy = p[..., :2].norm(dim=-1), p[..., 2]
    # Distance to the flat caps (ca) and to the slanted side segment (cb) in the (radius, height) half-plane.
    cap_radius = torch.where(qy < 0.0, bottom_radius, top_radius)
    ca = torch.stack([qx - torch.minimum(qx, cap_radius), qy.abs() - half_height], dim=-1)
    k1 = torch.tensor([top_radius, half_height], dtype=x.dtype, device=x.device)
    k2 = torch.tensor([top_radius - bottom_radius, 2.0 * half_height], dtype=x.dtype, device=x.device)
    q = torch.stack([qx, qy], dim=-1)
    s = (((k1 - q) * k2).sum(dim=-1) / (k2 * k2).sum()).clamp(0.0, 1.0)
    cb = q - k1 + k2 * s.unsqueeze(-1)
    inside = (cb[..., 0] < 0.0) & (ca[..., 1] < 0.0)
    sign = torch.where(inside, -1.0, 1.0)
    return sign * torch.minimum(ca.square().sum(dim=-1), cb.square().sum(dim=-1)).sqrt()


def smooth_union(a: Tensor, b: Tensor, k: float) -> Tensor:
    """Polynomial smooth minimum of two SDFs blending over width ``k``.

    Never above ``min(a, b)`` (by at most ``k / 4``), so the result is still a safe bound for sphere tracing.
    """
    h = (0.5 + 0.5 * (b - a) / k).clamp(0.0, 1.0)
    return torch.lerp(b, a, h) - k * h * (1.0 - h)


# ---------------------------------------------------------------------------------------------------------------------
# Colour helpers


def _rgb(color: Vec3, x: Tensor) -> Tensor:
    """A flat colour for every point: ``[N, 3]``."""
    return torch.tensor(color, dtype=x.dtype, device=x.device).expand(x.shape[:-1] + (3,))


def _gradient(a: Vec3, b: Vec3, t: Tensor) -> Tensor:
    """Blend from ``a`` (t=0) to ``b`` (t=1); ``t: [N] -> [N, 3]``."""
    ta = torch.tensor(a, dtype=t.dtype, device=t.device)
    tb = torch.tensor(b, dtype=t.dtype, device=t.device)
    return torch.lerp(ta, tb, t.clamp(0.0, 1.0).unsqueeze(-1))


# ---------------------------------------------------------------------------------------------------------------------
# Simple objects


def _sphere_sdf(x: Tensor) -> Tensor:
    return sd_sphere(x, 0.5)


def _sphere_color(x: Tensor) -> Tensor:
    return _rgb((0.85, 0.35, 0.25), x)


_BOX_HALF: Vec3 = (0.4, 0.3, 0.25)


def _rounded_box_sdf(x: Tensor) -> Tensor:
    return sd_box(x, _BOX_HALF, rounding=0.08)


def _rounded_box_color(x: Tensor) -> Tensor:
    # Front-to-back gradient so that opposite views differ.
    return _gradient((0.25, 0.45, 0.9), (0.9, 0.85, 0.3), 0.5 + 0.5 * x[..., 0] / _BOX_HALF[0])


def _torus_sdf(x: Tensor) -> Tensor:
    return sd_torus(x, 0.45, 0.15)


def _torus_color(x: Tensor) -> Tensor:
    # Soft gradient around the ring: green at the front (+x), purple at the back.
    cos_angle = x[..., 0] / x[..., :2].norm(dim=-1).clamp(min=1e-6)
    return _gradient((0.55, 0.3, 0.75), (0.3, 0.8, 0.4), 0.5 + 0.5 * cos_angle)


# ---------------------------------------------------------------------------------------------------------------------
# The bundled example: a little robot-like toy. Body (rounded box, vertical gradient), head (sphere), a belt (torus)
# around the body, a party hat (truncated cone) and a nose (sphere) at the front (+x), so every view is distinct.
# Parts are blended with small smooth unions to avoid thin creases that a NeRF at 64x64 cannot resolve.

_TOY_BODY_CENTER: Vec3 = (0.0, 0.0, -0.2)
_TOY_BODY_HALF: Vec3 = (0.28, 0.22, 0.22)
_TOY_HEAD_CENTER: Vec3 = (0.03, 0.0, 0.2)
_TOY_HEAD_RADIUS = 0.2
_TOY_RED: Vec3 = (0.85, 0.2, 0.2)


def _toy_parts(x: Tensor) -> Tensor:
    """Per-part SDFs ``[N, 5]``: body, head, belt, hat, nose."""
    return torch.stack(
        [
            sd_box(x, _TOY_BODY_HALF, _TOY_BODY_CENTER, rounding=0.08),
            sd_sphere(x, _TOY_HEAD_RADIUS, _TOY_HEAD_CENTER),
            sd_torus(x, 0.27, 0.06, _TOY_BODY_CENTER),
            sd_cone(x, 0.13, 0.13, top_radius=0.025, center=(0.03, 0.0, 0.47)),
            sd_sphere(x, 0.06, (0.24, 0.0, 0.2)),
        ],
        dim=-1,
    )


def _toy_sdf(x: Tensor) -> Tensor:
    body, head, belt, hat, nose = _toy_parts(x).unbind(-1)
    d = smooth_union(body, head, 0.06)
    d = smooth_union(d, belt, 0.03)
    d = smooth_union(d, hat, 0.03)
    return smooth_union(d, nose, 0.03)


def _toy_color(x: Tensor) -> Tensor:
    body_t = (x[..., 2] - (_TOY_BODY_CENTER[2] - _TOY_BODY_HALF[2])) / (2.0 * _TOY_BODY_HALF[2])
    colors = torch.stack(
        [
            _gradient((0.2, 0.35, 0.85), (0.25, 0.75, 0.75), body_t),
            _rgb((0.95, 0.8, 0.3), x),
            _rgb(_TOY_RED, x),
            _rgb((0.3, 0.75, 0.3), x),
            _rgb(_TOY_RED, x),
        ],
        dim=-2,
    )  # [N, 5, 3]
    # Each point takes the colour of the nearest part: flat colours with crisp seams where parts meet.
    nearest = _toy_parts(x).argmin(dim=-1)
    return colors.gather(-2, nearest[..., None, None].expand(nearest.shape + (1, 3))).squeeze(-2)


OBJECTS: dict[str, ProceduralObject] = {
    o.name: o
    for o in (
        ProceduralObject("sphere", _sphere_sdf, _sphere_color),
        ProceduralObject("rounded_box", _rounded_box_sdf, _rounded_box_color),
        ProceduralObject("torus", _torus_sdf, _torus_color),
        ProceduralObject("toy", _toy_sdf, _toy_color),
    )
}
"""All procedural objects by name."""


def get_object(name: str) -> ProceduralObject:
    """The object called ``name``; :class:`UserError` listing the known names otherwise."""
    try:
        return OBJECTS[name]
    except KeyError:
        raise UserError(f"unknown object {name!r}; known objects: {', '.join(sorted(OBJECTS))}") from None
