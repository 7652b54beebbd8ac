"""The stage chain as data: coarse (NeRF) -> geometry (DMTet) -> texture, each stage built from its config section by
one factory, and what each hands on to the next.

A stage whose section says ``enabled: true`` trains (or resumes from its last checkpoint). A disabled stage trains
nothing: it loads its last checkpoint in the run directory when there is one, else it hands its input on unchanged
(geometry: the coarse surface; texture: the coarse field's albedo). The coarse stage has no input: disabled, it
needs its checkpoint. Exporting a run is the chain with every stage loaded, none trained.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from accelerate import Accelerator

from text3d.app.schema import Text3DConfig
from text3d.data.nerf_synthetic import ViewSet
from text3d.errors import UserError
from text3d.export.isosurface import extract_mesh, write_mesh
from text3d.field.nerf import HashGridField
from text3d.guide.base import Guide
from text3d.metrics import psnr
from text3d.renderer.cameras import CameraConfig, Cameras, ViewSampler
from text3d.renderer.mesh import Mesh, MeshRenderer
from text3d.stage.checkpoints import CheckpointStore
from text3d.stage.coarse import CoarseStage
from text3d.stage.config import STAGE_NAMES
from text3d.stage.geometry import GeometryStage
from text3d.stage.texture import TextureStage
from text3d.stage.trainer import Callback, Stage, Trainer, load_stage_weights

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    """What the stages of one run share; built by the jobs in :mod:`text3d.app.jobs`."""

    config: Text3DConfig
    accelerator: Accelerator
    make_guide: Callable[[object], Guide]
    """The guide of a stage, given its config section (``max_steps``, ``guidance_scale``)."""
    sample_views: Callable[[CameraConfig, bool], ViewSampler]
    """Training views for a stage's camera config; the flag asks for whole images (mesh stages)."""
    eval_cameras: Callable[[CameraConfig], Cameras]
    test_views: ViewSet | None = None
    """Reference test views (reconstruction): every stage's output is scored on them."""
    summary: str = ""
    """What the job makes, in one line: the first line each start of the run adds to its ``log.txt``."""
    renderer: MeshRenderer = field(init=False)
    """The mesh renderer of the geometry and texture stages and of the export."""

    def __post_init__(self) -> None:
        r = self.config.coarse.renderer
        self.renderer = MeshRenderer(r.background_color, r.ambient, self.config.mesh_render.rasterizer, self.device,
                                     self.config.mesh_render.supersample)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def background(self) -> torch.Tensor:
        return torch.tensor(self.config.coarse.renderer.background_color)

    def score(self, renders: torch.Tensor, what: str) -> dict:
        """PSNR of ``renders: [N, H, W, 3]`` against the test views composited on the background."""
        per_view = psnr(renders.clamp(0, 1).cpu(), self.test_views.composite(self.background))
        log.info("%s: test PSNR %.2f dB over %d views", what, per_view.mean().item(), len(self.test_views))
        return {"psnr": per_view.mean().item(), "psnr_per_view": [round(v, 3) for v in per_view.tolist()]}


@dataclass
class Handover:
    """What the stages hand on: the coarse field (density), the surface, and the field whose albedo is baked."""

    field: HashGridField | None = None
    mesh: Mesh | None = None
    albedo: HashGridField | None = None


@dataclass(frozen=True)
class StageLink:
    """One stage of the chain: how it is built, what it hands on, and what it hands on when it is skipped."""

    name: str
    build: Callable[[JobContext, Handover], Stage]
    hand_on: Callable[[Stage, Handover, JobContext, Path], None]
    pass_through: Callable[[Handover, JobContext, Path], None]


def _build_coarse(ctx: JobContext, _: Handover) -> CoarseStage:
    c = ctx.config
    views = ctx.sample_views(c.coarse.camera, False)
    retry = replace(c.coarse, **c.coarse.fill_guard.retry.own_guide_settings())
    return CoarseStage(c.coarse, ctx.make_guide(c.coarse), views, ctx.eval_cameras(c.coarse.camera), ctx.device,
                       c.seed, lambda: ctx.make_guide(retry))


def _hand_on_coarse(stage: CoarseStage, h: Handover, ctx: JobContext, run_dir: Path) -> None:
    h.field = stage.field
    surface = extract_mesh(stage.field, ctx.config.export.isosurface)
    write_mesh(surface, run_dir / "coarse.glb", ctx.config.export)
    h.mesh = Mesh(torch.as_tensor(surface.vertices, dtype=torch.float32, device=ctx.device),
                  torch.as_tensor(surface.faces, dtype=torch.int64, device=ctx.device))


def _coarse_needs_a_checkpoint(h: Handover, ctx: JobContext, run_dir: Path) -> None:
    raise UserError(f"coarse.enabled=false but {run_dir} has no coarse checkpoint")


