import csv
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
import trimesh

from text3d.errors import TrainingError
from text3d.export import uv as uv_module
from text3d.export.assets import asset_summary
from text3d.export.bake import bake_texture, dilate
from text3d.export.compress import compress_glb
from text3d.export.mesh_files import TexturedMesh, TextureExportConfig, bake_and_export, export_textured_mesh
from text3d.export.placement import place
from text3d.export.uv import unwrap
from text3d.export.video import contact_sheet, write_contact_sheet, write_turntable

GLTF_DIR = Path(__file__).resolve().parent / "gltf"
SIZE = 256


def position_color(points):
    """The test colour function: world position in [-1, 1]^3 -> RGB in [0, 1]^3."""
    return (points + 1) / 2


def sample(image: np.ndarray, uv: np.ndarray, v_up: bool) -> np.ndarray:
    """Bilinear lookup ``[N, 3]`` in [0, 1] of ``image: [H, W, 3]`` uint8 (row 0 on top) at ``uv: [N, 2]``.

    ``v_up``: OBJ/OpenGL texture coordinates (v = 0 is the bottom row); else glTF's (v = 0 is the top row).
    """
    h, w = image.shape[:2]
    x = uv[:, 0] * w - 0.5
    y = ((1 - uv[:, 1]) if v_up else uv[:, 1]) * h - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    tx, ty = (x - x0)[:, None], (y - y0)[:, None]

    def texel(yy, xx):
        return image[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)].astype(np.float64) / 255

    top = texel(y0, x0) * (1 - tx) + texel(y0, x0 + 1) * tx
    bottom = texel(y0 + 1, x0) * (1 - tx) + texel(y0 + 1, x0 + 1) * tx
    return top * (1 - ty) + bottom * ty


@pytest.fixture(scope="module")
def sphere():
    mesh = trimesh.creation.icosphere(subdivisions=3)
    return np.asarray(mesh.vertices), np.asarray(mesh.faces)


@pytest.fixture(scope="module")
def unwrapped(sphere):
    return unwrap(*sphere, texture_size=SIZE, padding=4)


@pytest.fixture(scope="module")
def baked(unwrapped):
    vertices, faces, uvs = unwrapped
    return bake_texture(torch.from_numpy(vertices).float(), faces, uvs, position_color, size=SIZE, padding=4)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, unwrapped, baked):
    out = tmp_path_factory.mktemp("export")
    return export_textured_mesh(*unwrapped, baked, out, name="model")


# ---------------------------------------------------------------------------------------------------------------------
# UV unwrapping


def test_unwrap_keeps_faces_and_gives_uvs_in_unit_square(sphere, unwrapped):
    vertices, faces, uvs = unwrapped
    assert faces.shape == sphere[1].shape and faces.dtype == np.int64
    assert uvs.shape == (len(vertices), 2)
    assert uvs.min() >= 0.0 and uvs.max() <= 1.0
    # Seams only duplicate vertices: every face keeps its corners, in order.
    np.testing.assert_allclose(vertices[faces], sphere[0][sphere[1]])


def test_unwrap_decimates_above_max_faces(sphere):
    vertices, faces, uvs = unwrap(*sphere, max_faces=500, texture_size=SIZE)
    assert 0 < len(faces) <= 500
    assert uvs.shape == (len(vertices), 2) and uvs.min() >= 0.0 and uvs.max() <= 1.0


@pytest.mark.parametrize(
    ("code", "timeout", "message"),
    [
        ("import ctypes; ctypes.string_at(0)", 30, r"xatlas crashed \(SIGSEGV\)"),
        ("import os; os._exit(139)", 30, r"exit code 139"),
        ("raise RuntimeError('bad mesh')", 30, r"exit code 1\) .*: RuntimeError: bad mesh"),
        ("import time; time.sleep(30)", 0.5, r"ran past its 0.5 s timeout"),
    ],
)
def test_unwrap_worker_failure_is_one_line_training_error(monkeypatch, sphere, code, timeout, message):
    monkeypatch.setattr(uv_module, "_worker_command", lambda workdir: [sys.executable, "-c", code])
    start = time.perf_counter()
    with pytest.raises(TrainingError, match=message) as err:
        unwrap(*sphere, timeout=timeout)
    assert time.perf_counter() - start < 10
    assert "\n" not in str(err.value)


