"""Mesh files as dataset sources, and the ground-truth mesh every generated dataset carries."""

import numpy as np
import PIL.Image
import pytest
import torch
import trimesh

from text3d.data.mesh_source import load_mesh_asset
from text3d.data.nerf_synthetic import load_views
from text3d.data.objects import OBJECT_RADIUS
from text3d.data.synthetic import DEFAULT_AMBIENT, DEFAULT_LIGHT_DIR, make_dataset
from text3d.errors import UserError


def lit(color, normal):
    light = np.asarray(DEFAULT_LIGHT_DIR) / np.linalg.norm(DEFAULT_LIGHT_DIR)
    return np.asarray(color) * (DEFAULT_AMBIENT + (1 - DEFAULT_AMBIENT) * max(0.0, float(np.dot(normal, light))))


def test_vertex_coloured_mesh_becomes_a_dataset(tmp_path):
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=3.0)  # any size: it is normalised
    sphere.visual.vertex_colors = np.tile([[51, 153, 204, 255]], (len(sphere.vertices), 1)).astype(np.uint8)
    sphere.export(tmp_path / "ball.ply")
    out = make_dataset(tmp_path / "ds", str(tmp_path / "ball.ply"), n_train=3, n_test=2, resolution=48)
    views = load_views(out, "test")
    alpha = views.images[..., 3]
    # Silhouette: the projected disc of a radius-0.75 sphere seen from 2.5 with a 40 degree field of view.
    d, r = 2.5, OBJECT_RADIUS
    focal = 0.5 * 48 / np.tan(np.radians(20))
    disc = np.pi * (focal * r / np.sqrt(d * d - r * r)) ** 2
    assert (alpha[0] > 0.5).sum().item() == pytest.approx(disc, rel=0.06)
    # The centre pixel looks straight at the sphere along the camera direction.
    cam = views.cameras.position[0].numpy()
    expected = lit([0.2, 0.6, 0.8], cam / np.linalg.norm(cam))
    np.testing.assert_allclose(views.images[0, 24, 24, :3].numpy(), expected, atol=0.03)
    truth = trimesh.load(out / "mesh.ply", process=False)
    assert np.linalg.norm(truth.vertices, axis=1).max() == pytest.approx(OBJECT_RADIUS, rel=1e-4)


def test_textured_mesh_colours_come_from_its_texture(tmp_path):
    box = trimesh.creation.box(extents=(1, 1, 1))
    box = box.unwrap() if hasattr(box, "unwrap") else box
    uv = np.clip(box.vertices[:, :2] + 0.5, 0, 1)  # any valid uv; the image is one colour
    image = PIL.Image.new("RGB", (8, 8), (255, 128, 0))
    box.visual = trimesh.visual.TextureVisuals(uv=uv, image=image)
    box.export(tmp_path / "box.glb")
    asset = load_mesh_asset(tmp_path / "box.glb")
    assert asset.texture is not None and asset.vertex_colors is None
    torch.testing.assert_close(asset.texture[1][0, 0], torch.tensor([1.0, 128 / 255, 0.0]))


def test_plain_mesh_is_grey_and_bad_files_are_refused(tmp_path):
    trimesh.creation.box().export(tmp_path / "plain.stl")
    asset = load_mesh_asset(tmp_path / "plain.stl")
    assert torch.allclose(asset.vertex_colors, torch.full_like(asset.vertex_colors, 0.7))
    with pytest.raises(UserError, match="does not exist"):
        load_mesh_asset(tmp_path / "missing.obj")
    (tmp_path / "broken.obj").write_text("this is not an obj file\n")
    with pytest.raises(UserError, match="broken.obj"):
        load_mesh_asset(tmp_path / "broken.obj")


def test_procedural_dataset_carries_its_ground_truth(tiny_dataset):
    truth = trimesh.load(tiny_dataset / "mesh.ply", process=False)
    assert truth.is_watertight and truth.volume > 0
    radius = np.linalg.norm(truth.vertices, axis=1)
    assert radius.mean() == pytest.approx(0.5, abs=0.01)  # the procedural sphere


def test_gltf_and_obj_files_are_y_up_and_ply_z_up(tmp_path):
    cone = trimesh.creation.cone(radius=0.5, height=2.0)  # apex along +z
    cone.export(tmp_path / "z_up.ply")
    y_up = cone.copy()
    y_up.vertices = y_up.vertices[:, [1, 2, 0]]  # the same cone in glTF's axes: apex along +Y
    for name in ("y_up.glb", "y_up.obj"):
        y_up.export(tmp_path / name)
    for name in ("z_up.ply", "y_up.glb", "y_up.obj"):
        v = load_mesh_asset(tmp_path / name).mesh.vertices
        top = v[v[:, 2].argmax()]
        assert top[2] > 0.6 and abs(top[0]) < 1e-4 and abs(top[1]) < 1e-4, name  # the apex is up in the world
