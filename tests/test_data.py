"""Tests for text3d.data: procedural SDF objects, the sphere-tracing renderer, dataset writing and loading."""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from torch import Tensor

from text3d.data.nerf_synthetic import ViewSet, load_views
from text3d.data.objects import (
    OBJECT_RADIUS,
    OBJECTS,
    get_object,
    sd_box,
    sd_cone,
    sd_cylinder,
    sd_sphere,
    sd_torus,
    smooth_union,
)
from text3d.data.synthetic import (
    DEFAULT_AMBIENT,
    DEFAULT_LIGHT_DIR,
    make_dataset,
    orbit_test_cameras,
    random_train_cameras,
    render_object,
)
from text3d.errors import UserError
from text3d.io import write_image, write_json
from text3d.renderer.cameras import Cameras, look_at, spherical_cameras

# ---------------------------------------------------------------------------------------------------------------------
# SDFs

PRIMITIVES: dict[str, Callable[[Tensor], Tensor]] = {
    "sphere": lambda x: sd_sphere(x, 0.4, (0.1, -0.2, 0.05)),
    "box": lambda x: sd_box(x, (0.3, 0.2, 0.1)),
    "rounded_box": lambda x: sd_box(x, (0.3, 0.2, 0.25), (0.0, 0.1, 0.0), rounding=0.08),
    "torus": lambda x: sd_torus(x, 0.4, 0.1, (0.0, 0.0, 0.2)),
    "cylinder": lambda x: sd_cylinder(x, 0.3, 0.4),
    "cone": lambda x: sd_cone(x, 0.4, 0.3),
    "frustum": lambda x: sd_cone(x, 0.4, 0.3, top_radius=0.15, center=(0.1, 0.0, 0.0)),
    "object_sphere": OBJECTS["sphere"].sdf,
    "object_rounded_box": OBJECTS["rounded_box"].sdf,
    "object_torus": OBJECTS["torus"].sdf,
}


