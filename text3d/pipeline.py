"""Jobs that run the stages end to end and write a run directory (the CLI and the web UI call these).

coarse (NeRF, volume renderer) -> geometry (DMTet, rasterizer) -> texture (albedo on the frozen mesh) -> export.
Each stage checkpoints on its own; a resumed job skips every stage whose final checkpoint exists.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import trimesh
from accelerate import Accelerator

from text3d.config import build, load_yaml
from text3d.config.schema import Text3DConfig
from text3d.data.nerf_synthetic import ViewSet, load_views
from text3d.errors import UserError
from text3d.export.assets import asset_summary, export_assets, render_asset
from text3d.export.isosurface import extract_mesh, write_mesh
from text3d.guide.base import Guide
from text3d.guide.reconstruction import DatasetViewSampler, ReconstructionGuide
from text3d.io import write_json
from text3d.metrics import chamfer_distance, psnr
from text3d.renderer.cameras import CameraConfig, Cameras, CameraSampler
from text3d.renderer.mesh import Mesh, MeshRenderer
from text3d.run import RunDir
from text3d.stage.coarse import CoarseConfig, CoarseStage, ViewSampler
from text3d.stage.geometry import GeometryConfig, GeometryStage
from text3d.stage.texture import TextureConfig, TextureStage
from text3d.stage.trainer import Callback, Trainer, load_stage_weights, make_accelerator

log = logging.getLogger(__name__)


@dataclass
class JobResult:
    run_dir: Path
    stopped: bool
    """True when the run was stopped (cancel) before finishing; its checkpoints allow ``--resume``."""
    metrics: dict = field(default_factory=dict)


@dataclass
class Job:
    """What the stages of one run share; built by :func:`reconstruct` or :func:`generate`."""

    config: Text3DConfig
    accelerator: Accelerator
    make_guide: Callable[[CoarseConfig | GeometryConfig | TextureConfig], Guide]
    """The guide of a stage, given its config (``max_steps``, ``guidance_scale``)."""
    sample_views: Callable[[CameraConfig, bool], ViewSampler]
    """Training views for a stage's camera config; the flag asks for whole images (mesh stages)."""
    eval_cameras: Callable[[CameraConfig], Cameras]
    test_views: ViewSet | None = None
    """Reference test views (reconstruction): every stage's output is scored on them."""

    @property
    def device(self) -> torch.device:
        return self.accelerator.device


def evaluation_subset(cameras: Cameras, n: int) -> Cameras:
    """``n`` views spread evenly over a camera list (for previews)."""
    idx = torch.linspace(0, len(cameras) - 1, min(n, len(cameras))).round().long()
    return cameras[idx]


def score(renders: torch.Tensor, views: ViewSet, background: torch.Tensor, what: str) -> dict:
    """PSNR of ``renders: [N, H, W, 3]`` against ``views`` composited on ``background``."""
    per_view = psnr(renders.clamp(0, 1).cpu(), views.composite(background))
    log.info("%s: test PSNR %.2f dB over %d views", what, per_view.mean().item(), len(views))
    return {"psnr": per_view.mean().item(), "psnr_per_view": [round(v, 3) for v in per_view.tolist()]}


def reconstruct(
    config: Text3DConfig,
    run_dir: Path,
    resume: bool = False,
    callbacks: list[Callback] | None = None,
    stop_event: threading.Event | None = None,
) -> JobResult:
    """Fit every stage to ``config.data.path``'s training views; score each on the test views; export."""
    if not config.data.path:
        raise UserError("no dataset given (data.path is empty)")
    train = load_views(Path(config.data.path), "train", config.data.downscale)
    test = load_views(Path(config.data.path), "test", config.data.downscale)
    background = torch.tensor(config.coarse.renderer.background_color)
    guide = ReconstructionGuide(config.guide.reconstruction, train, background)
    eval_cameras = evaluation_subset(test.cameras, config.coarse.camera.eval_views)

    def sample_views(_: CameraConfig, whole_images: bool) -> ViewSampler:
        rays = 0 if whole_images else config.data.rays_per_view
        return DatasetViewSampler(train.cameras, config.data.views_per_step, rays)

    job = Job(config, make_accelerator(config.trainer), lambda _: guide, sample_views, lambda _: eval_cameras, test)
    return _run(job, run_dir, resume, callbacks, stop_event)


