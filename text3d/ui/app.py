"""The Gradio Blocks app of ``text3d ui``: a prompt in; live progress, previews and the textured model out.

One job runs at a time (``concurrency_limit=1``, plus the runner's lock); the others wait in Gradio's bounded
queue. Files are served from the output root only, and a run is reopened only by the name of a direct child of it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import gradio as gr

from text3d.app import pace
from text3d.app.chain import STAGE_NAMES
from text3d.app.presets import generation_preset, load_config, prepare_prompt, runnable_presets
from text3d.app.run_dir import DEFAULT_OUTPUT_ROOT
from text3d.app.schema import Text3DConfig
from text3d.config import Layer, build, field_range, to_dict
from text3d.errors import TrainingError, UserError
from text3d.io import os_reason
from text3d.toy.bundled import TOY_EXAMPLE, TOY_VOCABULARY, is_toy_model
from text3d.ui.command import default_max_steps, parse_auth
from text3d.ui.jobs import Job, JobRunner
from text3d.ui.runs import RunView, list_runs, resolve_run

CANCEL_WAIT = 60.0
"""Seconds Cancel waits for the current step to end and the checkpoint to be written."""
CSS = "#preview img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }"
"""Previews are small renders (64² and less): show them filling their box, unblurred."""
N_OUTPUTS = 7
"""status, preview, downloads, turntable, past-runs gallery, run picker, 3D model: what the handlers return.
``generate`` streams the first six; the viewer gets the model from a follow-up event (see ``build_app``)."""


def job_config(
    base: Text3DConfig, prompt: str, negative: str, seed: int, steps: int, guidance: float, max_steps: int
) -> Text3DConfig:
    """``base`` with the form's values. ``steps`` sets ``coarse.max_steps`` and scales ``geometry.max_steps`` and
    ``texture.max_steps`` by the same factor (at least 1), so one number sizes the whole run; it may not exceed the
    server's ``max_steps``. Every value is checked against the config schema."""
    if steps > max_steps:
        raise UserError(f"Steps must be at most {max_steps} on this server (text3d ui --max-steps)")
    scale = steps / max(base.coarse.max_steps, 1)
    form = {
        "prompt": {"text": prompt, "negative": negative},
        "seed": seed,
        "coarse": {"max_steps": steps},
        "geometry": {"max_steps": max(1, round(base.geometry.max_steps * scale))},
        "texture": {"max_steps": max(1, round(base.texture.max_steps * scale))},
        "guide": {"sds": {"guidance_scale": guidance}},
    }
    config = build(Text3DConfig, [Layer(to_dict(base), source="preset"), Layer(form, source="web UI")])
    return prepare_prompt(config)[0]