def _near_surface_points(sdf: Callable[[Tensor], Tensor], band: float) -> Tensor:
    x = torch.rand(60_000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2.0 - 1.0
    x = x[sdf(x).abs() < band]
    assert x.shape[0] > 200
    return x


@pytest.mark.parametrize("name", list(PRIMITIVES))
def test_primitive_is_an_exact_distance(name: str) -> None:
    sdf = PRIMITIVES[name]
    x = _near_surface_points(sdf, 0.2).requires_grad_(True)
    d = sdf(x)
    (grad,) = torch.autograd.grad(d.sum(), x)
    assert torch.allclose(grad.norm(dim=-1), torch.ones(len(x), dtype=x.dtype), atol=1e-6)
    # Stepping back by the distance along the gradient lands exactly on the surface.
    projected = (x - d[:, None] * grad).detach()
    assert sdf(projected).abs().max() < 1e-6


def test_primitive_values() -> None:
    def at(f: Callable[[Tensor], Tensor], *p: float) -> float:
        return f(torch.tensor([p], dtype=torch.float64)).item()

    assert at(lambda x: sd_box(x, (0.3, 0.2, 0.1)), 1.0, 0.0, 0.0) == pytest.approx(0.7)
    assert at(lambda x: sd_box(x, (0.3, 0.2, 0.1)), 0.0, 0.0, 0.0) == pytest.approx(-0.1)
    assert at(lambda x: sd_box(x, (0.3, 0.3, 0.3), rounding=0.1), 0.5, 0.5, 0.0) == pytest.approx(
        math.hypot(0.3, 0.3) - 0.1
    )
    assert at(lambda x: sd_torus(x, 0.4, 0.1), 0.0, 0.4, 0.0) == pytest.approx(-0.1)
    assert at(lambda x: sd_torus(x, 0.4, 0.1), 0.0, 0.0, 0.0) == pytest.approx(0.3)
    assert at(lambda x: sd_torus(x, 0.4, 0.1), 0.4, 0.0, 0.5) == pytest.approx(0.4)  # z-up: ring in xy
    assert at(lambda x: sd_cylinder(x, 0.3, 0.4), 0.0, 0.0, 1.0) == pytest.approx(0.6)
    assert at(lambda x: sd_cylinder(x, 0.3, 0.4), 1.0, 0.0, 0.0) == pytest.approx(0.7)
    assert at(lambda x: sd_cone(x, 0.4, 0.3), 0.0, 0.0, 1.0) == pytest.approx(0.7)  # above the apex
    assert at(lambda x: sd_cone(x, 0.4, 0.3), 0.0, 0.0, -1.0) == pytest.approx(0.7)  # below the base
    assert at(lambda x: sd_cone(x, 0.4, 0.3), 0.0, 0.0, -0.25) == pytest.approx(-0.05)  # just above the base
    assert at(lambda x: sd_cone(x, 0.4, 0.3), 0.3, 0.0, -0.5) == pytest.approx(0.2)  # below the base's rim
    assert at(lambda x: sd_cone(x, 0.4, 0.3), 0.0, -0.6, -0.3) == pytest.approx(0.2)  # beside the base's rim
    frustum = PRIMITIVES["frustum"]
    assert at(frustum, 0.2, 0.0, 0.5) == pytest.approx(0.2)  # above the top cap (centred at x = 0.1)
    assert at(frustum, 0.1, 0.0, 0.0) == pytest.approx(-(0.4 + 0.15) / 2 * 0.6 / math.hypot(0.6, 0.25))


@pytest.mark.parametrize("name", ["cylinder", "cone", "frustum"])
def test_primitive_sign_matches_inside_test(name: str) -> None:
    x = torch.rand(20_000, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) - 0.5
    r, z = x[:, :2].norm(dim=-1), x[:, 2]
    if name == "cylinder":
        inside = (r < 0.3) & (z.abs() < 0.4)
    elif name == "cone":
        inside = (z.abs() < 0.3) & (r < 0.4 * (0.3 - z) / 0.6)
    else:
        r = (x[:, :2] - torch.tensor([0.1, 0.0], dtype=x.dtype)).norm(dim=-1)
        inside = (z.abs() < 0.3) & (r < 0.4 + (0.15 - 0.4) * (z + 0.3) / 0.6)
    assert torch.equal(PRIMITIVES[name](x) < 0, inside)


def test_smooth_union_is_a_lower_bound_that_blends_only_nearby() -> None:
    a = torch.linspace(-1.0, 1.0, 101)
    b = torch.full_like(a, 0.2)
    u = smooth_union(a, b, 0.1)
    assert (u <= torch.minimum(a, b) + 1e-7).all()
    assert (u >= torch.minimum(a, b) - 0.1 / 4 - 1e-7).all()
    far = (a - b).abs() > 0.1
    assert torch.allclose(u[far], torch.minimum(a, b)[far])


INTERIOR = {
    "sphere": [(0.0, 0.0, 0.0), (0.0, 0.0, 0.45)],
    "rounded_box": [(0.0, 0.0, 0.0), (0.35, 0.25, -0.2)],
    "torus": [(0.45, 0.0, 0.0), (0.0, -0.5, 0.1)],
    "toy": [(0.0, 0.0, -0.2), (0.03, 0.0, 0.2), (0.03, 0.0, 0.55), (0.27, 0.0, 0.2), (-0.3, 0.0, -0.2)],
}


def test_registry_has_the_required_objects() -> None:
    assert {"sphere", "rounded_box", "torus", "toy"} <= set(OBJECTS)
    assert all(OBJECTS[name].name == name for name in OBJECTS)
    assert get_object("toy") is OBJECTS["toy"]
    with pytest.raises(UserError, match=r"unknown object 'teapot'.*rounded_box, sphere, torus, toy"):
        get_object("teapot")


@pytest.mark.parametrize("name", sorted(OBJECTS))
def test_object_sdf_and_colour(name: str) -> None:
    obj = OBJECTS[name]
    assert (obj.sdf(torch.tensor(INTERIOR[name])) < 0).all()
    assert obj.sdf(torch.zeros(7, 3)).shape == (7,)
    # Fits inside the bounding sphere: positive everywhere outside it (random directions and radii).
    g = torch.Generator().manual_seed(2)
    directions = torch.randn(20_000, 3, generator=g)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    radii = OBJECT_RADIUS + 2.0 * torch.rand(20_000, 1, generator=g) ** 2
    assert (obj.sdf(directions * radii) > 0).all()
    # The surface is non-empty and actually reaches towards the bound (not a speck).
    surface = _near_surface_points(obj.sdf, 0.02).float()
    assert surface.norm(dim=-1).max() > 0.4
    color = obj.color(surface)
    assert color.shape == (len(surface), 3)
    assert (color >= 0).all() and (color <= 1).all()


def test_toy_has_distinct_part_colours() -> None:
    toy = OBJECTS["toy"]
    points = torch.tensor([(0.0, 0.0, -0.1), (0.03, 0.0, 0.25), (0.03, 0.0, 0.5), (0.27, 0.0, 0.2)])
    colours = {tuple(round(v, 3) for v in c) for c in toy.color(points).tolist()}
    assert len(colours) == 4


# ---------------------------------------------------------------------------------------------------------------------
# Rendering


def _sphere_view(resolution: int) -> Cameras:
    one = torch.ones(1)
    return spherical_cameras(30.0 * one, 20.0 * one, 2.5 * one, 40.0 * one, resolution, resolution)


def test_rendered_sphere_matches_the_projected_disc() -> None:
    cams = _sphere_view(64)
    rgba = render_object(get_object("sphere"), cams)
    assert rgba.shape == (1, 64, 64, 4)
    assert rgba.min() >= 0 and rgba.max() <= 1
    alpha = rgba[0, ..., 3]
    # A sphere of radius R seen from distance D is a disc of angular radius asin(R / D) around the image centre.
    radius_px = cams.focal.item() * math.tan(math.asin(0.5 / 2.5))
    assert (alpha > 0.5).sum().item() == pytest.approx(math.pi * radius_px**2, rel=0.02)
    # Supersampling gives fractional coverage on the silhouette, and the corners are empty.
    assert ((alpha > 0.05) & (alpha < 0.95)).sum() > 2 * math.pi * radius_px * 0.5
    assert alpha[0, 0] == 0 and alpha[-1, -1] == 0
    assert (rgba[0][alpha == 0][:, :3] == 0).all()
    # Straight alpha: a partly covered pixel keeps the full surface colour, not one darkened by coverage.
    edge = (alpha > 0.2) & (alpha < 0.8)
    base = get_object("sphere").color(torch.zeros(1, 3))[0]
    assert (rgba[0][edge][:, :3] <= base + 1e-6).all()
    assert rgba[0][edge][:, :3].max() > 0.5 * base.max()


def test_centre_pixel_has_the_lambertian_colour() -> None:
    cams = _sphere_view(65)  # odd size: the centre pixel looks straight at the sphere's nearest point
    sphere = get_object("sphere")
    normal = cams.position[0] / cams.position[0].norm()
    base = sphere.color(torch.zeros(1, 3))[0]
    light = torch.tensor(DEFAULT_LIGHT_DIR) / torch.tensor(DEFAULT_LIGHT_DIR).norm()
    expected = base * (DEFAULT_AMBIENT + (1 - DEFAULT_AMBIENT) * (normal @ light).clamp(min=0))
    assert torch.allclose(render_object(sphere, cams)[0, 32, 32, :3], expected, atol=0.01)
    # A light at the camera gives the full colour; a light behind the sphere leaves only the ambient term.
    front = render_object(sphere, cams, 1, light_dir=tuple(normal.tolist()), ambient=0.2)[0, 32, 32, :3]
    back = render_object(sphere, cams, 1, light_dir=tuple((-normal).tolist()), ambient=0.2)[0, 32, 32, :3]
    assert torch.allclose(front, base, atol=0.01)
    assert torch.allclose(back, 0.2 * base, atol=1e-5)


def test_shading_is_view_independent() -> None:
    # Two cameras in very different directions look at the same surface point through their centre pixel.
    normal = torch.tensor([1.0, 0.3, 0.4]) / torch.tensor([1.0, 0.3, 0.4]).norm()
    point = 0.5 * normal
    eyes = point + 2.0 * torch.stack([normal + torch.tensor([0.0, 0.6, 0.0]), normal - torch.tensor([0.0, 0.0, 0.6])])
    cams = Cameras(look_at(eyes, point.expand(2, 3)), torch.full((2,), 0.6), 33, 33)
    rgba = render_object(get_object("sphere"), cams, supersample=1)
    assert rgba[0, 16, 16, 3] == 1 and rgba[1, 16, 16, 3] == 1
    assert torch.allclose(rgba[0, 16, 16], rgba[1, 16, 16], atol=1e-4)


# ---------------------------------------------------------------------------------------------------------------------
# make_dataset and load_views round trip


def _transforms(root: Path, split: str) -> dict:
    return json.loads((root / f"transforms_{split}.json").read_text())


def _c2w(root: Path, split: str) -> Tensor:
    return torch.tensor([f["transform_matrix"] for f in _transforms(root, split)["frames"]], dtype=torch.float32)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ds") / "toy", "toy", n_train=6, n_test=4, resolution=24, seed=3)


def test_make_dataset_writes_the_files(dataset: Path) -> None:
    names = {p.relative_to(dataset).as_posix() for p in dataset.rglob("*") if p.is_file()}
    expected = {"transforms_train.json", "transforms_test.json", "meta.json", "mesh.ply"}
    expected |= {f"train/r_{i}.png" for i in range(6)} | {f"test/r_{i}.png" for i in range(4)}
    assert names == expected
    meta = json.loads((dataset / "meta.json").read_text())
    assert (meta["object"], meta["seed"], meta["resolution"]) == ("toy", 3, 24)
    assert isinstance(meta["generator_version"], int)
    for split, n in (("train", 6), ("test", 4)):
        t = _transforms(dataset, split)
        assert t["camera_angle_x"] == pytest.approx(math.radians(40.0))
        assert [f["file_path"] for f in t["frames"]] == [f"./{split}/r_{i}" for i in range(n)]
        image = iio.imread(dataset / split / "r_0.png")
        assert image.shape == (24, 24, 4) and image.dtype == np.uint8
        assert 0 < (image[..., 3] > 0).mean() < 0.8  # the object is in view and not clipped to the full frame


def test_make_dataset_camera_layout(dataset: Path) -> None:
    for split, (lo, hi) in (("train", (-10.0, 60.0)), ("test", (5.0, 35.0))):
        cams = load_views(dataset, split).cameras
        assert torch.allclose(cams.position.norm(dim=-1), torch.full((len(cams),), 2.5))
        assert ((cams.elevation >= lo - 1e-3) & (cams.elevation <= hi + 1e-3)).all()
        # Cameras look at the origin: their +z (back) axis points from the origin to the camera.
        assert torch.allclose(cams.c2w[:, :3, 2], cams.position / 2.5, atol=1e-6)
    test = load_views(dataset, "test").cameras
    step = torch.remainder(test.azimuth.roll(-1) - test.azimuth, 360.0)
    assert torch.allclose(step, torch.full((4,), 90.0), atol=1e-3)
    assert test.elevation.max() - test.elevation.min() > 20.0


def test_view_distributions() -> None:
    train = random_train_cameras(4000, seed=0, distance=2.5, fov_deg=40.0, resolution=8)
    el, az = train.elevation, torch.remainder(train.azimuth, 360.0)
    assert el.min() == pytest.approx(-10.0, abs=0.5) and el.max() == pytest.approx(60.0, abs=0.5)
    assert az.min() < 1.0 and az.max() > 359.0
    # Uniform over the sphere's band: sin(elevation) is uniform, so its mean is the midpoint.
    mid = (math.sin(math.radians(-10.0)) + math.sin(math.radians(60.0))) / 2
    assert torch.sin(torch.deg2rad(el)).mean().item() == pytest.approx(mid, abs=0.02)
    assert torch.equal(random_train_cameras(5, 7, 2.5, 40.0, 8).c2w, random_train_cameras(5, 7, 2.5, 40.0, 8).c2w)
    test = orbit_test_cameras(20, distance=2.5, fov_deg=40.0, resolution=8)
    assert test.elevation.min() == pytest.approx(5.0, abs=1e-3) and test.elevation.max() == pytest.approx(
        35.0, abs=1e-3
    )
    az = torch.remainder(test.azimuth, 360.0).sort().values
    assert torch.allclose(az, torch.arange(20) * 18.0 + 9.0, atol=1e-3)  # even spacing, off the front


def test_make_dataset_is_deterministic(dataset: Path, tmp_path: Path) -> None:
    again = make_dataset(tmp_path / "again", "toy", n_train=6, n_test=4, resolution=24, seed=3)
    for path in dataset.rglob("*"):
        if path.is_file():
            assert (again / path.relative_to(dataset)).read_bytes() == path.read_bytes(), path
    other = make_dataset(tmp_path / "other", "toy", n_train=6, n_test=4, resolution=24, seed=4)
    assert not torch.equal(_c2w(other, "train"), _c2w(dataset, "train"))
    assert torch.equal(_c2w(other, "test"), _c2w(dataset, "test"))


def test_make_dataset_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown object 'nope'"):
        make_dataset(tmp_path / "a", "nope")
    with pytest.raises(UserError, match="at least one"):
        make_dataset(tmp_path / "b", "sphere", n_train=0)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_load_views_round_trip(dataset: Path) -> None:
    views = load_views(dataset, "train")
    assert isinstance(views, ViewSet) and len(views) == 6
    assert views.images.shape == (6, 24, 24, 4) and views.images.dtype == torch.float32
    assert torch.equal(views.cameras.c2w, _c2w(dataset, "train"))
    assert torch.equal(views.cameras.index, torch.arange(6))
    assert (views.cameras.height, views.cameras.width) == (24, 24)
    assert torch.allclose(views.cameras.fov_y, torch.full((6,), math.radians(40.0)))
    png = torch.from_numpy(iio.imread(dataset / "train" / "r_2.png").astype(np.float32) / 255.0)
    assert torch.equal(views.images[2], png)
    # The loaded poses reproduce the stored pixels: images and cameras agree.
    rerendered = render_object(get_object("toy"), views.cameras)
    assert (rerendered - views.images).abs().max() <= 0.5 / 255 + 1e-5
    white = views.composite(torch.ones(3))
    a = views.images[..., 3:]
    assert torch.allclose(white, views.images[..., :3] * a + (1 - a))


def test_load_views_downscale_averages_premultiplied_colour(dataset: Path, tmp_path: Path) -> None:
    full = load_views(dataset, "train")
    half = load_views(dataset, "train", downscale=2)
    assert half.images.shape == (6, 12, 12, 4)
    assert (half.cameras.height, half.cameras.width) == (12, 12)
    assert torch.allclose(half.cameras.fov_y, full.cameras.fov_y)
    blocks = full.images.reshape(6, 12, 2, 12, 2, 4)
    assert torch.allclose(half.images[..., 3], blocks[..., 3].mean(dim=(2, 4)))
    # One opaque red pixel among three transparent green ones: the result is red at quarter coverage.
    image = np.zeros((2, 2, 4), np.uint8)
    image[..., 1] = 255
    image[0, 0] = (255, 0, 0, 255)
    _write_dataset(tmp_path, images=[image])
    small = load_views(tmp_path, "train", downscale=2).images[0, 0, 0]
    assert torch.allclose(small, torch.tensor([1.0, 0.0, 0.0, 0.25]))


# ---------------------------------------------------------------------------------------------------------------------
# load_views on hand-made datasets

IDENTITY = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4], [0, 0, 0, 1]]