def check_prompt(config: Text3DConfig) -> None:
    """Raise :class:`UserError` for a prompt the run cannot use: empty or malformed, or outside the vocabulary of
    the bundled toy model when that is the guide."""
    from text3d.prompt.processor import clean_prompt
    from text3d.toy.bundled import check_toy_prompt, is_toy_model

    clean_prompt(config.prompt.text)
    if is_toy_model(config.guide.sds.model.model):
        check_toy_prompt(config.prompt.text, config.prompt.negative)


def generate(
    config: Text3DConfig,
    run_dir: Path,
    resume: bool = False,
    callbacks: list[Callback] | None = None,
    stop_event: threading.Event | None = None,
) -> JobResult:
    """Score-distil ``config.prompt.text`` into a textured mesh."""
    from text3d.guide.models import load_diffusion_model
    from text3d.guide.sds import make_sds_guide
    from text3d.prompt.processor import PromptProcessor

    check_prompt(config)  # fail on a bad prompt before loading a model
    accelerator = make_accelerator(config.trainer)
    sds = config.guide.sds
    model = load_diffusion_model(sds.model, sds.kind, accelerator.device)
    prompts = PromptProcessor(config.prompt, model.tokenizer, model.text_encoder, accelerator.device, model.dtype)
    log.info("generate: '%s' with %s (%s SDS)", config.prompt.text, model.model_id, sds.kind)
    job = Job(
        config,
        accelerator,
        make_guide=lambda stage: make_sds_guide(
            sds if stage.guidance_scale is None else replace(sds, guidance_scale=stage.guidance_scale),
            model,
            prompts,
            stage.max_steps,
            config.seed,
        ),
        sample_views=lambda camera, _: CameraSampler(camera),
        eval_cameras=lambda camera: CameraSampler(camera).orbit(),
    )
    return _run(job, run_dir, resume, callbacks, stop_event)


def mesh_renderer(cfg: Text3DConfig, device: torch.device) -> MeshRenderer:
    r = cfg.coarse.renderer
    return MeshRenderer(r.background_color, r.ambient, cfg.mesh_render.rasterizer, device, cfg.mesh_render.supersample)