def test_unwrap_refuses_non_finite_vertices(sphere):
    vertices = sphere[0].copy()
    vertices[3, 1] = np.nan
    with pytest.raises(TrainingError, match="non-finite"):
        unwrap(vertices, sphere[1])


# ---------------------------------------------------------------------------------------------------------------------
# Baking


def test_bake_matches_color_function_at_vertex_uvs(unwrapped, baked):
    vertices, _, uvs = unwrapped
    assert baked.shape == (SIZE, SIZE, 3) and baked.dtype == np.uint8
    # Vertex uvs lie on chart borders: a bilinear lookup there reads texels outside the chart, which the padding
    # must have filled with the chart's colours.
    error = np.abs(sample(baked, uvs, v_up=True) - position_color(vertices))
    assert error.max() < 0.03


def test_bake_without_padding_bleeds_at_chart_borders(unwrapped):
    vertices, faces, uvs = unwrapped
    bare = bake_texture(torch.from_numpy(vertices).float(), faces, uvs, position_color, size=SIZE, padding=0)
    assert np.abs(sample(bare, uvs, v_up=True) - position_color(vertices)).max() > 0.1


def test_dilate_grows_charts_by_padding_texels():
    image = torch.zeros(9, 9, 3)
    mask = torch.zeros(9, 9, dtype=torch.bool)
    image[4, 4], mask[4, 4] = torch.tensor([0.2, 0.4, 0.6]), True
    grown, filled = dilate(image, mask, 2)
    square = torch.zeros(9, 9, dtype=torch.bool)
    square[2:7, 2:7] = True
    assert torch.equal(filled, square)
    assert torch.allclose(grown[square], torch.tensor([0.2, 0.4, 0.6]).expand(25, 3))
    assert torch.equal(grown[~square], torch.zeros(56, 3))


# ---------------------------------------------------------------------------------------------------------------------
# Mesh files


def read_glb(path: Path) -> tuple[dict, bytes]:
    """The JSON and BIN chunks of a GLB file."""
    data = path.read_bytes()
    json_len = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20 : 20 + json_len])
    bin_start = 20 + json_len
    bin_len = struct.unpack_from("<I", data, bin_start)[0]
    return doc, data[bin_start + 8 : bin_start + 8 + bin_len]


def buffer_view(doc: dict, blob: bytes, index: int) -> bytes:
    view = doc["bufferViews"][index]
    start = view.get("byteOffset", 0)
    return blob[start : start + view["byteLength"]]


def accessor(doc: dict, blob: bytes, index: int) -> np.ndarray:
    acc = doc["accessors"][index]
    assert acc["componentType"] == 5126 and "byteStride" not in doc["bufferViews"][acc["bufferView"]]  # float32
    width = {"VEC2": 2, "VEC3": 3}[acc["type"]]
    data = buffer_view(doc, blob, acc["bufferView"])[acc.get("byteOffset", 0) :]
    return np.frombuffer(data, np.float32, acc["count"] * width).reshape(-1, width)


