
import numpy as np
import PIL.Image
import pytest
import torch
import trimesh
from trimesh.visual.material import PBRMaterial

from text3d.data.objects import OBJECT_RADIUS
from text3d.data.synthetic import ground_truth_mesh
from text3d.renderer.axes import world_to_file
from text3d.toy.judge import canonical_meshes, judge_color, judge_glb, judge_shape
from text3d.toy.vocabulary import COLORS, SHAPES, caption, parse_caption
from text3d.toy.world import render_toy_batch, sd_pyramid, toy_object


def test_captions_round_trip():
    for color in COLORS:
        for shape in SHAPES:
            assert parse_caption(caption(color, shape)) == (color, shape)
    assert parse_caption("  A Red   CUBE ") == ("red", "cube")
    for text in ("a pink cube", "a red dog", "red cube", "a red cube please", ""):
        assert parse_caption(text) is None


@pytest.mark.parametrize("shape", SHAPES)
def test_toy_objects_fit_and_are_solid(shape):
    obj = toy_object(shape, "blue")
    mesh = ground_truth_mesh(obj, resolution=48)
    radius = np.linalg.norm(mesh.vertices, axis=1).max()
    assert 0.55 < radius <= OBJECT_RADIUS
    assert mesh.volume > 0.05  # non-degenerate and wound outwards
    assert torch.allclose(obj.color(torch.zeros(5, 3)), torch.tensor(COLORS["blue"]).expand(5, 3))


def test_pyramid_sdf_is_the_distance_to_a_square_pyramid():
    # Base side 1 at z = -0.5, apex at z = 0.5. Points: below the base, above the apex, inside near the base, and the
    # centre, nearest to the slanted faces (plane 2x + z = 0.5 through the apex and a base edge).
    points = torch.tensor([[0.0, 0.0, -0.6], [0.0, 0.0, 1.0], [0.1, 0.0, -0.45], [0.0, 0.0, 0.0]])
    expected = torch.tensor([0.1, 0.5, -0.05, -0.5 / 5**0.5])
    assert torch.allclose(sd_pyramid(points, 0.5, 1.0), expected, atol=1e-6)


def test_render_toy_batch():
    images, captions, cameras = render_toy_batch(6, 16, torch.Generator().manual_seed(3))
    assert len(cameras) == 6 and cameras.height == cameras.width == 16
    assert images.shape == (6, 3, 16, 16) and images.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert len(captions) == 6 and all(parse_caption(c) is not None for c in captions)
    corners = images[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert torch.all(corners == 1.0)
    assert torch.all((images < 0.99).any(dim=1).flatten(1).sum(dim=1) > 10)  # every image shows an object
    again, captions_again, cameras_again = render_toy_batch(6, 16, torch.Generator().manual_seed(3))
    assert torch.equal(images, again) and captions == captions_again and torch.equal(cameras.c2w, cameras_again.c2w)
    other, _, _ = render_toy_batch(6, 16, torch.Generator().manual_seed(4))
    assert not torch.equal(images, other)
    # One chosen object in every image, seen from the views a random batch of the same seed gets.
    tori, tori_captions, tori_cameras = render_toy_batch(6, 16, torch.Generator().manual_seed(3), obj=("green", "torus"))
    assert tori_captions == ["a green torus"] * 6 and torch.equal(tori_cameras.c2w, cameras.c2w)
    hue = tori.permute(0, 2, 3, 1)[(tori < 0.99).any(dim=1)]
    assert (hue[:, 1] > hue[:, 0]).all() and (hue[:, 1] > hue[:, 2]).all()  # green wherever the object is
    with pytest.raises(ValueError, match="unknown toy object"):
        render_toy_batch(1, 16, torch.Generator(), obj=("teal", "torus"))


def test_judge_identifies_canonical_shapes():
    rng = np.random.default_rng(0)
    for shape, mesh in canonical_meshes().items():
        assert judge_shape(mesh)[0] == shape
        moved = mesh.copy()
        moved.apply_transform(trimesh.transformations.rotation_matrix(rng.uniform(0.0, 2 * np.pi), [0, 0, 1]))
        moved.apply_scale(rng.uniform(0.5, 2.0))
        moved.apply_translation(rng.normal(size=3))
        moved.vertices += rng.normal(scale=0.005 * moved.scale, size=moved.vertices.shape)
        best, distances = judge_shape(moved)
        assert best == shape, distances
        assert set(distances) == set(SHAPES)


def test_judge_color_ignores_shading():
    red = np.array(COLORS["red"])
    shades = np.linspace(0.25, 1.0, 50)[:, None]
    assert judge_color(np.tile(red, (10, 1)))[0] == "red"
    assert judge_color(red * shades)[0] == "red"
    for name, rgb in COLORS.items():
        assert judge_color(np.array(rgb) * shades)[0] == name


def test_judge_glb_textured_cylinder(tmp_path):
    green = np.array(COLORS["green"])
    mesh = trimesh.creation.cylinder(radius=0.9, height=1.8, sections=64)
    image = PIL.Image.fromarray(np.full((8, 8, 3), np.round(green * 255), np.uint8))
    uv = 0.5 + 0.4 * mesh.vertices[:, :2] / 0.9
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, material=PBRMaterial(baseColorTexture=image))
    mesh.apply_translation([0.3, -0.2, 0.1])
    mesh.vertices = world_to_file(mesh.vertices)  # a GLB is +Y up
    path = tmp_path / "cylinder.glb"
    path.write_bytes(trimesh.exchange.gltf.export_glb(trimesh.Scene({"model": mesh})))
    verdict = judge_glb(path)
    assert verdict["shape"] == "cylinder", verdict
    assert verdict["color"] == "green", verdict


def test_judge_glb_reads_text3d_exports(tmp_path):
    from text3d.export.mesh_files import export_textured_mesh

    mesh = canonical_meshes()["pyramid"]
    texture = np.zeros((16, 16, 3), np.uint8)
    texture[:] = np.round(np.array(COLORS["purple"]) * 255)
    files = export_textured_mesh(world_to_file(mesh.vertices), mesh.faces, np.full((len(mesh.vertices), 2), 0.5),
                                 texture, tmp_path)
    verdict = judge_glb(files["glb"])
    assert (verdict["shape"], verdict["color"]) == ("pyramid", "purple")


@pytest.mark.parametrize(
    "text, normal",
    [("an orange pyramid", "a orange pyramid"), ("A Blue Torus.", "a blue torus"), ("red cube", "a red cube"),
     ("The green cone!", "a green cone"), ("  a   YELLOW sphere ", "a yellow sphere"), ('"a purple cylinder"',
     "a purple cylinder"), ("a red cube please", None), ("a pink cube", None), ("an", None), ("", None)],
)
def test_a_persons_wording_reads_as_the_toy_caption(text, normal):
    from text3d.toy.vocabulary import normal_caption

    assert normal_caption(text) == normal


def test_the_readme_headline_runs_the_toy_example():
    """The first command a new user runs is the prompt chosen for it (right for every seed tried)."""
    import re
    from pathlib import Path

    from text3d.toy.bundled import TOY_EXAMPLE, check_toy_prompt

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert re.search(r'text3d generate "([^"]+)"', readme).group(1) == TOY_EXAMPLE
    assert check_toy_prompt(TOY_EXAMPLE) == TOY_EXAMPLE
