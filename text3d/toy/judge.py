"""Judge a 3D asset (or an image) of the toy world without any model: which of :data:`~text3d.toy.world.SHAPES`
its geometry is (Chamfer distance to canonical primitives; for images, the nearest canonical renders) and which of
:data:`~text3d.toy.world.COLORS` its surface is (mean hue and saturation)."""

from __future__ import annotations

import colorsys
import math
import os
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F
import trimesh
from scipy.spatial import cKDTree

from text3d.data.synthetic import ground_truth_mesh
from text3d.renderer.axes import file_to_world
from text3d.toy.vocabulary import COLORS, SHAPES, parse_caption
from text3d.toy.world import render_toy_batch, toy_object

SAMPLES = 3000
"""Surface points per mesh for the Chamfer distances (enough to separate the shapes by a wide margin)."""
ANGLES = 12
"""Rotations about z tried per shape. Every toy shape is symmetric under a quarter turn about z (the round ones
under any), so angles over [0, 90) degrees cover all orientations: 12 of them leave at most a 3.75 degree miss."""


@cache
def canonical_meshes(resolution: int = 64) -> dict[str, trimesh.Trimesh]:
    """Marching-cubes surface of every toy shape's SDF, by shape name (cached; do not modify the meshes)."""
    return {shape: ground_truth_mesh(toy_object(shape, "red"), resolution) for shape in SHAPES}


def _normalised_points(mesh: trimesh.Trimesh, seed: int) -> np.ndarray:
    """``[SAMPLES, 3]`` area-uniform surface points, centred on the bounding box, scaled to unit RMS radius.

    The RMS radius rather than the box diagonal or the largest radius: it does not change when the mesh turns about
    z (the diagonal of a cube's box does) and a few noisy or stray vertices barely move it.
    """
    points, _ = trimesh.sample.sample_surface(mesh, SAMPLES, seed=seed)
    points = points - mesh.bounds.mean(axis=0)
    return points / float(np.sqrt(np.square(points).sum(axis=1).mean()))


@cache
def _canonical_points() -> dict[str, tuple[np.ndarray, cKDTree]]:
    return {
        shape: (pts, cKDTree(pts))
        for shape, mesh in canonical_meshes().items()
        for pts in [_normalised_points(mesh, seed=1)]
    }


def _rotation_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def judge_shape(mesh: trimesh.Trimesh) -> tuple[str, dict[str, float]]:
    """The toy shape nearest to ``mesh`` and the distance to each shape.

    Both surfaces are centred on their bounding boxes and scaled to a unit RMS radius (so position and size do
    not matter); the distance is the symmetric Chamfer distance (as :func:`text3d.metrics.chamfer_distance`, in
    units of the RMS radius), the least over :data:`ANGLES` rotations of ``mesh`` about z.
    """
    points = _normalised_points(mesh, seed=0)
    tree = cKDTree(points)
    distances = {}
    for shape, (canon, canon_tree) in _canonical_points().items():
        best = math.inf
        for k in range(ANGLES):
            rot = _rotation_z(0.5 * math.pi * k / ANGLES)
            # Rotating the mesh by R is the same as rotating the canonical points by R^-1 for the other direction:
            # both KD-trees are built once.
            d_mesh = canon_tree.query(points @ rot.T, workers=-1)[0].mean()
            d_canon = tree.query(canon @ rot, workers=-1)[0].mean()
            best = min(best, 0.5 * float(d_mesh + d_canon))
        distances[shape] = best
    return min(distances, key=distances.__getitem__), distances


def _chroma(rgb: np.ndarray) -> np.ndarray:
    """``[N, 3]`` RGB in [0, 1] -> ``[N, 2]`` points ``s * (cos h, sin h)`` of the HSV hue/saturation disc.

    Lambertian shading scales a surface's RGB by one factor, which changes only HSV value: hue and saturation are
    shading-invariant, so the disc compares surface colours regardless of light (raw RGB distance would call a
    shadowed red "purple" or "black" sooner than "red").
    """
    hsv = np.array([colorsys.rgb_to_hsv(*c) for c in np.clip(rgb, 0.0, 1.0)]).reshape(-1, 3)
    angle = 2.0 * math.pi * hsv[:, 0]
    return hsv[:, 1:2] * np.stack([np.cos(angle), np.sin(angle)], axis=-1)


