"""One SDS step of the coarse stage with a full-size Stable Diffusion 2.1-base model (random weights, same cost).

    python benchmarks/sds_step.py [--steps 20] [--preset dreamfusion-sd]

Prints the step time split into the diffusion floor (UNet forward with CFG + VAE encode forward/backward at 512²)
and everything else (rendering, hash grid, losses, optimizer), plus peak GPU memory. GPU only: on a machine
without CUDA it prints why and exits 0.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

# SD 2.1-base architecture (model configs as published with the checkpoint); weights are random.
UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    attention_head_dim=(5, 10, 20, 20),
    cross_attention_dim=1024,
    use_linear_projection=True,
)
VAE = dict(
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    sample_size=768,
    scaling_factor=0.18215,
)
TEXT = dict(
    hidden_size=1024,
    intermediate_size=4096,
    num_attention_heads=16,
    num_hidden_layers=23,
    projection_dim=512,
    hidden_act="gelu",
    vocab_size=49408,
    max_position_embeddings=77,
)


def timed(fn, repeats: int) -> float:
    """Mean seconds per call after one warm-up call, with device syncs around the timing."""
    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--preset", default="dreamfusion-sd")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("skipped: benchmarks/sds_step.py needs a CUDA device (none found)")
        return 0

    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from text3d.cli import load_config
    from text3d.guide.models import DiffusionModel
    from text3d.guide.sds import make_sds_guide
    from text3d.prompt.processor import PromptConfig, PromptProcessor
    from text3d.renderer.cameras import CameraSampler
    from text3d.stage.coarse import CoarseStage
    from text3d.stage.trainer import Trainer, make_accelerator
    from text3d.testing.tiny_models import make_tiny_sd

    device, dtype = torch.device("cuda"), torch.float16
    config = load_config(args.preset, [])
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:  # only for the tokenizer files
        tokenizer = CLIPTokenizer.from_pretrained(make_tiny_sd(Path(tmp) / "tok") / "tokenizer")
    model = DiffusionModel(
        tokenizer=tokenizer,
        text_encoder=CLIPTextModel(CLIPTextConfig(**TEXT)).to(device, dtype).eval().requires_grad_(False),
        unet=UNet2DConditionModel(**UNET).to(device, dtype).eval().requires_grad_(False),
        scheduler=DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
        vae=AutoencoderKL(**VAE).to(device, dtype).eval().requires_grad_(False),
        model_id="sd-2.1-base (random weights)",
        dtype=dtype,
    )
    model.unet.to(memory_format=torch.channels_last)
    accelerator = make_accelerator(config.trainer)
    prompts = PromptProcessor(PromptConfig(text="a hamburger"), tokenizer, model.text_encoder, device, dtype)
    guide = make_sds_guide(config.guide.sds, model, prompts, config.coarse.max_steps, config.seed)
    sampler = CameraSampler(config.coarse.camera)
    stage = CoarseStage(config.coarse, guide, sampler, sampler.orbit(), device, config.seed)

    # The floor: what any SDS implementation pays per step with this model.
    res = config.guide.sds.resolution
    latents = torch.randn(2, 4, res // 8, res // 8, device=device, dtype=dtype).to(memory_format=torch.channels_last)
    text = torch.randn(2, 77, 1024, device=device, dtype=dtype)
    t = torch.tensor([500, 500], device=device)
    unet_s = timed(lambda: model.unet(latents, t, encoder_hidden_states=text), args.steps)
    image = torch.rand(1, 3, res, res, device=device, requires_grad=True)

    def vae_fwd_bwd() -> None:
        guide.encode(image).float().sum().backward()

    vae_s = timed(vae_fwd_bwd, args.steps)

    torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(stage, config.trainer, accelerator, Path(run_dir))
        step = iter(range(10**9))
        step_s = timed(lambda: trainer._step(next(step), None), args.steps)
    peak = torch.cuda.max_memory_allocated() / 2**30

    floor = unet_s + vae_s
    print(f"device={torch.cuda.get_device_name()} torch={torch.__version__} preset={args.preset} res={res}")
    print(f"UNet forward, CFG batch 2     {unet_s * 1000:8.1f} ms")
    print(f"VAE encode forward+backward   {vae_s * 1000:8.1f} ms")
    print(f"diffusion floor               {floor * 1000:8.1f} ms")
    print(f"full coarse step              {step_s * 1000:8.1f} ms  (everything else {(step_s - floor) * 1000:.1f} ms)")
    print(f"overhead ratio step/floor     {step_s / floor:8.2f}")
    print(f"peak GPU memory               {peak:8.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