def _build_geometry(ctx: JobContext, h: Handover) -> GeometryStage:
    c = ctx.config
    views = ctx.sample_views(c.geometry.camera, True)
    return GeometryStage(c.geometry, ctx.make_guide(c.geometry), views, ctx.eval_cameras(c.geometry.camera), h.field,
                         c.coarse.field.radius, ctx.renderer, ctx.device, c.seed)


def _hand_on_geometry(stage: GeometryStage, h: Handover, ctx: JobContext, run_dir: Path) -> None:
    with torch.no_grad():
        h.mesh = stage.mesh()


def _keep_the_coarse_surface(h: Handover, ctx: JobContext, run_dir: Path) -> None:
    pass


def _build_texture(ctx: JobContext, h: Handover) -> TextureStage:
    c = ctx.config
    views = ctx.sample_views(c.texture.camera, True)
    albedo = copy.deepcopy(h.field).requires_grad_(True)  # the coarse field itself stays as the geometry left it
    return TextureStage(c.texture, ctx.make_guide(c.texture), views, ctx.eval_cameras(c.texture.camera), h.mesh,
                        albedo, ctx.renderer, ctx.device, c.seed)


def _hand_on_texture(stage: TextureStage, h: Handover, ctx: JobContext, run_dir: Path) -> None:
    h.albedo = stage.field


def _bake_the_coarse_albedo(h: Handover, ctx: JobContext, run_dir: Path) -> None:
    h.albedo = copy.deepcopy(h.field).requires_grad_(True)


STAGES = (
    StageLink("coarse", _build_coarse, _hand_on_coarse, _coarse_needs_a_checkpoint),
    StageLink("geometry", _build_geometry, _hand_on_geometry, _keep_the_coarse_surface),
    StageLink("texture", _build_texture, _hand_on_texture, _bake_the_coarse_albedo),
)
assert tuple(link.name for link in STAGES) == STAGE_NAMES


def last_checkpointed_stage(run_dir: Path) -> str | None:
    """The last stage of the chain that has a checkpoint in ``run_dir``."""
    store = CheckpointStore(run_dir / "checkpoints", keep=1)
    return next((name for name in reversed(STAGE_NAMES) if store.list(name)), None)


def run_stages(
    ctx: JobContext,
    run_dir: Path,
    train: bool,
    resume: bool = False,
    callbacks: list[Callback] | None = None,
    stop_event: threading.Event | None = None,
    metrics: dict | None = None,
    last: str | None = None,
) -> Handover | None:
    """Every stage in order (trained when enabled and ``train``, else loaded or passed through, see the module
    docstring); returns what the last stage handed on, or None when a stage was stopped (its checkpoint allows
    resuming). Per stage, ``metrics`` gets its steps, the seconds spent training it (across resumes),
    the CPU threads it trained with now and, with test views, its PSNR.

    Without ``train`` (export), a stage that the run trained must load its newest checkpoint: an earlier stage's
    result never silently stands in for it. ``last`` names the last stage to load; the ones after it pass through.
    """
    h = Handover()
    store = CheckpointStore(run_dir / "checkpoints", keep=1)
    end = STAGE_NAMES.index(last) if last is not None else len(STAGES) - 1
    for index, link in enumerate(STAGES):
        section = getattr(ctx.config, link.name)
        if index > end:
            link.pass_through(h, ctx, run_dir)
            continue
        if not train and section.enabled and not store.list(link.name) and index > 0:
            before = STAGE_NAMES[index - 1]
            raise UserError(f"{run_dir} has no {link.name} checkpoint, although the run trains that stage; "
                            f"`text3d export {run_dir} --from-stage {before}` exports what the stages up to "
                            f"{before} made")
        if train and section.enabled:
            stage = link.build(ctx, h)
            result = Trainer(stage, ctx.config.trainer, ctx.accelerator, run_dir, callbacks, stop_event).fit(resume)
            if result.stopped:
                log.info("%s: stopped at step %d; resume with --resume", link.name, result.step)
                return None
            seconds = result.seconds
        elif store.list(link.name):
            stage = link.build(ctx, h)
            _, seconds = load_stage_weights(run_dir, stage)
        else:
            link.pass_through(h, ctx, run_dir)
            continue
        if metrics is not None:
            # Seconds the stage trained, across resumes.
            metrics[link.name] = {"steps": stage.max_steps, "train_seconds": round(seconds, 2)}
            if stage.restarted is not None:
                metrics[link.name]["restarted"] = stage.restarted
            if train and section.enabled:
                metrics[link.name]["cpu_threads"] = torch.get_num_threads()
            if ctx.test_views is not None:
                renders = stage.render_views(ctx.test_views.cameras)["rgb"]
                metrics[link.name].update(ctx.score(renders, link.name))
        link.hand_on(stage, h, ctx, run_dir)
    return h