def judge_color(rgb: np.ndarray | trimesh.Trimesh) -> tuple[str, dict[str, float]]:
    """The named colour nearest to surface colours ``rgb: [N, 3]`` in [0, 1] (or a coloured mesh's), and the
    distance to each name on the hue/saturation disc (0 = same hue and saturation, 2 = opposite and saturated).

    Pale or dark samples have little or unreliable saturation and so pull little on the mean chroma.
    """
    if isinstance(rgb, trimesh.Trimesh):
        rgb = surface_colors(rgb)
    mean = _chroma(np.asarray(rgb, dtype=np.float64)).mean(axis=0)
    names = list(COLORS)
    refs = _chroma(np.array([COLORS[n] for n in names]))
    distances = {n: float(np.linalg.norm(mean - ref)) for n, ref in zip(names, refs)}
    return min(distances, key=distances.__getitem__), distances


def surface_colors(mesh: trimesh.Trimesh, n: int = SAMPLES, seed: int = 0) -> np.ndarray:
    """Albedo ``[n, 3]`` in [0, 1] at area-uniform surface points: texture (via interpolated UVs, times the base
    colour factor), vertex or face colours, or the material's main colour for an untextured mesh."""
    points, faces = trimesh.sample.sample_surface(mesh, n, seed=seed)
    bary = trimesh.triangles.points_to_barycentric(mesh.triangles[faces], points)  # [n, 3]
    corners = mesh.faces[faces]  # [n, 3] vertex ids
    visual = mesh.visual
    if visual.kind == "texture":
        material = visual.material
        image = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
        factor = getattr(material, "baseColorFactor", None)
        # trimesh keeps the factor as uint8 (0-255) or float (0-1), depending on how the material was made.
        factor = np.ones(3) if factor is None else np.asarray(factor, dtype=np.float64)[:3]
        factor = factor / 255.0 if factor.max() > 1.0 else factor
        if image is not None and visual.uv is not None:
            uv = (np.asarray(visual.uv)[corners] * bary[..., None]).sum(axis=1)
            rgb = trimesh.visual.uv_to_color(uv, image)[:, :3] / 255.0
            return rgb * factor
        return np.broadcast_to(factor, (n, 3)).copy()
    if visual.kind == "vertex":
        colors = np.asarray(visual.vertex_colors, dtype=np.float64)[:, :3] / 255.0
        return (colors[corners] * bary[..., None]).sum(axis=1)
    if visual.kind == "face":
        return np.asarray(visual.face_colors, dtype=np.float64)[faces, :3] / 255.0
    raise ValueError("mesh has no colours (no texture, vertex or face colours)")


def judge_glb(path: str | os.PathLike) -> dict[str, object]:
    """Judge a (textured) GLB: ``{"shape", "shape_distances", "color", "color_distances"}``.

    The file is read in glTF's axes (+Y up, as text3d's exports write them) and turned into the world's z-up ones.
    All its meshes (placed by the scene graph) count; the colour is that of the albedo over the whole surface, each
    mesh weighted by its area.
    """
    loaded = trimesh.load(path)
    meshes = loaded.dump() if isinstance(loaded, trimesh.Scene) else [loaded]
    meshes = [m for m in meshes if isinstance(m, trimesh.Trimesh) and len(m.faces) > 0]
    if not meshes:
        raise ValueError(f"{path} holds no triangle mesh")
    total = sum(m.area for m in meshes)
    colors = np.concatenate(
        [surface_colors(m, max(1, round(SAMPLES * m.area / total)), seed=i) for i, m in enumerate(meshes)]
    )
    geometry = trimesh.util.concatenate([trimesh.Trimesh(file_to_world(m.vertices), m.faces, process=False)
                                         for m in meshes])
    return _verdict(judge_shape(geometry)[1], colors)


