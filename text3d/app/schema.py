"""The full configuration of a text3d run: every module's config section, assembled (the schema of presets and
of `text3d config --keys`). It imports only the packages' ``config`` modules, plain dataclasses, so that a config
is built and checked before torch is imported."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from text3d.config import Range
from text3d.export.config import ExportConfig
from text3d.guide.config import ReconstructionGuideConfig, SDSConfig
from text3d.prompt.config import PromptConfig
from text3d.stage.config import CoarseConfig, GeometryConfig, TextureConfig, TrainerConfig


@dataclass
class DataConfig:
    """Reference views for reconstruction (NeRF-synthetic layout)."""

    path: str = ""
    """Dataset folder holding transforms_train.json / transforms_test.json (set by `text3d reconstruct`)."""
    downscale: Annotated[int, Range(1, 16)] = 1
    """Integer factor to shrink the dataset's images by (area average)."""
    views_per_step: Annotated[int, Range(1, 1024)] = 8
    """Training views drawn per step."""
    rays_per_view: Annotated[int, Range(0, 1 << 20)] = 256
    """Random pixels rendered per drawn view (0: the whole image)."""


@dataclass
class GuideConfig:
    """What scores the renders."""

    reconstruction: ReconstructionGuideConfig = field(default_factory=ReconstructionGuideConfig)
    """Photometric guide used by `text3d reconstruct`."""
    sds: SDSConfig = field(default_factory=SDSConfig)
    """Score distillation guide used by `text3d generate`."""


@dataclass
class MeshRenderConfig:
    """How the mesh stages and the export render meshes."""

    rasterizer: Literal["auto", "torch", "nvdiffrast"] = "auto"
    """Rasterizer backend: nvdiffrast on CUDA when installed, else the torch twin."""
    supersample: Annotated[int, Range(1, 4)] = 1
    """Render this many times larger and box-filter down (smoother silhouettes; costs supersample^2)."""


@dataclass
class Text3DConfig:
    """A text3d run."""

    seed: Annotated[int, Range(0, 2**63 - 1)] = 0
    """Seed of every random choice (initial weights, views, sample jitter)."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """Loop settings shared by all stages."""
    prompt: PromptConfig = field(default_factory=PromptConfig)
    """The text prompt (generation) and how it is turned into text embeddings."""
    data: DataConfig = field(default_factory=DataConfig)
    """Reference dataset (reconstruction)."""
    guide: GuideConfig = field(default_factory=GuideConfig)
    """Guides."""
    coarse: CoarseConfig = field(default_factory=CoarseConfig)
    """Coarse NeRF stage."""
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    """DMTet geometry stage."""
    texture: TextureConfig = field(default_factory=TextureConfig)
    """Texture stage."""
    mesh_render: MeshRenderConfig = field(default_factory=MeshRenderConfig)
    """Mesh rendering shared by the geometry and texture stages and the export."""
    export: ExportConfig = field(default_factory=ExportConfig)
    """Outputs."""
