"""The ``text3d batch`` verb: a prompt file in, one run directory per prompt and a manifest out.

Argument parsing and the summary line only; the batch itself is :func:`text3d.app.batch.run_batch`, or with ``--ray``
:func:`text3d.app.batch_ray.run_plan_on_ray` (prompt files: :mod:`text3d.app.prompt_files`, whose syntax
``prompts/README.md`` documents).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from functools import partial

from text3d.app.arguments import count_argument, path_argument
from text3d.app.batch_plan import plan_batch
from text3d.app.presets import GPU_PRESET, TOY_PRESET, generation_preset
from text3d.app.prompt_files import parse_prompt_file
from text3d.app.run_dir import DEFAULT_OUTPUT_ROOT, slugify
from text3d.errors import UserError


def add_batch_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The ``batch`` sub-command's parser."""
    p = subparsers.add_parser(
        "batch",
        help="generate a 3D asset for every prompt of a .txt or .jsonl prompt file",
        description="Generate every prompt of PROMPTS_FILE into its own run directory under --out-root, with a "
        "manifest.jsonl; re-running skips finished runs and resumes unfinished ones. Under "
        "`accelerate launch --multi_gpu --num_processes N` the prompts are shared between the processes.",
    )
    p.add_argument("prompts", type=path_argument, metavar="PROMPTS_FILE",
                   help="prompt file (.txt or .jsonl, see prompts/)")
    p.add_argument("--out-root", type=path_argument,
                   help="folder of the runs and manifest.jsonl (default: outputs/<prompt-file-stem-slug>)")
    p.add_argument(
        "--preset",
        help=f"preset name or a YAML path (default: {GPU_PRESET} with CUDA or --model, else {TOY_PRESET})",
    )
    p.add_argument("--model", help="diffusers model id or local folder (sets guide.sds.model.model)")
    p.add_argument(
        "--resume", action=argparse.BooleanOptionalAction, default=True,
        help="skip finished runs and resume unfinished ones (default); --no-resume refuses existing runs",
    )
    p.add_argument(
        "--ray", nargs="?", const="local", metavar="ADDRESS",
        help="run the prompts as tasks on a Ray cluster (pip install 'text3d[ray]'): ADDRESS is 'auto' (the cluster "
        "this machine belongs to), host:port or ray://host:port; without ADDRESS the cluster 'ray start' started here, "
        "else a local one for this batch. "
        "--out-root must be on storage every node mounts at the same path",
    )
    p.add_argument("--ray-cpus", type=count_argument(1), default=1, metavar="N",
                   help="CPUs per task on a cluster without GPUs (default 1; with GPUs each task takes one GPU)")
    p.add_argument("--ray-retries", type=count_argument(0), default=3, metavar="N",
                   help="times a task is run again when its worker or node dies (default 3); it resumes from the "
                   "run's last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every prompt")
    return p


def cmd_batch(args: argparse.Namespace) -> int:
    if args.ray is not None:
        check_ray()
    items, errors = parse_prompt_file(args.prompts)  # every bad line is reported, with the configs', in one pass
    out_root = args.out_root or DEFAULT_OUTPUT_ROOT / slugify(args.prompts.stem)
    plan = partial(plan_batch, items, out_root, overrides=args.overrides, model=args.model, resume=args.resume,
                   source=str(args.prompts), errors=errors)
    if args.preset is None:
        plan(None)  # bad lines and options answer before torch is imported to choose the preset
    preset, note = generation_preset(args.preset, args.model)
    if note:
        print(note, file=sys.stderr)
    planned = plan(preset)
    if args.ray is not None:
        from text3d.app.batch_ray import run_plan_on_ray

        address = None if args.ray == "local" else args.ray
        result = run_plan_on_ray(planned, out_root, address, source=str(args.prompts), progress=not args.quiet,
                                 cpus=args.ray_cpus, retries=args.ray_retries)
        print(result.summary())
        return result.exit_code
    from text3d.app.batch import run_plan  # torch, accelerate and the model stack: only for a batch that checks out

    result = run_plan(planned, out_root, source=str(args.prompts), progress=not args.quiet)
    if result.rank != 0:
        # The batch's status is rank 0's: a failing exit here would make the launcher kill rank 0 before it reports.
        return 0
    print(result.summary())
    return result.exit_code


def check_ray() -> None:
    """``--ray`` needs Ray, and is the whole cluster's launcher: not under ``accelerate launch`` (before torch)."""
    if importlib.util.find_spec("ray") is None:
        raise UserError("--ray needs Ray: pip install 'text3d[ray]'")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("--ray runs the whole batch from one process: start it without accelerate launch")