def _verdict(shape_distances: dict[str, float], colors: np.ndarray) -> dict[str, object]:
    """``{"shape", "shape_distances", "color", "color_distances"}``: the nearest shape, and :func:`judge_color`."""
    color, color_distances = judge_color(colors)
    shape = min(shape_distances, key=shape_distances.__getitem__)
    return {"shape": shape, "shape_distances": shape_distances, "color": color, "color_distances": color_distances}


FOREGROUND = 0.15
"""A pixel is the object's when it is at least this far below white in some channel (the toy background is white)."""
IMAGE_LIBRARY = 1536
"""Canonical renders (random views, shapes, colours and light, from a fixed seed) that image shapes are matched to."""
NEIGHBOURS = 3
"""An image's distance to a shape is the mean over its this-many nearest renders of that shape."""
_CROP = 24


def _foreground(image: torch.Tensor) -> torch.Tensor:
    """``[3, H, W]`` on white -> ``[H, W]`` bool: the object's pixels."""
    return (1.0 - image.min(dim=0).values) > FOREGROUND


def _image_features(images: torch.Tensor) -> torch.Tensor:
    """``[N, 3, H, W]`` in [0, 1] on white -> ``[N, 2 * 24 * 24]``: the silhouette and its shading (colour removed),
    cropped to the silhouette's bounding square and resized, so that neither the object's colour nor its position and
    size in the frame matter; what is left is its outline and how light falls on its faces."""
    features = []
    for image in images:
        mask = _foreground(image)
        ys, xs = mask.nonzero(as_tuple=True)
        if ys.numel() == 0:
            features.append(torch.zeros(2 * _CROP * _CROP))
            continue
        cy, cx = (ys.min() + ys.max()) / 2.0, (xs.min() + xs.max()) / 2.0
        half = max(ys.max() - ys.min(), xs.max() - xs.min()).item() / 2.0 + 1.0
        value = image.max(dim=0).values
        shading = value / value[mask].max().clamp(min=1e-3)  # brightest object pixel = 1: colour-independent
        planes = torch.stack([mask.float(), shading * mask]).unsqueeze(0)
        h, w = mask.shape
        # An affine grid that maps the bounding square to the output: crop and resize in one resample.
        theta = torch.tensor([[half / (w / 2.0), 0.0, (cx.item() + 0.5) / (w / 2.0) - 1.0],
                              [0.0, half / (h / 2.0), (cy.item() + 0.5) / (h / 2.0) - 1.0]])
        grid = F.affine_grid(theta.unsqueeze(0), [1, 2, _CROP, _CROP], align_corners=False)
        features.append(F.grid_sample(planes, grid, align_corners=False).flatten())
    return torch.stack(features)


@cache
def _image_library(resolution: int) -> tuple[torch.Tensor, np.ndarray]:
    """Features of :data:`IMAGE_LIBRARY` canonical renders at ``resolution``² and their shape ids."""
    images, captions, _ = render_toy_batch(IMAGE_LIBRARY, resolution, torch.Generator().manual_seed(12345))
    shapes = np.array([SHAPES.index(parse_caption(c)[1]) for c in captions])
    return _image_features(images), shapes


def judge_image(image: torch.Tensor) -> dict[str, object]:
    """Judge one image ``[3, H, W]`` in [0, 1] of an object on white: ``{"shape", "shape_distances", "color",
    "color_distances"}``.

    Shape: the nearest canonical renders (same camera, light and shading distribution as the toy world, seen at the
    same size) by silhouette and shading; colour: :func:`judge_color` of the object's pixels.
    """
    image = image.detach().float().cpu().clamp(0.0, 1.0)
    library, shapes = _image_library(image.shape[-1])
    d = torch.cdist(_image_features(image[None]), library)[0].numpy()
    shape_distances = {s: float(np.sort(d[shapes == k])[:NEIGHBOURS].mean()) for k, s in enumerate(SHAPES)}
    mask = _foreground(image)
    pixels = image.permute(1, 2, 0)[mask].numpy() if mask.any() else np.ones((1, 3))
    return _verdict(shape_distances, pixels)