def _rgba(h: int = 4, w: int = 4, channels: int = 4) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, channels), dtype=np.uint8)


def _write_dataset(
    root: Path, images: list[np.ndarray] | None = None, file_paths: list[str] | None = None, fov_x: float = 0.8
) -> None:
    images = [_rgba(), _rgba()] if images is None else images
    file_paths = [f"./train/r_{i}" for i in range(len(images))] if file_paths is None else file_paths
    for i, image in enumerate(images):
        write_image(root / "train" / f"r_{i}.png", image)
    frames = [{"file_path": p, "transform_matrix": IDENTITY} for p in file_paths]
    write_json(root / "transforms_train.json", {"camera_angle_x": fov_x, "frames": frames})


def test_load_views_blender_style_rgb_non_square(tmp_path: Path) -> None:
    images = [_rgba(16, 24, 3), _rgba(16, 24, 3)]
    _write_dataset(tmp_path, images, file_paths=["train/r_0.png", "./train/r_1"], fov_x=0.9)
    views = load_views(tmp_path, "train")
    assert views.images.shape == (2, 16, 24, 4)
    assert (views.images[..., 3] == 1).all()
    assert torch.equal(views.images[1, ..., :3], torch.from_numpy(images[1].astype(np.float32) / 255))
    assert views.cameras.fov_y[0].item() == pytest.approx(2 * math.atan(math.tan(0.45) * 16 / 24))
    assert torch.equal(views.cameras.c2w[0], torch.tensor(IDENTITY, dtype=torch.float32))


