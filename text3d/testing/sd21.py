"""A full-size Stable Diffusion 2.1-base architecture with random weights, saved in diffusers' layout.

For GPU benchmarks without a model hub: the UNet, VAE and text encoder have the published SD 2.1-base shapes, so a
step costs what it costs with the real weights; the outputs are noise. The tokenizer is the tiny word-level one of
:mod:`text3d.testing.tiny_models` (the text encoder runs once per prompt, so its vocabulary does not change step
costs). About 2.7 GB on disk: UNet and text encoder in float16, the VAE in float32 (its config asks for upcasting).
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from text3d.prompt.vocab import write_word_tokenizer
from text3d.testing.tiny_models import COMMON_PARTS, write_model_index

# Model configs as published with stabilityai/stable-diffusion-2-1-base.
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
    max_position_embeddings=77,
)
_WORDS = ("a", "the", "of", "on", "photo", "dslr", "hamburger", "ceramic", "mug", "coffee", "wooden", "chair")


def write_random_sd21(path: str | Path, device: torch.device | str = "cpu", seed: int = 0) -> Path:
    """Write the random-weight SD 2.1-base folder to ``path`` (weights are initialised on ``device``: fast on a GPU)."""
    path = Path(path)
    (path / "tokenizer").mkdir(parents=True, exist_ok=True)
    tokenizer = write_word_tokenizer(path / "tokenizer", _WORDS)
    torch.manual_seed(seed)
    with torch.device(device):
        text = CLIPTextConfig(**TEXT, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                              eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        CLIPTextModel(text).half().save_pretrained(path / "text_encoder")
        UNet2DConditionModel(**UNET).half().save_pretrained(path / "unet")
        AutoencoderKL(**VAE).save_pretrained(path / "vae")
    DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                  clip_sample=False, steps_offset=1).save_pretrained(path / "scheduler")
    write_model_index(path, "StableDiffusionPipeline", {**COMMON_PARTS, "vae": ("diffusers", "AutoencoderKL")})
    return path
