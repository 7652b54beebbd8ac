"""Pinhole cameras, random training views and the evaluation orbit.

Conventions used everywhere in text3d (the same as NeRF-synthetic / Blender datasets):
- the world is z-up; the object sits at the origin inside the scene bounds;
- ``c2w`` is camera-to-world with OpenGL camera axes: x right, y up, the camera looks down -z;
- azimuth is measured in the xy-plane from +x towards +y, elevation from the xy-plane towards +z, in degrees;
  azimuth 0 is the "front" view.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from text3d.renderer.config import CameraConfig


@dataclass
class Cameras:
    """A batch of ``B`` pinhole cameras sharing one image size."""

    c2w: Tensor
    """[B, 4, 4] camera-to-world (OpenGL axes)."""
    fov_y: Tensor
    """[B] vertical field of view, radians."""
    height: int
    """Image height in pixels."""
    width: int
    """Image width in pixels."""
    index: Tensor | None = None
    """[B] index of each view in its dataset (reconstruction), else None."""
    pixels: Tensor | None = None
    """[B, P] row-major pixel indices to render instead of the whole image (renders become [B, 1, P, C])."""

    def __len__(self) -> int:
        return self.c2w.shape[0]

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    @property
    def position(self) -> Tensor:
        """[B, 3] camera centres in world space."""
        return self.c2w[:, :3, 3]

    @property
    def focal(self) -> Tensor:
        """[B] focal length in pixels."""
        return 0.5 * self.height / torch.tan(0.5 * self.fov_y)

    @property
    def azimuth(self) -> Tensor:
        """[B] azimuth of the camera centre, degrees in (-180, 180]."""
        p = self.position
        return torch.rad2deg(torch.atan2(p[:, 1], p[:, 0]))

    @property
    def elevation(self) -> Tensor:
        """[B] elevation of the camera centre, degrees."""
        p = self.position
        return torch.rad2deg(torch.atan2(p[:, 2], p[:, :2].norm(dim=-1)))

    def to(self, device: torch.device | str) -> Cameras:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return Cameras(self.c2w.to(device), self.fov_y.to(device), self.height, self.width, move(self.index), move(self.pixels))

    def __getitem__(self, item: int | slice | Tensor) -> Cameras:
        if isinstance(item, int):
            item = slice(item, item + 1)

        def pick(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[item]

        return Cameras(self.c2w[item], self.fov_y[item], self.height, self.width, pick(self.index), pick(self.pixels))

    def with_size(self, height: int, width: int) -> Cameras:
        """The same views at another image size (same field of view)."""
        return Cameras(self.c2w, self.fov_y, height, width, self.index)

    def with_pixels(self, pixels: Tensor | None) -> Cameras:
        """The same views restricted to ``pixels: [B, P]`` (or whole again with None)."""
        return Cameras(self.c2w, self.fov_y, self.height, self.width, self.index, pixels)

    def rays(self) -> tuple[Tensor, Tensor]:
        """Per-pixel rays through pixel centres.

        Returns ``origins: [B, H, W, 3]`` and unit ``directions: [B, H, W, 3]``, world space
        (``[B, 1, P, 3]`` when ``pixels`` is set).
        """
        dev, dtype = self.c2w.device, self.c2w.dtype
        if self.pixels is None:
            ys, xs = torch.meshgrid(
                torch.arange(self.height, device=dev, dtype=dtype) + 0.5,
                torch.arange(self.width, device=dev, dtype=dtype) + 0.5,
                indexing="ij",
            )
        else:
            ys = (self.pixels // self.width).to(dtype)[:, None, :] + 0.5  # [B, 1, P]
            xs = (self.pixels % self.width).to(dtype)[:, None, :] + 0.5
        f = self.focal.view(-1, 1, 1)
        x = (xs - 0.5 * self.width) / f  # [B, H, W]
        y = -(ys - 0.5 * self.height) / f
        d_cam = torch.stack([x, y, -torch.ones_like(x)], dim=-1)  # [B, H, W, 3]
        rot = self.c2w[:, None, None, :3, :3]
        directions = (rot @ d_cam.unsqueeze(-1)).squeeze(-1)
        directions = directions / directions.norm(dim=-1, keepdim=True)
        origins = self.position[:, None, None, :].expand_as(directions)
        return origins, directions

    def projection(self, near: float = 0.05, far: float = 100.0) -> Tensor:
        """[B, 4, 4] OpenGL clip-space projection matrices (for the rasterizer)."""
        t = torch.tan(0.5 * self.fov_y)
        aspect = self.width / self.height
        proj = torch.zeros(len(self), 4, 4, device=self.device, dtype=self.c2w.dtype)
        proj[:, 0, 0] = 1.0 / (t * aspect)
        proj[:, 1, 1] = 1.0 / t
        proj[:, 2, 2] = -(far + near) / (far - near)
        proj[:, 2, 3] = -2.0 * far * near / (far - near)
        proj[:, 3, 2] = -1.0
        return proj


def look_at(eye: Tensor, target: Tensor | None = None, up: Tensor | None = None) -> Tensor:
    """Camera-to-world matrices for cameras at ``eye: [B, 3]`` looking at ``target`` (default origin), z-up.

    Returns ``c2w: [B, 4, 4]`` with OpenGL axes.
    """
    if target is None:
        target = torch.zeros_like(eye)
    if up is None:
        up = torch.tensor([0.0, 0.0, 1.0], device=eye.device, dtype=eye.dtype).expand_as(eye)
    back = eye - target
    back = back / back.norm(dim=-1, keepdim=True)
    right = torch.cross(up, back, dim=-1)
    # Straight above or below: any horizontal right vector will do.
    degenerate = right.norm(dim=-1, keepdim=True) < 1e-6
    fallback = torch.tensor([0.0, 1.0, 0.0], device=eye.device, dtype=eye.dtype).expand_as(eye)
    right = torch.where(degenerate, torch.cross(fallback, back, dim=-1), right)
    right = right / right.norm(dim=-1, keepdim=True)
    true_up = torch.cross(back, right, dim=-1)
    c2w = torch.eye(4, device=eye.device, dtype=eye.dtype).repeat(eye.shape[0], 1, 1)
    c2w[:, :3, 0] = right
    c2w[:, :3, 1] = true_up
    c2w[:, :3, 2] = back
    c2w[:, :3, 3] = eye
    return c2w


def spherical_cameras(
    azimuth: Tensor, elevation: Tensor, distance: Tensor, fov_y: Tensor, height: int, width: int
) -> Cameras:
    """Cameras on spheres around the origin looking at it. Angles in degrees, ``fov_y`` in degrees; all ``[B]``."""
    az, el = torch.deg2rad(azimuth), torch.deg2rad(elevation)
    eye = torch.stack(
        [distance * torch.cos(el) * torch.cos(az), distance * torch.cos(el) * torch.sin(az), distance * torch.sin(el)],
        dim=-1,
    )
    return Cameras(look_at(eye), torch.deg2rad(fov_y), height, width)


ViewSampler = Callable[[torch.Generator], Cameras]
"""Training views of one step from a random generator (:class:`CameraSampler`, or a dataset's views)."""


@dataclass
class CameraSampler:
    """Draws random training cameras from a :class:`CameraConfig`; the caller owns the random generator."""

    config: CameraConfig

    def __call__(self, generator: torch.Generator, n: int | None = None) -> Cameras:
        """``n`` (default ``batch_size``) random cameras on the CPU."""
        c = self.config
        n = c.batch_size if n is None else n

        def uniform(lo_hi: tuple[float, float]) -> Tensor:
            lo, hi = lo_hi
            return lo + (hi - lo) * torch.rand(n, generator=generator)

        azimuth = uniform(c.azimuth_range)
        # Uniform over the sphere's band rather than over the angle: no pile-up of views near the poles.
        lo, hi = (math.sin(math.radians(e)) for e in c.elevation_range)
        elevation = torch.rad2deg(torch.asin(uniform((lo, hi))))
        distance = uniform(c.distance_range)
        fov = uniform(c.fov_range)
        if c.fixed_framing:
            half = math.radians(c.eval_fov) / 2
            distance = distance * math.tan(half) / torch.tan(torch.deg2rad(fov) / 2)
        return spherical_cameras(azimuth, elevation, distance, fov, c.height, c.width)

    def orbit(self, n: int | None = None, height: int | None = None, width: int | None = None) -> Cameras:
        """The fixed evaluation orbit: ``n`` views evenly spaced in azimuth, starting at the front."""
        c = self.config
        n = c.eval_views if n is None else n
        azimuth = torch.arange(n, dtype=torch.float32) * (360.0 / n)
        full = torch.ones(n)
        return spherical_cameras(
            azimuth, c.eval_elevation * full, c.eval_distance * full, c.eval_fov * full, height or c.height, width or c.width
        )