def _write_png16(path: Path, array: np.ndarray) -> None:
    """A 16-bit RGBA PNG (imageio/Pillow cannot write these)."""
    h, w, _ = array.shape
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, 6, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def test_load_views_reads_16_bit_png(tmp_path: Path) -> None:
    _write_dataset(tmp_path, images=[_rgba()])
    array = np.random.default_rng(1).integers(0, 65536, (4, 4, 4)).astype(np.uint16)
    _write_png16(tmp_path / "train" / "r_0.png", array)
    image = load_views(tmp_path, "train").images[0]
    assert (image - torch.from_numpy(array / 65535.0).float()).abs().max() <= 1.0 / 255


def _set_transforms(root: Path, text: str) -> None:
    (root / "transforms_train.json").write_text(text)


def _edit_transforms(root: Path, edit: Callable[[dict], object]) -> None:
    data = json.loads((root / "transforms_train.json").read_text())
    edit(data)
    (root / "transforms_train.json").write_text(json.dumps(data))


def _frame0(data: dict) -> dict:
    return data["frames"][0]


BROKEN: dict[str, tuple[Callable[[Path], object], str]] = {
    "malformed_json": (
        lambda r: _set_transforms(r, '{\n  "camera_angle_x": 0.8,\n  "frames": [,]\n}'),
        r"transforms_train\.json: malformed JSON at line 3, column 14",
    ),
    "top_level_list": (lambda r: _set_transforms(r, "[]"), r"transforms_train\.json: top level must be a JSON object"),
    "no_camera_angle": (
        lambda r: _edit_transforms(r, lambda d: d.pop("camera_angle_x")),
        "missing key 'camera_angle_x'",
    ),
    "camera_angle_string": (
        lambda r: _edit_transforms(r, lambda d: d.update(camera_angle_x="wide")),
        "'camera_angle_x' must be a number",
    ),
    "camera_angle_bool": (
        lambda r: _edit_transforms(r, lambda d: d.update(camera_angle_x=True)),
        "'camera_angle_x' must be a number",
    ),
    "no_frames": (lambda r: _edit_transforms(r, lambda d: d.pop("frames")), "missing key 'frames'"),
    "frames_not_list": (lambda r: _edit_transforms(r, lambda d: d.update(frames={})), "'frames' must be a list"),
    "frames_empty": (lambda r: _edit_transforms(r, lambda d: d.update(frames=[])), "'frames' is empty"),
    "frame_not_object": (
        lambda r: _edit_transforms(r, lambda d: d["frames"].__setitem__(1, "r_1")),
        r"frames\[1\] must be an object",
    ),
    "no_file_path": (
        lambda r: _edit_transforms(r, lambda d: _frame0(d).pop("file_path")),
        r"frames\[0\]: missing key 'file_path'",
    ),
    "file_path_not_string": (
        lambda r: _edit_transforms(r, lambda d: _frame0(d).update(file_path=3)),
        r"frames\[0\]\.file_path must be a non-empty string",
    ),
    "no_matrix": (
        lambda r: _edit_transforms(r, lambda d: _frame0(d).pop("transform_matrix")),
        r"frames\[0\]: missing key 'transform_matrix'",
    ),
    "matrix_3x4": (
        lambda r: _edit_transforms(r, lambda d: _frame0(d).update(transform_matrix=IDENTITY[:3])),
        r"frames\[0\]\.transform_matrix must be a 4x4 list of numbers",
    ),
    "matrix_not_numeric": (
        lambda r: _edit_transforms(r, lambda d: _frame0(d)["transform_matrix"][1].__setitem__(2, "0")),
        r"transform_matrix must be a 4x4 list of numbers",
    ),
    "matrix_nan": (
        lambda r: _edit_transforms(r, lambda d: _frame0(d)["transform_matrix"][0].__setitem__(3, float("nan"))),
        r"frames\[0\]\.transform_matrix has non-finite entries",
    ),
    "matrix_last_row": (
        lambda r: _edit_transforms(r, lambda d: _frame0(d)["transform_matrix"].__setitem__(3, [0, 0, 1, 1])),
        r"last row must be \[0, 0, 0, 1\]",
    ),
    "image_missing": (
        lambda r: (r / "train" / "r_1.png").unlink(),
        r"frames\[1\]\.file_path: image './train/r_1' not found .*r_1\.png",
    ),
    "image_unreadable": (
        lambda r: (r / "train" / "r_0.png").write_bytes(b"not a png"),
        r"r_0\.png: cannot read image",
    ),
    "image_sizes_differ": (
        lambda r: write_image(r / "train" / "r_1.png", _rgba(4, 6)),
        r"r_1\.png: image size 6x4 differs from the split's first image \(4x4\)",
    ),
    "image_grey": (
        lambda r: write_image(r / "train" / "r_0.png", _rgba()[..., 0]),
        r"r_0\.png: expected an RGB or RGBA image, got 1 channel",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_load_views_rejects_broken_datasets(tmp_path: Path, case: str) -> None:
    _write_dataset(tmp_path)
    load_views(tmp_path, "train")  # valid before the breakage
    breakage, message = BROKEN[case]
    breakage(tmp_path)
    with pytest.raises(UserError, match=message) as info:
        load_views(tmp_path, "train")
    assert "\n" not in str(info.value)


def test_load_views_rejects_bad_locations_and_arguments(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_views(tmp_path / "nope", "train")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is not a folder"):
        load_views(tmp_path / "file", "train")
    _write_dataset(tmp_path)
    with pytest.raises(UserError, match=r"transforms_val\.json not found \(found: transforms_train\.json\)"):
        load_views(tmp_path, "val")
    with pytest.raises(UserError, match="downscale 3 does not divide the image size 4x4"):
        load_views(tmp_path, "train", downscale=3)
    with pytest.raises(UserError, match="downscale must be a positive integer"):
        load_views(tmp_path, "train", downscale=0)
