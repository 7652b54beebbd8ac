"""The jobs that the command line, batch runs and the web UI start: each writes one run directory.

- :func:`reconstruct` fits the stage chain to posed reference views and scores every stage on the test views;
- :func:`generate` score-distils a text-to-image model into the chain;
- :func:`export_run` rebuilds a run's files from its checkpoints.

Each stage checkpoints on its own; a resumed job continues the first unfinished stage (see :mod:`text3d.app.chain`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import trimesh

from text3d.app import pace
from text3d.app.chain import Handover, JobContext, last_checkpointed_stage, run_stages
from text3d.app.presets import prepare_prompt, with_export_overrides
from text3d.app.run_dir import RunDir, is_finished, saved_config
from text3d.app.schema import Text3DConfig
from text3d.data.nerf_synthetic import ViewSet, load_views
from text3d.errors import UserError
from text3d.export.assets import asset_summary, export_assets, render_asset
from text3d.export.requirements import check_export_tools
from text3d.guide.models import ModelConfig, load_diffusion_model
from text3d.guide.reconstruction import DatasetViewSampler, ReconstructionGuide
from text3d.guide.sds import make_sds_guide
from text3d.io import write_json
from text3d.metrics import chamfer_distance
from text3d.prompt.processor import PromptProcessor
from text3d.renderer.cameras import CameraConfig, Cameras, CameraSampler, ViewSampler
from text3d.stage.config import STAGE_NAMES
from text3d.stage.trainer import Callback, make_accelerator
from text3d.toy.bundled import TOY_MODEL_DIR, is_toy_model

log = logging.getLogger(__name__)


@dataclass
class JobResult:
    run_dir: Path
    stopped: bool
    """True when the run was stopped (cancel) before finishing; its checkpoints allow ``--resume``."""
    metrics: dict = field(default_factory=dict)


def reconstruct(
    config: Text3DConfig,
    run_dir: Path,
    resume: bool = False,
    callbacks: list[Callback] | None = None,
    stop_event: threading.Event | None = None,
) -> JobResult:
    """Fit every stage to ``config.data.path``'s training views; score each on the test views; export."""
    start = time.perf_counter()
    if not config.data.path:
        raise UserError("no dataset given (data.path is empty)")
    train = load_views(Path(config.data.path), "train", config.data.downscale)
    test = load_views(Path(config.data.path), "test", config.data.downscale)
    background = torch.tensor(config.coarse.renderer.background_color)
    guide = ReconstructionGuide(config.guide.reconstruction, train, background)
    eval_cameras = _evaluation_subset(test.cameras, config.coarse.camera.eval_views)

    def sample_views(_: CameraConfig, whole_images: bool) -> ViewSampler:
        rays = 0 if whole_images else config.data.rays_per_view
        return DatasetViewSampler(train.cameras, config.data.views_per_step, rays)

    ctx = JobContext(config, make_accelerator(config.trainer), lambda _: guide, sample_views, lambda _: eval_cameras,
                     test, f"reconstruct: {config.data.path} ({len(train)} training views)")
    return _run(ctx, run_dir, resume, callbacks, stop_event, start)


def model_config(config: ModelConfig) -> ModelConfig:
    """``config`` with the bundled toy model's name (``text3d-toy``) replaced by its folder."""
    return replace(config, model=str(TOY_MODEL_DIR)) if is_toy_model(config.model) else config


def generate(
    config: Text3DConfig,
    run_dir: Path,
    resume: bool = False,
    callbacks: list[Callback] | None = None,
    stop_event: threading.Event | None = None,
) -> JobResult:
    """Score-distil ``config.prompt.text`` into a textured mesh."""
    start = time.perf_counter()
    return _run(generation_context(config), run_dir, resume, callbacks, stop_event, start)


def generation_context(config: Text3DConfig) -> JobContext:
    """What the stages of a text-to-3D run share: the frozen model loaded once, a guide per stage built from it."""
    config, _ = prepare_prompt(config)  # fail on a bad prompt before loading a model
    accelerator = make_accelerator(config.trainer)
    sds = config.guide.sds
    model = load_diffusion_model(model_config(sds.model), sds.kind, accelerator.device)
    prompts = PromptProcessor(config.prompt, model.tokenizer, model.text_encoder, accelerator.device, model.dtype)

    def make_guide(stage):
        stage_sds = replace(sds, **stage.own_guide_settings())
        return make_sds_guide(stage_sds, model, prompts, stage.max_steps, config.seed)

    return JobContext(config, accelerator, make_guide, lambda camera, _: CameraSampler(camera),
                      lambda camera: CameraSampler(camera).orbit(),
                      summary=f"generate: '{config.prompt.text}' with {model.model_id} ({sds.kind} SDS)")


