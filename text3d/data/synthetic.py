"""Render procedural objects by sphere tracing and write NeRF-synthetic-style multi-view datasets.

Shading is Lambertian under a light fixed in world space plus ambient, so a point's colour does not depend on
the viewing direction: a radiance field with view-independent colour can reproduce the images exactly.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import torch
import trimesh
from torch import Tensor

from text3d.data.mesh_source import MESH_SUFFIXES, load_mesh_asset, render_mesh_asset
from text3d.data.objects import OBJECT_RADIUS, ProceduralObject, get_object
from text3d.errors import UserError
from text3d.io import atomic_path, write_image, write_json
from text3d.renderer.cameras import Cameras, spherical_cameras

GENERATOR_VERSION = 1
"""Bump when the rendered images of an unchanged object/seed change."""

DEFAULT_LIGHT_DIR: tuple[float, float, float] = (0.6, 0.3, 0.75)
"""Towards the light, world space: from the front (+x), a little to the side, from above."""
DEFAULT_AMBIENT = 0.3

TRACE_BOUND = 1.0
"""Rays are traced only inside this sphere around the origin (objects lie within :data:`OBJECT_RADIUS`)."""
TRACE_STEPS = 96
HIT_EPS = 1e-3
NORMAL_EPS = 1e-3
SUPERSAMPLE = 2

TRAIN_ELEVATION = (-10.0, 60.0)
TEST_ELEVATION = (5.0, 35.0)


def trace(sdf: Callable[[Tensor], Tensor], origins: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
    """Sphere-trace rays ``origins, directions: [N, 3]`` (unit directions) against ``sdf``.

    Returns ``hit: [N]`` bool and ``points: [N, 3]`` (meaningful where ``hit``).
    """
    # Clip each ray to the bounding sphere: start at its entry, give up beyond its exit.
    b = (origins * directions).sum(-1)
    c = origins.square().sum(-1) - TRACE_BOUND**2
    disc = b * b - c
    root = disc.clamp(min=0.0).sqrt()
    t_near, t_far = (-b - root).clamp(min=0.0), -b + root
    t = t_near.clone()
    # March all live rays together for at most TRACE_STEPS steps, dropping rays that have converged or left the
    # bounding sphere: most rays are done after a few steps, so this is several times faster than marching all.
    live = (disc > 0.0).nonzero().squeeze(1)
    for _ in range(TRACE_STEPS):
        if live.numel() == 0:
            break
        t_live = t[live]
        d = sdf(origins[live] + t_live[:, None] * directions[live])
        t_live = t_live + d
        t[live] = t_live
        live = live[(d.abs() >= HIT_EPS) & (t_live <= t_far[live])]
    points = origins + t[:, None] * directions
    hit = (disc > 0.0) & (t <= t_far) & (sdf(points).abs() < HIT_EPS)
    return hit, points


def normals(sdf: Callable[[Tensor], Tensor], points: Tensor) -> Tensor:
    """Unit outward normals ``[N, 3]`` at ``points: [N, 3]`` by central differences of ``sdf``."""
    offsets = NORMAL_EPS * torch.eye(3, dtype=points.dtype, device=points.device)  # [3, 3]
    probes = torch.cat([points[:, None, :] + offsets, points[:, None, :] - offsets], dim=1)  # [N, 6, 3]
    d = sdf(probes.reshape(-1, 3)).reshape(-1, 6)
    grad = d[:, :3] - d[:, 3:]
    return grad / grad.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def shade_rays(
    obj: ProceduralObject,
    origins: Tensor,
    directions: Tensor,
    light_dir: Tensor,
    ambient: float,
) -> Tensor:
    """Straight-alpha RGBA ``[N, 4]`` of rays ``origins, directions: [N, 3]``; alpha is 0 or 1 (no antialiasing)."""
    hit, points = trace(obj.sdf, origins, directions)
    rgba = torch.zeros(origins.shape[0], 4, dtype=origins.dtype, device=origins.device)
    p = points[hit]
    if p.shape[0] > 0:
        lambert = (normals(obj.sdf, p) @ light_dir).clamp(min=0.0)
        rgba[hit, :3] = obj.color(p) * (ambient + (1.0 - ambient) * lambert)[:, None]
        rgba[hit, 3] = 1.0
    return rgba


def render_object(
    obj: ProceduralObject,
    cameras: Cameras,
    supersample: int = SUPERSAMPLE,
    light_dir: tuple[float, float, float] = DEFAULT_LIGHT_DIR,
    ambient: float = DEFAULT_AMBIENT,
    chunk: int = 1 << 16,
) -> Tensor:
    """Render ``obj`` from each camera: RGBA ``[B, H, W, 4]`` in [0, 1], straight (not premultiplied) alpha.

    Each pixel averages ``supersample x supersample`` rays, so silhouette pixels get fractional alpha.
    About ``chunk`` rays (at least one view's) are generated and traced at a time to bound memory.
    """
    s = supersample
    h, w = cameras.height, cameras.width
    light = torch.tensor(light_dir, dtype=cameras.c2w.dtype, device=cameras.device)
    light = light / light.norm()
    views_per_group = max(1, chunk // (h * s * w * s))
    images = []
    for v in range(0, len(cameras), views_per_group):
        # Pixel centres of the s-times finer image (same field of view) are exactly the sub-pixel sample positions.
        fine = Cameras(cameras.c2w[v : v + views_per_group], cameras.fov_y[v : v + views_per_group], h * s, w * s)
        origins, directions = (r.reshape(-1, 3) for r in fine.rays())
        rgba = torch.cat(
            [
                shade_rays(obj, origins[i : i + chunk], directions[i : i + chunk], light, ambient)
                for i in range(0, origins.shape[0], chunk)
            ]
        )
        # Average premultiplied colour and coverage over each pixel's samples, then un-premultiply.
        rgba = rgba.reshape(len(fine), h, s, w, s, 4)
        alpha = rgba[..., 3:].mean(dim=(2, 4))
        premultiplied = (rgba[..., :3] * rgba[..., 3:]).mean(dim=(2, 4))
        rgb = torch.where(alpha > 0.0, premultiplied / alpha.clamp(min=1e-12), 0.0)
        images.append(torch.cat([rgb, alpha], dim=-1))
    return torch.cat(images)


def random_train_cameras(n: int, seed: int, distance: float, fov_deg: float, resolution: int) -> Cameras:
    """``n`` seeded random views: azimuth uniform in [0, 360), elevation uniform over the sphere's band."""
    g = torch.Generator().manual_seed(seed)
    azimuth = 360.0 * torch.rand(n, generator=g, dtype=torch.float64)
    # Uniform in sin(elevation) = uniform over the band's area: no pile-up of views near the top.
    lo, hi = (math.sin(math.radians(e)) for e in TRAIN_ELEVATION)
    elevation = torch.rad2deg(torch.asin(lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)))
    return _cameras(azimuth, elevation, distance, fov_deg, resolution)