def _run(job: Job, run_dir: Path, resume: bool, callbacks, stop_event) -> JobResult:
    cfg, device, seed = job.config, job.device, job.config.seed
    background = torch.tensor(cfg.coarse.renderer.background_color)
    metrics: dict = {}
    with RunDir.prepare(run_dir, cfg, resume) as run:

        def fit(stage, enabled: bool) -> bool:
            """Train ``stage`` (or load its final checkpoint when disabled); False when stopped."""
            t0 = time.perf_counter()
            if enabled:
                result = Trainer(stage, cfg.trainer, job.accelerator, run.path, callbacks, stop_event).fit(resume)
                if result.stopped:
                    log.info("%s: stopped at step %d; resume with --resume", stage.name, result.step)
                    return False
            elif load_stage_weights(run.path, stage) is None:
                raise UserError(f"{stage.name}.enabled=false but {run.path} has no {stage.name} checkpoint")
            # Seconds spent in this invocation (a resumed run counts only what it trained now).
            metrics[stage.name] = {"steps": stage.max_steps, "train_seconds": round(time.perf_counter() - t0, 2)}
            if job.test_views is not None:
                renders = stage.render_views(job.test_views.cameras)["rgb"]
                metrics[stage.name].update(score(renders, job.test_views, background, stage.name))
            return True

        coarse = CoarseStage(
            cfg.coarse,
            job.make_guide(cfg.coarse),
            job.sample_views(cfg.coarse.camera, False),
            job.eval_cameras(cfg.coarse.camera),
            device,
            seed,
        )
        if not fit(coarse, cfg.coarse.enabled):
            return JobResult(run.path, stopped=True)
        coarse_mesh = extract_mesh(coarse.field, cfg.export.isosurface)
        write_mesh(coarse_mesh, run.path / "coarse.glb")

        renderer = mesh_renderer(cfg, device)
        if cfg.geometry.enabled:
            geometry = GeometryStage(
                cfg.geometry,
                job.make_guide(cfg.geometry),
                job.sample_views(cfg.geometry.camera, True),
                job.eval_cameras(cfg.geometry.camera),
                coarse.field,
                cfg.coarse.field.radius,
                renderer,
                device,
                seed,
            )
            if not fit(geometry, True):
                return JobResult(run.path, stopped=True)
            with torch.no_grad():
                mesh = geometry.mesh()
        else:
            mesh = Mesh(
                torch.as_tensor(coarse_mesh.vertices, dtype=torch.float32, device=device),
                torch.as_tensor(coarse_mesh.faces, dtype=torch.int64, device=device),
            )

        albedo_field = copy.deepcopy(coarse.field).requires_grad_(True)
        if cfg.texture.enabled:
            texture = TextureStage(
                cfg.texture,
                job.make_guide(cfg.texture),
                job.sample_views(cfg.texture.camera, True),
                job.eval_cameras(cfg.texture.camera),
                mesh,
                albedo_field,
                renderer,
                device,
                seed,
            )
            if not fit(texture, True):
                return JobResult(run.path, stopped=True)

        asset = export_assets(mesh, albedo_field, cfg, run.path, renderer, job.eval_cameras(cfg.coarse.camera))
        metrics["export"] = asset_summary(asset)
        if job.test_views is not None:
            renders = render_asset(asset, renderer, job.test_views.cameras)
            metrics["export"].update(score(renders, job.test_views, background, "exported mesh"))
        truth_path = Path(cfg.data.path) / "mesh.ply"
        if job.test_views is not None and truth_path.exists():
            truth = trimesh.load(truth_path, process=False)
            exported = trimesh.Trimesh(asset.vertices, asset.faces, process=False)
            metrics["export"]["chamfer_pct"] = round(100.0 * chamfer_distance(exported, truth), 4)
            log.info("exported mesh: Chamfer distance %.3f%% of the bounding-box diagonal",
                     metrics["export"]["chamfer_pct"])
        write_json(run.path / "metrics.json", metrics)
        return JobResult(run.path, stopped=False, metrics=metrics)


def export_run(run_dir: Path) -> JobResult:
    """Re-export a finished (or interrupted) run's assets from its checkpoints, with its saved config."""
    run = RunDir(run_dir)
    if not run.config_path.exists():
        raise UserError(f"{run_dir} is not a text3d run directory (no config.yaml)")
    cfg = build(Text3DConfig, [load_yaml(run.config_path)])
    from text3d.field.nerf import HashGridField
    from text3d.stage.geometry import DMTet
    from text3d.stage.trainer import CheckpointStore

    store = CheckpointStore(run.path / "checkpoints", keep=1)
    field_ckpt = store.load_latest("texture") or store.load_latest("coarse")
    if field_ckpt is None:
        raise UserError(f"{run_dir} has no coarse or texture checkpoint to export from")
    device = make_accelerator(cfg.trainer).device
    albedo_field = HashGridField(cfg.coarse.field, device=device)
    albedo_field.load_state_dict(field_ckpt[0]["modules"]["field"])
    geometry_ckpt = store.load_latest("geometry")
    if geometry_ckpt is not None:
        dmtet = DMTet(cfg.geometry.tet_resolution, cfg.coarse.field.radius, cfg.geometry.deform_scale, device=device)
        dmtet.load_state_dict(geometry_ckpt[0]["modules"]["dmtet"])
        with torch.no_grad():
            mesh = dmtet.mesh()
    else:
        m = extract_mesh(albedo_field, cfg.export.isosurface)
        mesh = Mesh(torch.as_tensor(m.vertices, dtype=torch.float32), torch.as_tensor(m.faces, dtype=torch.int64))
    renderer = mesh_renderer(cfg, device)
    orbit = CameraSampler(cfg.coarse.camera).orbit()
    with run:
        asset = export_assets(mesh, albedo_field, cfg, run.path, renderer, orbit)
    return JobResult(run.path, stopped=False, metrics={"export": asset_summary(asset)})