def export_run(run_dir: Path, from_stage: str | None = None, overrides: Sequence[str] = ()) -> JobResult:
    """Rebuild a run's files from its checkpoints, with its saved config: the stage chain with every stage loaded
    from its newest checkpoint, none trained.

    A finished run is exported from what its last stage made: a missing or unreadable checkpoint of a stage it
    trained is an error, unless ``from_stage`` names the last stage to export from (the later ones pass through).
    An unfinished run is exported from its last checkpointed stage. ``overrides`` (``export.KEY=VALUE``) change how
    the files are written; once they are, ``config.yaml`` records the new settings. ``metrics.json``'s export entry
    is updated: a reconstruction whose dataset is still there is scored again on its test views.
    """
    run = RunDir(Path(run_dir))
    if not run.config_path.exists():  # before hold(), which would create the folder
        raise UserError(f"{run_dir} is not a text3d run directory (no config.yaml)")
    with run.hold():
        saved = saved_config(run.path)
        config = with_export_overrides(saved, overrides)
        check_export_tools(config.export)
        last = from_stage
        if last is None and not is_finished(run.path):
            last = last_checkpointed_stage(run.path) or STAGE_NAMES[0]
            log.info("export: %s is unfinished; exporting what the %s stage made", run.path, last)
        test = _test_views(config)
        ctx = JobContext(config, make_accelerator(config.trainer), lambda _: _NoGuide(),
                         lambda camera, _: CameraSampler(camera), lambda camera: CameraSampler(camera).orbit(), test)
        handover = run_stages(ctx, run.path, train=False, last=last)
        exported = _export(ctx, handover, run.path)
        if config != saved:
            run.save_config(config)
        metrics_path = run.path / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
        # The same files as the run wrote (whole chain, same settings): the run's scores of them still hold.
        kept = metrics.get("export", {}) if last is None and config == saved and test is None else {}
        metrics["export"] = {**kept, **exported, "from_stage": last or STAGE_NAMES[-1]}
        write_json(metrics_path, metrics)
    return JobResult(run.path, stopped=False, metrics=metrics)


def _test_views(config: Text3DConfig) -> ViewSet | None:
    """A reconstruction's test views, when its dataset is still where the run found it."""
    path = Path(config.data.path) if config.data.path else None
    if path is None or not (path / "transforms_test.json").is_file():
        return None
    return load_views(path, "test", config.data.downscale)


def _export(ctx: JobContext, handover: Handover, run_dir: Path) -> dict:
    """Write the asset's files from what the stages handed on; returns metrics.json's export entry: the summary, the
    seconds the files took and, where the job has test views, the asset's test PSNR and (with the dataset's
    ``mesh.ply``) its Chamfer distance."""
    start = time.perf_counter()
    cfg = ctx.config
    asset = export_assets(handover.mesh, handover.albedo, cfg, run_dir, ctx.renderer, ctx.eval_cameras(cfg.coarse.camera))
    export = {**asset_summary(asset, cfg.coarse.field.radius), "seconds": round(time.perf_counter() - start, 2)}
    if ctx.test_views is None:
        return export
    export.update(ctx.score(render_asset(asset, ctx.renderer, ctx.test_views.cameras), "exported mesh"))
    truth_path = Path(cfg.data.path) / "mesh.ply"
    if truth_path.exists():
        truth = trimesh.load(truth_path, process=False)
        exported = trimesh.Trimesh(asset.vertices, asset.faces, process=False)
        export["chamfer_pct"] = round(100.0 * chamfer_distance(exported, truth), 4)
        log.info("exported mesh: Chamfer distance %.3f%% of the bounding-box diagonal", export["chamfer_pct"])
    return export


def _run(ctx: JobContext, run_dir: Path, resume: bool, callbacks, stop_event, start: float) -> JobResult:
    cfg = ctx.config
    check_export_tools(cfg.export)  # before the training that the export would otherwise end
    metrics: dict = {}
    with RunDir(Path(run_dir)).hold(cfg, resume) as run:
        log.info(ctx.summary)
        handover = run_stages(ctx, run.path, True, resume, callbacks, stop_event, metrics)
        if handover is None:
            return JobResult(run.path, stopped=True)
        metrics["export"] = _export(ctx, handover, run.path)
        write_json(run.path / "metrics.json", metrics)
        if not resume:  # a whole run, start to end: its pace tells the next one how long it will take
            pace.record(cfg, torch.get_num_threads(), metrics, time.perf_counter() - start)
        return JobResult(run.path, stopped=False, metrics=metrics)


def _evaluation_subset(cameras: Cameras, n: int) -> Cameras:
    """``n`` views spread evenly over a camera list (for previews)."""
    idx = torch.linspace(0, len(cameras) - 1, min(n, len(cameras))).round().long()
    return cameras[idx]


class _NoGuide:
    """The guide of stages that are only loaded from checkpoints (export): it never scores a render."""

    loss_weights: dict[str, float] = {}

    def step(self, renders, cameras, step):
        raise RuntimeError("stages loaded for export do not train")

    def load_state_dict(self, state: dict) -> None:
        """A checkpoint's guide state (random generators) is of no use when nothing trains."""