def _clock(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{s:02d}" if minutes >= 60 else f"{minutes}:{s:02d}"


def job_status(job: Job) -> str:
    """Markdown on a running job: stage, step, times, then the latest losses."""
    total = _clock(time.monotonic() - job.started)
    p = job.progress
    if job.waiting:
        return f"Waiting for the previous generation to stop… ({total})"
    if p is None:
        return f"Loading the model… ({total})"
    stages = [s for s in STAGE_NAMES if getattr(job.config, s).enabled]
    n = stages.index(p.stage) + 1 if p.stage in stages else 0
    if job.stage_done:
        nxt = "exporting the textured mesh, OBJ and turntable" if n == len(stages) else "preparing the next stage"
        return f"**{p.stage}** done: {nxt}… ({total} in all)"
    losses = ", ".join(f"{k} {v:.4g}" for k, v in p.losses.items())
    if p.eta is None:
        left = "estimating the time left"
    else:  # the stages after this one at this machine's measured pace, when a finished run like this one gave it
        later = pace.seconds_after(job.config, job.cpu_threads, p.stage) if job.cpu_threads else None
        to_end = f" (about {_clock(p.eta + later)} to the end)" if later is not None else ""
        left = f"about {_clock(p.eta)} left{to_end}"
    return (
        f"**{p.stage}** (stage {n} of {len(stages)}) · step {p.step} / {p.max_steps} · "
        f"{_clock(p.seconds)} in this stage, {left} · {total} in all"
        + (f"  \n{losses}" if losses else "")
    )


def _error(e: Exception) -> gr.Error:
    # Expected failures (bad prompt, missing model, a non-finite loss) are one line; anything else says where to look.
    message = str(e) if isinstance(e, (UserError, TrainingError)) else (
        f"generation failed ({type(e).__name__}: {e}); the server log has the details"
    )
    return gr.Error(message, print_exception=False)


class App:
    """The handlers behind the Blocks layout; state that outlives a request lives here."""

    def __init__(self, output_root: Path, default_preset: str, model: str | None, base_overrides: list[str],
                 max_steps: int) -> None:
        self.root = output_root
        self.model = model
        self.max_steps = max_steps
        self.presets, self.hidden_presets = runnable_presets(model, default_preset)
        self.overrides = list(base_overrides)
        self.runner = JobRunner()
        self.default = self.base(default_preset)  # fails at launch, not at the first click, on a bad setup

    def base(self, preset: str) -> Text3DConfig:
        """The preset (only a shipped one: no path is accepted from a browser), then ``--model``, then the
        launch-time overrides: what the form starts from."""
        if preset not in self.presets:
            raise UserError(f"unknown preset {preset!r} (choose one of {', '.join(self.presets)})")
        options = [("guide.sds.model.model", self.model)] if self.model else []
        return load_config(preset, self.overrides, options)

    # --- what the outputs show ---
    def _runs(self) -> tuple[list[tuple[str, str]], list[str]]:
        """The past-runs gallery (thumbnail, run name) and the names of all runs."""
        views = [RunView.of(run) for run in list_runs(self.root)]
        gallery = [(str(v.thumbnail), v.path.name) for v in views if v.thumbnail is not None]
        return gallery, [v.path.name for v in views]

    def runs(self) -> tuple[list[tuple[str, str]], gr.Dropdown]:
        gallery, names = self._runs()
        return gallery, gr.Dropdown(choices=names)

    def show_run(self, run: Path, status: str) -> tuple:
        view = RunView.of(run)
        gallery, names = self._runs()
        files = [str(p) for p in view.downloads()] or None
        picker = gr.Dropdown(choices=names, value=run.name)
        return (status, _path(view.preview), files, _path(view.video), gallery, picker, _path(view.model))

    def finished(self, job: Job) -> tuple:
        """The outputs once ``job`` has ended; raises the job's error as a gr.Error."""
        if job.error is not None:
            raise _error(job.error)
        p = job.progress
        if job.stopped and p is None:
            return ("Cancelled before it started.", *[gr.skip()] * (N_OUTPUTS - 1))
        if job.stopped:
            where = f" (`checkpoints/{job.checkpoint.name}`)" if job.checkpoint else ""
            return self.show_run(
                job.run_dir,
                f"Stopped at step {p.step} of the {p.stage} stage; checkpoint kept{where}. "
                "Generate again with the same settings to continue from it.",
            )
        took = _clock(time.monotonic() - job.started)
        return self.show_run(job.run_dir, f"Done in {took}: **{job.run_dir.name}**")

    # --- event handlers ---
    def generate(
        self,
        prompt: str,
        negative: str,
        preset: str,
        seed: float,
        steps: float,
        guidance: float,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 -- Gradio finds its tracker by this default
    ) -> Iterator[tuple]:
        """Start a job for this browser session and stream its progress; end with its results."""
        if seed is None or steps is None or guidance is None:  # a cleared number field
            raise gr.Error("Seed, steps and guidance scale need a value.", print_exception=False)
        try:
            config = job_config(self.base(preset), prompt or "", negative or "", int(seed), int(steps), guidance,
                                self.max_steps)
        except UserError as e:
            raise _error(e) from None
        job = self.runner.start(request.session_hash or "", config, self.root)
        try:
            yield (job_status(job), None, None, None, gr.skip(), gr.skip())  # clear the last result
            shown = None
            for _ in job.updates():
                if job.progress is not None:
                    progress((job.progress.step, job.progress.max_steps), desc=job.progress.stage, unit="steps")
                # Send a preview only when it is a new one: each sent file is hashed into Gradio's cache.
                preview = gr.skip() if job.preview == shown else _path(job.preview)
                shown = job.preview
                yield (job_status(job), preview, *[gr.skip()] * (N_OUTPUTS - 3))
            yield self.finished(job)[:-1]
        finally:
            job.cancel()  # a no-op once it ended; stops it if Gradio dropped this generator (page closed)

    def cancel(self, request: gr.Request) -> tuple:
        """Stop this session's job after its current step; it keeps a checkpoint of the last completed step."""
        job = self.runner.job_of(request.session_hash or "")
        if job is None:  # the browser's own cancel has withdrawn a request still waiting in the queue, if any
            gr.Info("No generation of yours is running.")
            return (gr.skip(),) * N_OUTPUTS
        job.cancel()
        if not job.wait(CANCEL_WAIT):
            return ("Stopping after the current step; the checkpoint will be kept.", *[gr.skip()] * (N_OUTPUTS - 1))
        return self.finished(job)

    def open_run(self, name: str | None) -> tuple:
        """Show a past run, given its directory name (validated: a direct child of the output root)."""
        try:
            run = resolve_run(self.root, name or "")
        except UserError as e:
            raise _error(e) from None
        view = RunView.of(run)
        state = "finished" if view.finished else "stopped or still running; Generate with its settings to continue"
        return self.show_run(run, f"**{run.name}** ({state})")

    def model_of(self, name: str | None) -> str | None:
        """The model.glb of a run, for the 3D viewer once ``generate`` has ended."""
        try:
            return _path(RunView.of(resolve_run(self.root, name or "")).model)
        except UserError as e:
            raise _error(e) from None

    def open_selected(self, evt: gr.SelectData) -> tuple:
        # The caption is the run's name; it goes through the same validation as a typed name.
        return self.open_run(evt.value.get("caption") if isinstance(evt.value, dict) else None)

    def preset_defaults(self, preset: str) -> tuple[int, float]:
        try:
            cfg = self.base(preset)
        except UserError as e:
            raise _error(e) from None
        return cfg.coarse.max_steps, cfg.guide.sds.guidance_scale


def _path(p: Path | None) -> str | None:
    return str(p) if p is not None else None


def build_app(
    output_root: Path, default_preset: str, model: str | None, base_overrides: list[str], max_queue: int = 4,
    max_steps: int = 10_000,
) -> gr.Blocks:
    """The Blocks app, its queue holding at most ``max_queue`` waiting jobs, each of at most ``max_steps`` coarse
    steps; ``launch`` adds the file rules."""
    app = App(Path(output_root).resolve(), default_preset, model, base_overrides, max_steps)
    seed_range = field_range(Text3DConfig, "seed")
    hidden = "; ".join(f"{name}: {why}" for name, why in app.hidden_presets.items())
    hidden = f"not offered here: {hidden}" if hidden else ""
    guidance_range = field_range(Text3DConfig, "guide.sds.guidance_scale")
    cfg = app.default
    model_name = Path(cfg.guide.sds.model.model).name  # not the server's folder layout
    with gr.Blocks(title="text3d", analytics_enabled=False) as demo:  # no calls home: often run offline
        gr.Markdown(
            f"# text3d\nText to a textured 3D model by score distillation of `{model_name}`. One generation runs "
            f"at a time and up to {max_queue} more wait in line; when the line is full the page says it is busy: "
            "try again a little later. Cancel stops only a generation started from this browser; every job is "
            f"bounded by this server's `--max-steps` ({max_steps} steps), and its operator can restart the server."
        )
        with gr.Row():
            with gr.Column(scale=2):
                toy = is_toy_model(cfg.guide.sds.model.model)
                prompt = gr.Textbox(label="Prompt", placeholder=TOY_EXAMPLE if toy else "a ceramic mug of coffee",
                                    info=f"the bundled toy model knows {TOY_VOCABULARY}" if toy else None,
                                    elem_id="prompt")
                negative = gr.Textbox(label="Negative prompt", value=cfg.prompt.negative)
                with gr.Row():
                    preset = gr.Dropdown(app.presets, value=default_preset, label="Preset", info=hidden or None)
                    seed = gr.Number(cfg.seed, label="Seed", precision=0, minimum=seed_range.min,
                                     maximum=seed_range.max)
                with gr.Row():
                    steps = gr.Number(min(cfg.coarse.max_steps, max_steps), label="Steps", precision=0, minimum=1,
                                      maximum=max_steps,
                                      info=f"coarse steps (at most {max_steps}); geometry and texture steps scale "
                                      "with it")
                    guidance = gr.Number(cfg.guide.sds.guidance_scale, label="Guidance scale",
                                         minimum=guidance_range.min)
                with gr.Row():
                    start = gr.Button("Generate", variant="primary")
                    stop = gr.Button("Cancel", variant="stop")
                status = gr.Markdown("Ready.", elem_id="status")
                preview = gr.Image(label="Live preview", type="filepath", interactive=False, height=260,
                                   elem_id="preview")
            with gr.Column(scale=3):
                model3d = gr.Model3D(label="Model (model.glb)", height=420, elem_id="model3d")
                with gr.Row():
                    turntable = gr.Video(label="Turntable", autoplay=True, loop=True, interactive=False, height=240)
                    downloads = gr.File(label="Downloads", file_count="multiple", interactive=False,
                                        elem_id="downloads")
        with gr.Accordion("Past runs", open=True):
            gallery = gr.Gallery(label="Contact sheets (click to open)", columns=6, fit_columns=False, height=240,
                                 object_fit="contain", allow_preview=False, elem_id="past-runs")
            picker = gr.Dropdown(label="Open a run", allow_custom_value=True)

        outputs = [status, preview, downloads, turntable, gallery, picker, model3d]
        running = gr.on(
            [start.click, prompt.submit],
            app.generate,
            [prompt, negative, preset, seed, steps, guidance],
            outputs[:-1],
            api_name="generate",
            concurrency_limit=1,
            # One progress bar, in the viewer that stays empty until the end; the status line has the details.
            show_progress_on=[model3d],
        )
        # Gradio 6.31's viewer does not mount when its file comes in a streaming event's last message (that
        # message is applied twice, and the second cancels the first's loading), so a one-shot event sets it.
        running.success(app.model_of, picker, model3d, api_visibility="private", queue=False)
        # The server-side stop (works for API clients too), plus Gradio's own cancel of this session's event,
        # which also drops a job still waiting in the queue.
        stop.click(app.cancel, None, outputs, api_name="cancel", queue=False, cancels=[running])
        preset.input(app.preset_defaults, preset, [steps, guidance], api_visibility="private", queue=False)
        picker.input(app.open_run, picker, outputs, api_name="open_run", queue=False)
        gallery.select(app.open_selected, None, outputs, api_visibility="private", queue=False)
        demo.load(app.runs, None, [gallery, picker], api_visibility="private", queue=False)
    # A full queue refuses new jobs at once: Gradio answers HTTP 503, which the page shows as "This application is
    # currently busy. Please try again." and gradio_client raises as QueueError("Queue is full! ...").
    return demo.queue(max_size=max_queue)


def launch(args: argparse.Namespace, prevent_thread_lock: bool = False) -> gr.Blocks:
    """Build the app from ``text3d ui``'s options and serve it (blocks unless ``prevent_thread_lock``)."""
    root = Path(args.output_root or DEFAULT_OUTPUT_ROOT).resolve()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output root {root}: {e.strerror}") from None
    preset, note = generation_preset(args.preset, args.model, interactive=True)
    if note:
        print(note, file=sys.stderr)
    demo = build_app(root, preset, args.model, args.overrides, args.max_queue, args.max_steps or default_max_steps())
    try:
        _serve(demo, args, root, prevent_thread_lock)
    except OSError as e:  # e.g. the port was taken between the check and the start
        raise UserError(f"--port: the web UI could not start listening ({os_reason(e)}); choose another --port"
                        ) from None
    return demo


def _serve(demo: gr.Blocks, args: argparse.Namespace, root: Path, prevent_thread_lock: bool) -> None:
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        auth=parse_auth(args.auth),
        # Gradio copies each returned file into its cache and serves it from there; besides that cache, the
        # output root is the only folder whose files may be returned or fetched.
        allowed_paths=[str(root)],
        max_file_size="1mb",  # the form takes no files: keep Gradio's always-open upload route small
        run_history=False,  # past runs live in the output root (the gallery), not in each browser
        ssr_mode=False,  # no Node server beside Python
        css=CSS,
        prevent_thread_lock=True,
        quiet=True,  # Gradio's own banner tells to edit launch(); ours names the options
    )
    share = f"; public link: {demo.share_url}" if demo.share_url else " (add --share for a public link)"
    print(f"text3d ui: serving {demo.local_url}{share}; Ctrl-C stops it", file=sys.stderr, flush=True)
    if not prevent_thread_lock:
        demo.block_thread()