def orbit_test_cameras(n: int, distance: float, fov_deg: float, resolution: int) -> Cameras:
    """An orbit of ``n`` views evenly spaced in azimuth, offset by half a step from the front, with elevation
    swinging twice between 5 and 35 degrees."""
    i = torch.arange(n, dtype=torch.float64)
    azimuth = (i + 0.5) * (360.0 / n)
    lo, hi = TEST_ELEVATION
    elevation = 0.5 * (lo + hi) - 0.5 * (hi - lo) * torch.cos(4.0 * math.pi * i / n)
    return _cameras(azimuth, elevation, distance, fov_deg, resolution)


def _cameras(azimuth: Tensor, elevation: Tensor, distance: float, fov_deg: float, resolution: int) -> Cameras:
    # Angles are drawn in float64 so the float32 poses do not depend on accumulated rounding.
    full = torch.ones_like(azimuth)
    cams = spherical_cameras(azimuth, elevation, distance * full, fov_deg * full, resolution, resolution)
    return Cameras(cams.c2w.float(), cams.fov_y.float(), resolution, resolution)


def ground_truth_mesh(obj: ProceduralObject, resolution: int = 128) -> trimesh.Trimesh:
    """The object's surface by marching cubes on its SDF over the tracing sphere's cube (for Chamfer distances)."""
    from skimage.measure import marching_cubes

    r = TRACE_BOUND
    axis = torch.linspace(-r, r, resolution)
    pts = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    sdf = torch.cat([obj.sdf(chunk) for chunk in pts.split(262144)]).reshape((resolution,) * 3).numpy()
    spacing = 2 * r / (resolution - 1)
    # The SDF grows outwards, so "ascent" would wind the faces inwards.
    verts, faces, _, _ = marching_cubes(sdf, level=0.0, spacing=(spacing,) * 3, gradient_direction="descent")
    return trimesh.Trimesh(verts - r, faces, process=False)


