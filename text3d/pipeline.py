"""Jobs that run stages end to end and write a run directory (the CLI and the web UI call these)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from text3d.config.schema import Text3DConfig
from text3d.data.nerf_synthetic import ViewSet, load_views
from text3d.errors import UserError
from text3d.export.isosurface import extract_mesh, write_mesh
from text3d.guide.reconstruction import DatasetViewSampler, ReconstructionGuide
from text3d.io import write_json
from text3d.metrics import psnr
from text3d.renderer.cameras import CameraSampler
from text3d.run import RunDir
from text3d.stage.coarse import CoarseStage
from text3d.stage.trainer import Callback, Trainer, load_stage_weights, make_accelerator

log = logging.getLogger(__name__)


@dataclass
class JobResult:
    run_dir: Path
    stopped: bool
    """True when the run was stopped (cancel) before finishing; its checkpoint allows ``--resume``."""
    metrics: dict


def evaluation_subset(cameras, n: int):
    """``n`` views spread evenly over a camera list (for previews)."""
    idx = torch.linspace(0, len(cameras) - 1, min(n, len(cameras))).round().long()
    return cameras[idx]


@torch.no_grad()
def evaluate_views(stage: CoarseStage, views: ViewSet, background: torch.Tensor) -> dict:
    """PSNR of the stage's renders of ``views`` against their images composited on ``background``."""
    renders = stage.render_views(views.cameras)["rgb"].cpu()
    target = views.composite(background)
    per_view = psnr(renders.clamp(0, 1), target)
    log.info("%s: test PSNR %.2f dB over %d views", stage.name, per_view.mean().item(), len(views))
    return {"psnr": per_view.mean().item(), "psnr_per_view": [round(v, 3) for v in per_view.tolist()]}


def reconstruct(
    config: Text3DConfig,
    run_dir: Path,
    resume: bool = False,
    callbacks: list[Callback] | None = None,
    stop_event: threading.Event | None = None,
) -> JobResult:
    """Fit the coarse stage to ``config.data.path``'s training views; write test PSNR and the coarse mesh."""
    if not config.data.path:
        raise UserError("no dataset given (data.path is empty)")
    train = load_views(Path(config.data.path), "train", config.data.downscale)
    test = load_views(Path(config.data.path), "test", config.data.downscale)
    accelerator = make_accelerator(config.trainer)
    background = torch.tensor(config.coarse.renderer.background_color)
    guide = ReconstructionGuide(config.guide.reconstruction, train, background)
    sampler = DatasetViewSampler(train.cameras, config.data.views_per_step, config.data.rays_per_view)
    eval_cameras = evaluation_subset(test.cameras, config.coarse.camera.eval_views)
    stage = CoarseStage(config.coarse, guide, sampler, eval_cameras, accelerator.device, config.seed)
    return _coarse_job(
        config,
        run_dir,
        stage,
        accelerator,
        resume,
        callbacks,
        stop_event,
        evaluate=lambda: evaluate_views(stage, test, background),
    )


def generate(
    config: Text3DConfig,
    run_dir: Path,
    resume: bool = False,
    callbacks: list[Callback] | None = None,
    stop_event: threading.Event | None = None,
) -> JobResult:
    """Score-distil ``config.prompt.text`` into the coarse NeRF; write previews, checkpoints and the coarse mesh."""
    from text3d.guide.models import load_diffusion_model
    from text3d.guide.sds import make_sds_guide
    from text3d.prompt.processor import PromptProcessor, clean_prompt

    clean_prompt(config.prompt.text)  # fail on a bad prompt before loading a model
    accelerator = make_accelerator(config.trainer)
    sds = config.guide.sds
    model = load_diffusion_model(sds.model, sds.kind, accelerator.device)
    prompts = PromptProcessor(config.prompt, model.tokenizer, model.text_encoder, accelerator.device, model.dtype)
    guide = make_sds_guide(sds, model, prompts, config.coarse.max_steps, config.seed)
    sampler = CameraSampler(config.coarse.camera)
    stage = CoarseStage(config.coarse, guide, sampler, sampler.orbit(), accelerator.device, config.seed)
    log.info("generate: '%s' with %s (%s SDS)", config.prompt.text, model.model_id, sds.kind)
    return _coarse_job(config, run_dir, stage, accelerator, resume, callbacks, stop_event)


def _coarse_job(
    config: Text3DConfig,
    run_dir: Path,
    stage: CoarseStage,
    accelerator,
    resume: bool,
    callbacks: list[Callback] | None,
    stop_event: threading.Event | None,
    evaluate: Callable[[], dict] | None = None,
) -> JobResult:
    """Open the run directory, train (or load, when disabled) the coarse stage, evaluate, export the mesh."""
    with RunDir.prepare(run_dir, config, resume) as run:
        t0 = time.perf_counter()
        if config.coarse.enabled:
            result = Trainer(stage, config.trainer, accelerator, run.path, callbacks, stop_event).fit(resume)
            if result.stopped:
                log.info("coarse: stopped at step %d; resume with --resume", result.step)
                return JobResult(run.path, stopped=True, metrics={})
        elif load_stage_weights(run.path, stage) is None:
            raise UserError(f"coarse.enabled=false but {run.path} has no coarse checkpoint to start from")
        # Seconds spent in this invocation (a resumed run counts only what it trained now).
        metrics = {"steps": config.coarse.max_steps, "train_seconds": round(time.perf_counter() - t0, 2)}
        if evaluate is not None:
            metrics.update(evaluate())
        mesh = extract_mesh(stage.field, config.export.isosurface)
        write_mesh(mesh, run.path / "coarse.glb")
        metrics["mesh_faces"] = len(mesh.faces)
        write_json(run.path / "metrics.json", {"coarse": metrics})
        return JobResult(run.path, stopped=False, metrics={"coarse": metrics})
