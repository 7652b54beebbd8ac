"""The ``text3d`` command line: argument parsing and what is printed; every verb runs the application layer.

Arguments and configs are checked before torch, diffusers or Gradio are imported (seconds on a busy machine), so a
mistake answers at once; each verb imports what runs the job only once its input checks out.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from huggingface_hub.utils import disable_progress_bars

from text3d import __version__
from text3d.app.arguments import path_argument
from text3d.app.presets import (
    GPU_PRESET,
    TOY_PRESET,
    generation_preset,
    load_config,
    prepare_prompt,
    with_export_overrides,
)
from text3d.app.run_dir import DEFAULT_OUTPUT_ROOT, run_names
from text3d.app.schema import Text3DConfig
from text3d.batch import add_batch_parser, cmd_batch
from text3d.config import Range, describe, field_range, to_yaml
from text3d.errors import TrainingError, UserError
from text3d.export.requirements import check_export_tools
from text3d.io import os_reason
from text3d.stage.config import STAGE_NAMES
from text3d.ui.command import add_ui_parser, cmd_ui

log = logging.getLogger("text3d")


def _add_run_options(p: argparse.ArgumentParser, default_preset: str | None) -> None:
    p.add_argument("--out", type=path_argument, help="run directory (default: outputs/<name>-<seed>)")
    default = default_preset or f"{GPU_PRESET} with CUDA or --model, else {TOY_PRESET} (the bundled toy model)"
    p.add_argument("--preset", default=default_preset, help=f"preset name or a YAML path (default: {default})")
    p.add_argument("--seed", type=int, help="random seed (overrides the preset's)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. coarse.max_steps=500")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="text3d", description="Text (or reference views) to a textured 3D asset.")
    parser.add_argument("--version", action="version", version=f"text3d {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "reconstruct",
        help="fit a 3D model to a NeRF-synthetic-style dataset of posed images",
        description="Fit NeRF, mesh and texture to DATASET's training views; write test-view PSNR and the textured mesh.",
    )
    p.add_argument("dataset", type=path_argument, help="folder with transforms_train.json, transforms_test.json and images")
    _add_run_options(p, default_preset="reconstruct")

    p = sub.add_parser(
        "generate",
        help="generate a 3D asset from a text prompt (score distillation)",
        description="Score-distil a text-to-image model into a NeRF, then a mesh and its texture; write the textured mesh.",
    )
    p.add_argument("prompt", help='the text prompt, e.g. "a ceramic mug of coffee"')
    p.add_argument("--negative", help="negative prompt (what the asset should not look like)")
    p.add_argument("--model", help="diffusers model id or local folder (sets guide.sds.model.model)")
    _add_run_options(p, default_preset=None)

    p = sub.add_parser(
        "export",
        help="re-export a run's textured mesh, turntable and contact sheet from its checkpoints",
        description="Rebuild model.glb, model.obj/.mtl/.png, turntable.mp4 and contact_sheet.png of RUN_DIR from its "
        "newest geometry and texture (or coarse) checkpoints, with the run's saved config.",
    )
    p.add_argument("run_dir", type=path_argument, help="a run directory (holds config.yaml and checkpoints/)")
    p.add_argument("--from-stage", choices=STAGE_NAMES,
                   help="export what the stages up to this one made (default: the last stage the run trained)")
    p.add_argument("overrides", nargs="*", metavar="export.KEY=VALUE",
                   help="export settings to change, e.g. export.height_m=0.3 (config.yaml then records them)")

    p = sub.add_parser(
        "make-dataset",
        help="render a procedural object or a mesh file into a NeRF-synthetic-style dataset",
        description="Render a procedural object (sphere-traced SDF) or a mesh file (rasterized) from random and "
        "orbit views; also writes the ground-truth surface as mesh.ply.",
    )
    p.add_argument("out", type=path_argument, help="output folder (must not exist or be empty)")
    p.add_argument(
        "--object", default="toy",
        help="procedural object (sphere, rounded_box, torus, toy) or a mesh file (.obj/.glb/.gltf/.ply/.stl/.off, "
        "textured or vertex-coloured) (default: toy)",
    )
    p.add_argument("--train-views", type=int, default=100, help="number of training views (default: 100)")
    p.add_argument("--test-views", type=int, default=20, help="number of test views (default: 20)")
    p.add_argument("--resolution", type=int, default=64, help="image size in pixels (default: 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the training views (default: 0)")

    p = sub.add_parser(
        "config",
        help="print a resolved config, or every key with its documentation",
        description="Print the config a run would use (preset + overrides), or with --keys every key and its doc.",
    )
    p.add_argument("--preset", help="preset name or a YAML path")
    p.add_argument("--keys", action="store_true", help="list every config key with its type, default and doc")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")

    add_batch_parser(sub)
    add_ui_parser(sub)
    return parser


def _check_overrides(overrides: list[str]) -> None:
    # A mistyped path positional (e.g. a second dataset) would otherwise surface as a confusing config error.
    for o in overrides:
        if "=" not in o:
            raise UserError(f"unexpected argument '{o}': overrides take the form KEY=VALUE")


def _run_job(args: argparse.Namespace, verb: str, extra: list[tuple[str, object]], name: str | None = None) -> int:
    """Shared by the training verbs: config from preset + options + overrides, run directory, progress bar."""
    config = load_config(args.preset, args.overrides, extra)
    check_export_tools(config.export)
    if verb == "generate":
        config, note = prepare_prompt(config)
        if note:
            print(note, file=sys.stderr)
    out = args.out or DEFAULT_OUTPUT_ROOT / next(run_names(config, name))
    from text3d.app import jobs  # torch and the model stack: only for a config that checks out
    from text3d.app.progress import TqdmCallback

    job = {"reconstruct": jobs.reconstruct, "generate": jobs.generate}[verb]
    result = job(config, out, resume=args.resume, callbacks=[] if args.quiet else [TqdmCallback(config)])
    if result.stopped:
        print(f"stopped; continue with: text3d {args.command} ... --out {out} --resume")
        return 1
    e = result.metrics.get("export", {})
    score = f"exported mesh: test PSNR {e['psnr']:.2f} dB; " if "psnr" in e else ""
    print(f"{score}wrote {_written(e, out)} in {out}")
    return 0


def _options(args: argparse.Namespace, extra: list[tuple[str, object]]) -> list[tuple[str, object]]:
    """The command-line options as config layers, after a first check of the KEY=VALUE overrides."""
    _check_overrides(args.overrides)
    return [*extra, *([("seed", args.seed)] if args.seed is not None else [])]


def _written(export: dict, run_dir: Path) -> str:
    """The files a job (or an export) wrote in ``run_dir``: the exported ones, the coarse mesh and the metrics."""
    coarse = ["coarse.glb"] if (run_dir / "coarse.glb").is_file() else []
    return ", ".join([*export.get("files", []), *coarse, "metrics.json"])


def cmd_reconstruct(args: argparse.Namespace) -> int:
    extra = _options(args, [("data.path", str(args.dataset))])
    return _run_job(args, "reconstruct", extra, name=args.dataset.resolve().name)


def cmd_generate(args: argparse.Namespace) -> int:
    extra: list[tuple[str, object]] = [("prompt.text", args.prompt)]
    if args.negative is not None:
        extra.append(("prompt.negative", args.negative))
    if args.model is not None:
        extra.append(("guide.sds.model.model", args.model))
    extra = _options(args, extra)
    if args.preset is None:
        load_config(None, args.overrides, extra)  # bad options answer before torch is imported to choose the preset
    args.preset, note = generation_preset(args.preset, args.model)
    if note:
        print(note, file=sys.stderr)
    return _run_job(args, "generate", extra)


def cmd_export(args: argparse.Namespace) -> int:
    _check_overrides(args.overrides)
    check_export_tools(with_export_overrides(Text3DConfig(), args.overrides).export)  # before torch
    from text3d.app.jobs import export_run

    result = export_run(args.run_dir, args.from_stage, args.overrides)
    print(f"wrote {_written(result.metrics['export'], args.run_dir)} in {args.run_dir}")
    return 0


def cmd_make_dataset(args: argparse.Namespace) -> int:
    limits = {"train_views": Range(1, 10_000), "test_views": Range(1, 10_000), "resolution": Range(1, 4096),
              "seed": field_range(Text3DConfig, "seed")}
    for name, bounds in limits.items():
        if not bounds.contains(getattr(args, name)):
            raise UserError(f"--{name.replace('_', '-')} must be {bounds}, got {getattr(args, name)}")
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise UserError(f"{args.out} exists and is not an empty folder")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot write {args.out}: {os_reason(e)}") from None
    from text3d.data.synthetic import make_dataset  # torch: only once the arguments are checked

    path = make_dataset(args.out, args.object, args.train_views, args.test_views, args.resolution, args.seed)
    print(f"wrote {path}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    _check_overrides(args.overrides)
    if args.keys:
        print(describe(Text3DConfig))
    else:
        print(to_yaml(load_config(args.preset, args.overrides)), end="")
    return 0


def _quiet_libraries() -> None:
    """Hide the model libraries' own loading bars and info chatter; our progress bar is the one to watch."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # huggingface_hub is already imported (it read the variable too early); transformers takes its setting from it.
    disable_progress_bars()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    for name in ("transformers", "diffusers"):
        module = sys.modules.get(name)
        if module is not None:  # already imported: the environment variables came too late
            module.utils.logging.disable_progress_bar()
            module.utils.logging.set_verbosity_error()


COMMANDS = {
    "reconstruct": cmd_reconstruct,
    "generate": cmd_generate,
    "export": cmd_export,
    "batch": cmd_batch,
    "ui": cmd_ui,
    "make-dataset": cmd_make_dataset,
    "config": cmd_config,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Overrides may come after options (`reconstruct DATA --out X a.b=1`), which plain parse_args rejects.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides += extra
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    handler.setLevel(logging.INFO if args.verbose else logging.WARNING)
    if not args.verbose:
        _quiet_libraries()
    try:
        return COMMANDS[args.command](args)
    except (UserError, TrainingError) as e:
        print(f"text3d: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("text3d: interrupted; the last checkpoint is kept (continue with --resume)", file=sys.stderr)
        return 130
    finally:
        log.removeHandler(handler)


if __name__ == "__main__":
    sys.exit(main())