def make_dataset(
    out_dir: str | os.PathLike,
    object_name: str,
    n_train: int = 100,
    n_test: int = 20,
    resolution: int = 64,
    seed: int = 0,
    distance: float = 2.5,
    fov_deg: float = 40.0,
) -> Path:
    """Render ``object_name`` into a NeRF-synthetic-style dataset in ``out_dir`` and return the folder.

    ``object_name`` is a procedural object's name or the path of a mesh file (OBJ, GLB/glTF, PLY, ...; textured
    or vertex-coloured), which is centred, scaled to the objects' size and rendered with the rasterizer.
    Writes ``train/r_{i}.png`` and ``test/r_{i}.png`` (RGBA, square ``resolution``), ``transforms_train.json``,
    ``transforms_test.json`` (``camera_angle_x`` = ``fov_deg`` in radians, c2w ``transform_matrix`` per frame),
    the ground-truth surface ``mesh.ply`` and ``meta.json``. Deterministic for a given seed. Cameras look at the
    origin from ``distance``.
    """
    if Path(object_name).suffix.lower() in MESH_SUFFIXES:
        asset = load_mesh_asset(object_name)

        def render(cameras: Cameras) -> Tensor:
            return render_mesh_asset(asset, cameras, SUPERSAMPLE, DEFAULT_LIGHT_DIR, DEFAULT_AMBIENT)

        truth = asset.trimesh()
    else:
        obj = get_object(object_name)

        def render(cameras: Cameras) -> Tensor:
            return render_object(obj, cameras)

        truth = None  # computed after the argument checks: it costs a second
    if n_train < 1 or n_test < 1:
        raise UserError(f"need at least one train and one test view, got n_train={n_train}, n_test={n_test}")
    if resolution < 1:
        raise UserError(f"resolution must be positive, got {resolution}")
    if not 0.0 < fov_deg < 180.0:
        raise UserError(f"fov_deg must be in (0, 180), got {fov_deg}")
    if distance <= OBJECT_RADIUS:
        raise UserError(f"distance must exceed the object radius {OBJECT_RADIUS}, got {distance}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"dataset output {out} exists and is not a folder")

    splits = {
        "train": random_train_cameras(n_train, seed, distance, fov_deg, resolution),
        "test": orbit_test_cameras(n_test, distance, fov_deg, resolution),
    }
    for split, cameras in splits.items():
        images = render(cameras)
        for i, image in enumerate(images):
            write_image(out / split / f"r_{i}.png", image.numpy())
        # The transforms go after the images so that a finished JSON never points at missing files.
        frames = [
            {"file_path": f"./{split}/r_{i}", "transform_matrix": c2w.double().tolist()}
            for i, c2w in enumerate(cameras.c2w)
        ]
        write_json(out / f"transforms_{split}.json", {"camera_angle_x": math.radians(fov_deg), "frames": frames})
    truth = truth if truth is not None else ground_truth_mesh(obj)
    with atomic_path(out / "mesh.ply") as tmp:
        truth.export(tmp, file_type="ply")
    write_json(
        out / "meta.json",
        {
            "object": object_name,
            "generator": "text3d.data.synthetic",
            "generator_version": GENERATOR_VERSION,
            "seed": seed,
            "resolution": resolution,
            "n_train": n_train,
            "n_test": n_test,
            "distance": distance,
            "fov_deg": fov_deg,
        },
    )
    return out
