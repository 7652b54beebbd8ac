"""USDZ for Apple's AR Quick Look, written with Pixar's USD library (``usd-core``, the ``usd`` extra; imported only
here, on first use): one mesh with a UsdPreviewSurface material, packaged with its texture."""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import numpy as np
import PIL.Image

from text3d.errors import UserError
from text3d.io import atomic_path

INSTALL = "pip install 'text3d[usd]'"


def check_usd() -> None:
    """A one-line :class:`UserError` before a run starts when ``usd-core`` (module ``pxr``) is not installed."""
    if importlib.util.find_spec("pxr") is None:
        raise UserError(f"export.texture.formats has usdz, which needs usd-core ({INSTALL}); or leave usdz out")


def write_usdz(path: Path, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray, uvs: np.ndarray,
               image: PIL.Image.Image, roughness: float, double_sided: bool) -> Path:
    """Write ``path`` (``.usdz``): a Y-up stage in metres whose default prim is the mesh with its material.

    ``vertices: [V, 3]`` and ``normals: [V, 3]`` in the file's axes, ``faces: [F, 3]``, ``uvs: [V, 2]`` with v up
    (USD's ``st`` convention too), ``image``: the base colour (sRGB), stored as PNG. Metallic is 0.
    """
    from pxr import Sdf, Usd, UsdGeom, UsdShade, UsdUtils, Vt

    with tempfile.TemporaryDirectory(prefix="text3d-usdz-") as tmp:
        texture = Path(tmp) / "texture.png"
        image.save(texture)
        layer = Path(tmp) / "model.usdc"
        stage = Usd.Stage.CreateNew(str(layer))
        UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
        UsdGeom.SetStageMetersPerUnit(stage, 1.0)
        root = UsdGeom.Xform.Define(stage, "/model")
        stage.SetDefaultPrim(root.GetPrim())

        mesh = UsdGeom.Mesh.Define(stage, "/model/mesh")
        points = Vt.Vec3fArray.FromNumpy(np.ascontiguousarray(vertices, np.float32))
        mesh.CreatePointsAttr(points)
        mesh.CreateExtentAttr(UsdGeom.PointBased.ComputeExtent(points))
        mesh.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(len(faces), 3, np.int32)))
        mesh.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(np.ascontiguousarray(faces, np.int32).ravel()))
        mesh.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)  # a polygon mesh, not a subdivision cage
        mesh.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(np.ascontiguousarray(normals, np.float32)))
        mesh.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
        mesh.CreateDoubleSidedAttr(double_sided)
        st = UsdGeom.PrimvarsAPI(mesh).CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray,
                                                     UsdGeom.Tokens.vertex)
        st.Set(Vt.Vec2fArray.FromNumpy(np.ascontiguousarray(uvs, np.float32)))

        material = UsdShade.Material.Define(stage, "/model/material")
        surface = UsdShade.Shader.Define(stage, "/model/material/surface")
        surface.CreateIdAttr("UsdPreviewSurface")
        surface.CreateInput("metallic", Sdf.ValueTypeNames.Float).Set(0.0)
        surface.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(float(roughness))
        material.CreateSurfaceOutput().ConnectToSource(surface.ConnectableAPI(), "surface")
        reader = UsdShade.Shader.Define(stage, "/model/material/st")
        reader.CreateIdAttr("UsdPrimvarReader_float2")
        reader.CreateInput("varname", Sdf.ValueTypeNames.String).Set("st")
        reader.CreateOutput("result", Sdf.ValueTypeNames.Float2)
        sampler = UsdShade.Shader.Define(stage, "/model/material/base_color")
        sampler.CreateIdAttr("UsdUVTexture")
        sampler.CreateInput("file", Sdf.ValueTypeNames.Asset).Set(texture.name)
        sampler.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(reader.ConnectableAPI(), "result")
        sampler.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set("sRGB")
        for wrap in ("wrapS", "wrapT"):  # an atlas' charts end at its edges
            sampler.CreateInput(wrap, Sdf.ValueTypeNames.Token).Set("clamp")
        sampler.CreateOutput("rgb", Sdf.ValueTypeNames.Float3)
        surface.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).ConnectToSource(sampler.ConnectableAPI(),
                                                                                       "rgb")
        UsdShade.MaterialBindingAPI.Apply(mesh.GetPrim()).Bind(material)
        stage.GetRootLayer().Save()

        with atomic_path(path) as tmp_usdz:
            # The ARKit variant checks the stage against AR Quick Look's rules as it packages it.
            if not UsdUtils.CreateNewARKitUsdzPackage(Sdf.AssetPath(str(layer)), str(tmp_usdz)):
                raise RuntimeError(f"usd-core could not package {path.name}")
    return path
