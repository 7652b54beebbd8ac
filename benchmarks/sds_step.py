"""Each stage's SDS training step against the diffusion floor, with a full-size Stable Diffusion 2.1-base.

    python benchmarks/sds_step.py [--preset dreamfusion-sd] [--preset preview] [--model DIR] [--steps 10]
                                  [--json FILE] [--cpu] [KEY=VALUE ...]

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


def measure_preset(preset: str, model_dir: Path, repeats: int, overrides: list[str]) -> dict:
    """Floor and per-stage step times (seconds) and peak memory (GiB) of one preset."""
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

    result = {}
    handover = Handover()
    with tempfile.TemporaryDirectory() as run_dir:
        for link in STAGES:  # each stage built as a run builds it, from what the stage before handed on
            stage = link.build(ctx, handover)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            trainer = Trainer(stage, config.trainer, accelerator, Path(run_dir))
            steps = iter(range(10**9))
            step_s = timed(lambda: trainer._step(next(steps), None), repeats)
            result[link.name] = {
                "step_ms": round(step_s * 1000, 2),
                "ratio_to_floor": round(step_s / floor, 3),
                "peak_gib": peak_gib(device),
                "max_steps": stage.max_steps,
            }
            link.hand_on(stage, handover, ctx, Path(run_dir))
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
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or write_random_sd21(Path(tmp) / "sd21-random", device="cuda")
        report = {
            "device": torch.cuda.get_device_name() if not args.cpu else "cpu",
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "presets": [measure_preset(p, model_dir, args.steps, overrides) for p in args.preset or ["dreamfusion-sd"]],
        }
    for p in report["presets"]:
        print(f"{report['device']}  torch {report['torch']}  preset {p['preset']}  ({p['views_per_step']} view(s), "
              f"{p['sds_resolution']}² SDS)")
        print(f"  UNet forward, CFG         {p['unet_cfg_ms']:8.1f} ms")
        print(f"  VAE encode fwd+bwd        {p['vae_encode_fwd_bwd_ms']:8.1f} ms")
        print(f"  diffusion floor           {p['floor_ms']:8.1f} ms")
        for name, s in p["stages"].items():
            peak = f"peak {s['peak_gib']:.2f} GiB" if s["peak_gib"] is not None else ""
            print(f"  {name:9s} step            {s['step_ms']:8.1f} ms  {s['ratio_to_floor']:5.2f}x floor  {peak}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