def test_glb_follows_gltf_texture_convention(exported):
    # Read the file by the glTF spec alone (v = 0 is the top row), not through trimesh, which wrote it.
    doc, blob = read_glb(exported["glb"])
    primitive = doc["meshes"][0]["primitives"][0]
    assert {"POSITION", "NORMAL", "TEXCOORD_0"} <= set(primitive["attributes"])
    material = doc["materials"][primitive["material"]]["pbrMetallicRoughness"]
    assert material["metallicFactor"] == 0.0 and material["roughnessFactor"] == pytest.approx(0.9)
    image_index = doc["textures"][material["baseColorTexture"]["index"]]["source"]
    image = np.asarray(PIL.Image.open(io.BytesIO(buffer_view(doc, blob, doc["images"][image_index]["bufferView"]))))
    positions = accessor(doc, blob, primitive["attributes"]["POSITION"])
    texcoords = accessor(doc, blob, primitive["attributes"]["TEXCOORD_0"])
    normals = accessor(doc, blob, primitive["attributes"]["NORMAL"])
    assert np.abs(sample(image, texcoords, v_up=False) - position_color(positions)).max() < 0.03
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
    # Smooth shading across seams: on a unit sphere the normal is the position.
    np.testing.assert_allclose(normals, positions, atol=0.02)


def test_glb_reloads_with_uvs_and_texture(exported, unwrapped, baked):
    mesh = trimesh.load(exported["glb"], force="mesh", process=False)
    assert len(mesh.faces) == len(unwrapped[1])
    image = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB"))
    rows, cols = np.array([0, 17, 100, 255]), np.array([3, 250, 128, 64])
    np.testing.assert_array_equal(image[rows, cols], baked[rows, cols])
    assert np.abs(sample(image, mesh.visual.uv, v_up=True) - position_color(mesh.vertices)).max() < 0.03


def test_obj_mtl_png_reload_with_texture(exported):
    paths = exported
    assert {p.name for p in paths.values()} == {"model.glb", "model.obj", "model.mtl", "model.png"}
    assert "mtllib model.mtl" in paths["obj"].read_text()
    assert "map_Kd model.png" in paths["mtl"].read_text()
    assert not list(paths["obj"].parent.glob(".*"))  # no temp files left behind
    mesh = trimesh.load(paths["obj"], force="mesh", process=False)
    image = np.asarray(mesh.visual.material.image.convert("RGB"))
    assert np.abs(sample(image, mesh.visual.uv, v_up=True) - position_color(mesh.vertices)).max() < 0.03


