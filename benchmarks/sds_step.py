"""Each stage's SDS training step against the diffusion floor, with a full-size Stable Diffusion 2.1-base.

    python benchmarks/sds_step.py [--preset dreamfusion-sd] [--preset preview] [--model DIR] [--steps 10]
                                  [--json FILE] [--profile FILE] [--cpu] [KEY=VALUE ...]

The floor is what any SDS implementation pays per step with this model: the UNet forward with classifier-free
guidance (batch 2 x views at the preset's latent size) plus the VAE encode, forward and backward, of the views at
``guide.sds.resolution``. Then one training step of each stage (coarse NeRF, DMTet geometry, texture) built from the
preset, exactly as the trainer runs it (autocast, backward, optimizer), and its ratio to the floor; peak GPU memory
per stage. ``--model`` is a folder in diffusers' layout (default: random weights written to a temporary folder by
:func:`text3d.testing.sd21.write_random_sd21`; same cost as the real ones). GPU only: without CUDA it says so and
exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch


def timed(fn, repeats: int, warmup: int = 2) -> float:
    """Mean seconds per call after ``warmup`` calls, with device syncs around the timing."""
    for _ in range(warmup):
        fn()
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - start) / repeats


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_gib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 3) if device.type == "cuda" else None


def profiled(fn, device: torch.device, steps: int = 3) -> tuple[float | None, str]:
    """Profile ``steps`` calls of ``fn``: (device kernel milliseconds per call, None on the CPU; the op table)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    with profile(activities=activities) as prof:
        for _ in range(steps):
            fn()
        sync()
    events = prof.key_averages()
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    busy = None
    if cuda:  # the kernels' device time (microseconds), per call, summed as the table's footer sums it
        kernels = [e for e in events if e.device_type == DeviceType.CUDA and not e.is_user_annotation]
        busy = round(sum(e.self_device_time_total for e in kernels) / steps / 1000, 2)
    return busy, events.table(sort_by=sort, row_limit=30, max_name_column_width=60)


def measure_preset(preset: str, model_dir: Path, repeats: int, overrides: list[str],
                   profile: Path | None = None) -> dict:
    """Floor and per-stage step times (seconds) and peak memory (GiB) of one preset; with ``profile``, each stage's
    step is also profiled and its op table appended to that file."""
    from text3d.app.chain import STAGES, Handover
    from text3d.app.jobs import generation_context
    from text3d.app.presets import load_config
    from text3d.stage.trainer import Trainer

    prompt = "prompt.text=a dslr photo of a hamburger"
    config = load_config(preset, [f"guide.sds.model.model={model_dir}", prompt, *overrides])
    ctx = generation_context(config)  # as a run sets up: the model loaded once, a guide per stage
    device, accelerator = ctx.device, ctx.accelerator
    coarse_guide = ctx.make_guide(config.coarse)
    model, sds = coarse_guide.model, config.guide.sds

    views = config.coarse.camera.batch_size
    res, factor = sds.resolution, model.vae_scale_factor
    latents = torch.randn(2 * views, 4, res // factor, res // factor, device=device, dtype=model.dtype)
    latents = latents.to(memory_format=torch.channels_last)
    text = torch.randn(2 * views, 77, model.text_encoder.config.hidden_size, device=device, dtype=model.dtype)
    t = torch.full((2 * views,), 500, device=device)
    with torch.no_grad():
        unet_s = timed(lambda: model.unet(latents, t, encoder_hidden_states=text), repeats)
    image = torch.rand(views, 3, res, res, device=device, requires_grad=True)
    vae_s = timed(lambda: coarse_guide.encode(image).float().sum().backward(), repeats)
    floor = unet_s + vae_s
    print(f"preset {preset} ({views} view(s), {res}² SDS): UNet forward with CFG {unet_s * 1000:.1f} ms, "
          f"VAE encode fwd+bwd {vae_s * 1000:.1f} ms, diffusion floor {floor * 1000:.1f} ms", flush=True)

    result = {}
    handover = Handover()
    with tempfile.TemporaryDirectory() as run_dir:
        for link in STAGES:  # each stage built as a run builds it, from what the stage before handed on
            try:
                stage = link.build(ctx, handover)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                trainer = Trainer(stage, config.trainer, accelerator, Path(run_dir))
                steps = iter(range(10**9))
                step_s = timed(lambda: trainer._step(next(steps), None), repeats)
                figures = result[link.name] = {
                    "step_ms": round(step_s * 1000, 2),
                    "ratio_to_floor": round(step_s / floor, 3),
                    "peak_gib": peak_gib(device),
                    "max_steps": stage.max_steps,
                }
                peak = f", peak {figures['peak_gib']:.2f} GiB" if figures["peak_gib"] is not None else ""
                print(f"  {link.name:9s} step {figures['step_ms']:8.1f} ms  {figures['ratio_to_floor']:5.2f}x floor{peak}",
                      flush=True)
                if profile is not None:
                    busy_ms, table = profiled(lambda: trainer._step(next(steps), None), device)
                    figures["device_busy_ms"] = busy_ms
                    with open(profile, "a") as f:
                        busy = f", {busy_ms} ms of device kernels" if busy_ms is not None else ""
                        f.write(f"\n##### {preset}, {link.name} step: {step_s * 1000:.1f} ms wall{busy}\n{table}\n")
                link.hand_on(stage, handover, ctx, Path(run_dir))
            except Exception as exc:  # keep the figures measured so far; the later stages need this one
                traceback.print_exc()
                result[link.name] = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}
                break
    return {
        "preset": preset,
        "views_per_step": views,
        "sds_resolution": res,
        "unet_cfg_ms": round(unet_s * 1000, 2),
        "vae_encode_fwd_bwd_ms": round(vae_s * 1000, 2),
        "floor_ms": round(floor * 1000, 2),
        "stages": result,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", help="preset(s) to measure (default: dreamfusion-sd)")
    parser.add_argument("--model", type=Path, help="model folder (default: random SD 2.1-base weights)")
    parser.add_argument("--steps", type=int, default=10, help="timed repeats per figure")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--profile", type=Path, help="profile each stage's step; write the op tables to this file")
    parser.add_argument("--cpu", action="store_true",
                        help="run on the CPU (a smoke test of this script; needs --model, e.g. a tiny test model)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every preset")
    args = parser.parse_args()
    if args.cpu and args.model is None:
        parser.error("--cpu needs --model (the full-size model is meant for a GPU)")
    if not args.cpu and not torch.cuda.is_available():
        print("skipped: benchmarks/sds_step.py needs a CUDA device (none found)")
        return 0
    from text3d.testing.sd21 import write_random_sd21

    overrides = [*args.overrides, *(["trainer.device=cpu"] if args.cpu else [])]
    if args.profile:
        args.profile.write_text("")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or write_random_sd21(Path(tmp) / "sd21-random", device="cuda")
        report = {
            "device": torch.cuda.get_device_name() if not args.cpu else "cpu",
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "presets": [],
        }
        print(f"{report['device']}  torch {report['torch']}", flush=True)
        for preset in args.preset or ["dreamfusion-sd"]:
            report["presets"].append(measure_preset(preset, model_dir, args.steps, overrides, args.profile))
            if args.json:  # after each preset: a run stopped at a time limit keeps what it measured
                args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if any("error" in s for p in report["presets"] for s in p["stages"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