def test_export_only_requested_formats(tmp_path, unwrapped, baked):
    paths = export_textured_mesh(*unwrapped, baked, tmp_path, name="mug", config=TextureExportConfig(formats=("obj",)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mug.mtl", "mug.obj", "mug.png"]
    assert set(paths) == {"obj", "mtl", "png"}


def validate(path: Path) -> dict:
    """The Khronos glTF-Validator's issues with a file (skips the test without node or the validator)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    if not (GLTF_DIR / "node_modules" / "gltf-validator").is_dir():
        pytest.skip("gltf-validator is not installed: npm install --prefix tests/gltf --no-package-lock")
    result = subprocess.run([node, str(GLTF_DIR / "validate.mjs"), str(path)], capture_output=True, text=True,
                            timeout=60, check=True)
    return json.loads(result.stdout)["issues"]


def test_glb_passes_khronos_validator(exported):
    issues = validate(exported["glb"])
    assert (issues["numErrors"], issues["numWarnings"], issues["numInfos"], issues["numHints"]) == (0, 0, 0, 0), \
        issues["messages"]


# ---------------------------------------------------------------------------------------------------------------------
# Placement: glTF axes, height, origin; material and sampler


def cone_with_a_front_marker() -> trimesh.Trimesh:
    """A world-frame (z-up) cone, apex up, with a small box on its front (+x, where the azimuth-0 camera looks)."""
    cone = trimesh.creation.cone(radius=0.5, height=1.2, sections=32)
    cone.apply_translation([0.1, -0.2, -0.4])
    marker = trimesh.creation.box([0.2, 0.2, 0.2])
    marker.apply_translation([0.65, -0.2, -0.3])
    return trimesh.util.concatenate([cone, marker])


@pytest.fixture(scope="module")
def placed(tmp_path_factory):
    """The cone exported at 1.5 m, standing on the origin; and the same centred, in the world's units."""
    from text3d.export.config import ExportConfig

    mesh = cone_with_a_front_marker()
    v, f = torch.from_numpy(mesh.vertices).float(), torch.from_numpy(mesh.faces)
    out = tmp_path_factory.mktemp("placed")
    standing = bake_and_export(v, f, position_color, out / "standing", ExportConfig(height_m=1.5))
    centred = bake_and_export(v, f, position_color, out / "centred", ExportConfig(height_m=0.0, origin="center"))
    return standing, centred


def test_the_glb_stands_upright_at_its_height_facing_plus_z(placed):
    standing, _ = placed
    doc, blob = read_glb(standing.files["glb"])
    positions = accessor(doc, blob, doc["meshes"][0]["primitives"][0]["attributes"]["POSITION"]).astype(np.float64)
    lo, hi = positions.min(0), positions.max(0)
    assert lo[1] == pytest.approx(0.0, abs=1e-6) and hi[1] == pytest.approx(1.5, abs=1e-3)  # on the ground, 1.5 m
    np.testing.assert_allclose((lo + hi)[[0, 2]] / 2, 0.0, atol=1e-6)  # the footprint centred on the origin
    world = standing.vertices
    assert positions[np.argmax(world[:, 2]), 1] == pytest.approx(1.5, abs=1e-3)  # the apex is the top
    assert np.argmax(positions[:, 2]) in np.flatnonzero(world[:, 0] == world[:, 0].max())  # the front faces +Z
    np.testing.assert_allclose(positions, standing.placement.points(world), atol=1e-5)


def test_the_obj_agrees_with_the_glb(placed):
    standing, _ = placed
    glb = trimesh.load(standing.files["glb"], force="mesh", process=False)
    obj = trimesh.load(standing.files["obj"], force="mesh", process=False)
    np.testing.assert_allclose(obj.bounds, glb.bounds, atol=1e-5)
    np.testing.assert_allclose(obj.vertices[np.argmax(obj.vertices[:, 2])], glb.vertices[np.argmax(glb.vertices[:, 2])],
                               atol=1e-5)


def test_origin_center_and_world_units(placed):
    _, centred = placed
    mesh = trimesh.load(centred.files["glb"], force="mesh", process=False)
    np.testing.assert_allclose(mesh.bounds.mean(0), 0.0, atol=1e-6)
    assert np.ptp(mesh.vertices[:, 1]) == pytest.approx(np.ptp(centred.vertices[:, 2]), abs=1e-6)  # scale 1


def test_the_material_is_matte_sampled_with_mipmaps_and_one_sided_when_closed(placed, tmp_path):
    standing, _ = placed
    doc, _ = read_glb(standing.files["glb"])
    material = doc["materials"][0]
    assert material["pbrMetallicRoughness"]["metallicFactor"] == 0.0 and material["doubleSided"] is False
    sampler = doc["samplers"][doc["textures"][0]["sampler"]]
    assert sampler == {"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}
    assert {view["target"] for view in doc["bufferViews"] if "byteStride" in view or "target" in view} == {34962,
                                                                                                          34963}
    # A surface with a hole shows its inside: double-sided.
    bowl = trimesh.creation.icosphere(subdivisions=2)
    bowl.update_faces(bowl.triangles_center[:, 2] < 0.5)
    bowl.remove_unreferenced_vertices()
    files = bake_and_export(torch.from_numpy(bowl.vertices).float(), torch.from_numpy(bowl.faces), position_color,
                            tmp_path).files
    assert read_glb(files["glb"])[0]["materials"][0]["doubleSided"] is True


def test_blender_imports_the_asset_upright_textured_and_matte(placed):
    """Blender 3.4's own glTF and OBJ importers (what users have): skipped without `blender`."""
    blender = shutil.which("blender")
    if blender is None:
        pytest.skip("blender is not installed (apt-get install blender python3-numpy)")
    standing, _ = placed
    # Blender's embedded Python finds its home through PATH: keep this test's Python (a venv, pyenv) off it.
    env = {"PATH": f"{Path(blender).parent}:/usr/bin:/bin", "HOME": str(Path.home())}
    glb = trimesh.load(standing.files["glb"], force="mesh", process=False)
    apex = glb.vertices[np.argmax(glb.vertices[:, 1])]
    assert abs(apex[2]) > 0.05  # off centre along the front axis, or the check below could not tell front from back
    for kind in ("glb", "obj"):
        result = subprocess.run([blender, "-b", "--factory-startup", "--python",
                                 str(Path(__file__).resolve().parent / "blender" / "import_asset.py"), "--",
                                 str(standing.files[kind])], capture_output=True, text=True, timeout=120, check=True,
                                env=env)
        line = next((ln for ln in result.stdout.splitlines() if ln.startswith("ASSET ")), None)
        assert line is not None, result.stdout[-2000:] + result.stderr[-2000:]
        (obj,) = json.loads(line[6:])["objects"]
        lo, hi = np.array(obj["min"]), np.array(obj["max"])
        # Blender is z-up, and an object's front faces -Y (what its Front view looks at): glTF's (x, y, z) is
        # Blender's (x, -z, y). The apex sits off the bounding box's centre (the front marker widens the box).
        assert lo[2] == pytest.approx(0.0, abs=1e-4) and hi[2] == pytest.approx(1.5, abs=1e-3), (kind, obj)
        x, y, z = apex
        np.testing.assert_allclose(obj["top"], [x, -z, y], atol=1e-4, err_msg=kind)
        (material,) = obj["materials"]
        assert material["base_color_image"] and material["metallic"] == 0.0 and not material["metallic_linked"], kind


def test_the_usdz_holds_the_same_asset_and_passes_usd_validation(tmp_path):
    pytest.importorskip("pxr", reason="usd-core is not installed (pip install 'text3d[usd]')")
    from pxr import Usd, UsdGeom, UsdShade, UsdValidation

    from text3d.export.config import ExportConfig

    mesh = cone_with_a_front_marker()
    config = ExportConfig(height_m=1.5, texture=TextureExportConfig(formats=("glb", "usdz"), texture_size=SIZE))
    asset = bake_and_export(torch.from_numpy(mesh.vertices).float(), torch.from_numpy(mesh.faces), position_color,
                            tmp_path, config)
    stage = Usd.Stage.Open(str(asset.files["usdz"]))
    assert (UsdGeom.GetStageUpAxis(stage), UsdGeom.GetStageMetersPerUnit(stage)) == ("Y", 1.0)
    assert stage.GetDefaultPrim().GetPath() == "/model"
    errors = UsdValidation.ValidationContext(UsdValidation.ValidationRegistry().GetOrLoadAllValidators()).Validate(
        stage)  # every validator usd-core has, those of usdz packages among them
    assert [e.GetMessage() for e in errors] == []
    usd_mesh = UsdGeom.Mesh(stage.GetPrimAtPath("/model/mesh"))
    np.testing.assert_allclose(np.array(usd_mesh.GetPointsAttr().Get()), asset.placement.points(asset.vertices),
                               atol=1e-6)  # the GLB's placement: +Y up, 1.5 m, on the ground
    np.testing.assert_array_equal(np.array(usd_mesh.GetFaceVertexIndicesAttr().Get()).reshape(-1, 3), asset.faces)
    st = UsdGeom.PrimvarsAPI(usd_mesh).GetPrimvar("st")
    np.testing.assert_allclose(np.array(st.Get()), asset.uvs, atol=1e-6)
    assert usd_mesh.GetDoubleSidedAttr().Get() is False
    material, _ = UsdShade.MaterialBindingAPI(usd_mesh.GetPrim()).ComputeBoundMaterial()
    surface = material.ComputeSurfaceSource()[0]
    assert surface.GetIdAttr().Get() == "UsdPreviewSurface" and surface.GetInput("metallic").Get() == 0.0
    (source,) = surface.GetInput("diffuseColor").GetConnectedSources()[0]
    texture = UsdShade.Shader(source.source.GetPrim())
    assert texture.GetIdAttr().Get() == "UsdUVTexture" and texture.GetInput("sourceColorSpace").Get() == "sRGB"
    with zipfile.ZipFile(asset.files["usdz"]) as package:
        name = texture.GetInput("file").Get().path
        image = np.asarray(PIL.Image.open(io.BytesIO(package.read(name))).convert("RGB"))
    np.testing.assert_array_equal(image, asset.texture)


def test_usdz_without_usd_core_is_refused_before_a_run(monkeypatch):
    from text3d.errors import UserError
    from text3d.export import usdz
    from text3d.export.config import ExportConfig
    from text3d.export.requirements import check_export_tools

    monkeypatch.setattr(usdz.importlib.util, "find_spec", lambda name: None)
    check_export_tools(ExportConfig())  # glb + obj need nothing more
    with pytest.raises(UserError, match=r"usdz, which needs usd-core \(pip install 'text3d\[usd\]'\)"):
        check_export_tools(ExportConfig(texture=TextureExportConfig(formats=("glb", "usdz"))))


# ---------------------------------------------------------------------------------------------------------------------
# Compressed copies (glTF Transform)

GLTF_TRANSFORM = GLTF_DIR / "node_modules" / ".bin" / "gltf-transform"


@pytest.fixture
def gltf_transform(monkeypatch) -> Path:
    """glTF Transform's command from tests/gltf, first on PATH (where text3d looks for it)."""
    if shutil.which("node") is None or not GLTF_TRANSFORM.is_file():
        pytest.skip("glTF Transform is not installed: npm install --prefix tests/gltf --no-package-lock")
    monkeypatch.setenv("PATH", f"{GLTF_TRANSFORM.parent}{os.pathsep}{os.environ['PATH']}")
    return GLTF_TRANSFORM


def inspect_glb(tool: Path, path: Path) -> dict:
    """What ``gltf-transform inspect`` reads in a GLB once decoded: triangles, vertices, bounding box."""
    out = subprocess.run([str(tool), "inspect", str(path), "--format", "csv"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    sections: dict[str, list[list[str]]] = {}
    title = ""
    for line in out.splitlines():
        if line.strip().isalpha():  # a section's title: OVERVIEW, SCENES, MESHES, ...
            title = line.strip()
        elif "," in line:
            sections.setdefault(title, []).append(next(csv.reader([line])))
    scene, mesh = (dict(zip(*sections[name][:2])) for name in ("SCENES", "MESHES"))  # header row, first row
    box = [[float(x) for x in scene[k].split(",")] for k in ("bboxMin", "bboxMax")]
    return {"triangles": int(mesh["glPrimitives"]), "vertices": int(mesh["vertices"]), "bbox": np.array(box)}


@pytest.mark.parametrize(("compress", "extensions"), [
    (("meshopt",), {"EXT_meshopt_compression", "KHR_mesh_quantization"}),
    (("webp", "draco"), {"KHR_draco_mesh_compression", "EXT_texture_webp"}),
])
def test_the_compressed_copy_validates_and_holds_the_same_mesh(placed, tmp_path, gltf_transform, compress, extensions):
    src = tmp_path / "model.glb"
    shutil.copy(placed[0].files["glb"], src)
    plain = src.read_bytes()
    dst = compress_glb(src, compress)
    assert dst == tmp_path / f"model.{compress[-1]}{'.webp' if 'webp' in compress else ''}.glb"
    assert src.read_bytes() == plain
    assert dst.stat().st_size < len(plain)
    assert set(read_glb(dst)[0]["extensionsRequired"]) == extensions
    issues = validate(dst)
    # The validator cannot decode meshopt or Draco: it says so (UNSUPPORTED_EXTENSION), and so cannot see that the
    # plain buffers Draco leaves are used (UNUSED_OBJECT). Both are infos; errors and warnings must be none.
    assert (issues["numErrors"], issues["numWarnings"]) == (0, 0), issues["messages"]
    assert {m["code"] for m in issues["messages"]} <= {"UNSUPPORTED_EXTENSION", "UNUSED_OBJECT"}, issues["messages"]
    before, after = inspect_glb(gltf_transform, src), inspect_glb(gltf_transform, dst)
    assert after["triangles"] == before["triangles"]
    if "meshopt" in compress:  # lossless but for 16-bit positions
        assert after["vertices"] == before["vertices"]
        np.testing.assert_allclose(after["bbox"], before["bbox"], atol=1e-4)
    else:  # Draco re-indexes (a few more vertices) and quantizes positions to 14 bits
        assert before["vertices"] <= after["vertices"] <= 1.02 * before["vertices"]
        np.testing.assert_allclose(after["bbox"], before["bbox"], atol=2e-3)


def test_a_failing_compression_is_one_training_error_and_keeps_the_glb(tmp_path, monkeypatch):
    tool = tmp_path / "bin" / "gltf-transform"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\necho 'error: unsupported input' >&2\nexit 3\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tool.parent))
    src = tmp_path / "model.glb"
    src.write_bytes(b"glTF")
    with pytest.raises(TrainingError, match=r"gltf-transform meshopt failed \(error: unsupported input\)"):
        compress_glb(src, ("meshopt",))
    assert src.read_bytes() == b"glTF" and sorted(p.name for p in tmp_path.iterdir()) == ["bin", "model.glb"]


# ---------------------------------------------------------------------------------------------------------------------
# Video and contact sheet


def test_turntable_mp4_has_all_frames(tmp_path):
    import imageio.v3 as iio

    shades = np.linspace(0, 255, 8).astype(np.uint8)
    frames = np.broadcast_to(shades[:, None, None, None], (8, 33, 48, 3))  # odd height: padded to 34
    path = write_turntable(frames, tmp_path / "turntable.mp4", fps=8)
    video = iio.imread(path)
    assert video.shape == (8, 34, 48, 3)
    np.testing.assert_allclose(video.mean(axis=(1, 2, 3)), shades, atol=4)


def test_contact_sheet_tiles_row_by_row(tmp_path):
    images = np.arange(5, dtype=np.uint8)[:, None, None, None].repeat(2, 1).repeat(3, 2).repeat(3, 3)
    sheet = contact_sheet(images, columns=3)
    assert sheet.shape == (4, 9, 3)
    assert sheet[0, 3, 0] == 1 and sheet[2, 0, 0] == 3 and sheet[3, 8, 0] == 255
    path = write_contact_sheet(images, tmp_path / "sheet.png", columns=3)
    np.testing.assert_array_equal(np.asarray(PIL.Image.open(path)), sheet)


@pytest.mark.parametrize(
    "half_sizes, fills",
    [((0.3, 0.3, 0.2), False), ((0.99, 0.99, 0.3), True), ((0.99, 0.3, 0.3), False), ((0.3, 0.99, 0.995), True)],
)
def test_the_summary_says_when_the_mesh_spans_the_scene_cube(half_sizes, fills, caplog):
    box = trimesh.creation.box(extents=2 * np.asarray(half_sizes))
    vertices = np.asarray(box.vertices, dtype=np.float32)
    asset = TexturedMesh(vertices, np.asarray(box.faces), np.zeros((len(vertices), 2), np.float32),
                         np.zeros((4, 4, 3), np.uint8), {}, place(vertices, 1.0, "bottom"))
    summary = asset_summary(asset, radius=1.0)
    assert summary["scene_span"] == pytest.approx(list(half_sizes), abs=1e-4)  # the box spans 2 h of a cube of side 2
    assert summary["fills_scene"] is fills
    assert summary["size_m"][1] == pytest.approx(1.0, abs=1e-4)  # the files' +Y is the world's z, scaled to 1 m
    assert ("spans the scene cube" in caplog.text) is fills
    assert asset_summary(asset, radius=2.0)["scene_span"] == pytest.approx([h / 2 for h in half_sizes], abs=1e-4)
