"""Seeded tiny random text-to-image diffusion models, saved in diffusers' folder layout.

Each builder writes ``tokenizer/``, ``text_encoder/``, ``unet/``, ``scheduler/`` (and ``vae/`` for the latent
model) plus ``model_index.json`` with ``save_pretrained`` (safetensors), so tests load them exactly like a hub
model. The weights are random: the models produce noise, but every shape, dtype and config path is real.
Building and saving one takes about 0.1 s on a CPU; a folder is about 3.5 MB (mostly the UNet).
"""

from __future__ import annotations

import json
from pathlib import Path

import diffusers
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from text3d.prompt.vocab import write_word_tokenizer

# Words whose BPE merges the tiny tokenizer knows, so that prompts split into words and sub-words rather than
# single characters (as with the real CLIP vocabulary).
_WORDS = ("a", "the", "of", "on", "red", "blue", "green", "cube", "sphere", "chair", "photo", "dog", "cat", "wooden")


def _write_text_encoder(path: Path, tokenizer: CLIPTokenizer, seed: int) -> None:
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=32,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    CLIPTextModel(config).save_pretrained(path)


def _write_unet(path: Path, seed: int, sample_size: int, in_channels: int, out_channels: int) -> None:
    torch.manual_seed(seed)
    UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=out_channels,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
        use_linear_projection=True,
    ).save_pretrained(path)


def write_model_index(path: Path, class_name: str, components: dict[str, tuple[str, str]]) -> None:
    index = {"_class_name": class_name, "_diffusers_version": diffusers.__version__}
    index.update({name: list(lib_cls) for name, lib_cls in sorted(components.items())})
    (path / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


def _write_common(path: Path, seed: int) -> None:
    """Tokenizer and text encoder, shared by both model kinds."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "tokenizer").mkdir(exist_ok=True)
    tokenizer = write_word_tokenizer(path / "tokenizer", _WORDS)
    _write_text_encoder(path / "text_encoder", tokenizer, seed)


# model_index.json entries of the parts both kinds share: (library, class) per subfolder.
COMMON_PARTS = {
    "tokenizer": ("transformers", "CLIPTokenizer"),
    "text_encoder": ("transformers", "CLIPTextModel"),
    "unet": ("diffusers", "UNet2DConditionModel"),
    "scheduler": ("diffusers", "DDPMScheduler"),
}


def make_tiny_sd(path: str | Path, seed: int = 0, sample_size: int = 32) -> Path:
    """A tiny latent model laid out like Stable Diffusion 2.1 (CLIP text encoder, VAE with 4 latent channels).

    ``sample_size`` is the image side in pixels; the VAE downsamples by 2, so latents are
    ``[B, 4, sample_size / 2, sample_size / 2]``. Returns ``path``.
    """
    path = Path(path)
    _write_common(path, seed)
    torch.manual_seed(seed)
    AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=sample_size,
    ).save_pretrained(path / "vae")
    _write_unet(path / "unet", seed, sample_size // 2, in_channels=4, out_channels=4)
    # Stable Diffusion's noise schedule (its repo ships a PNDM config with these betas).
    DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        steps_offset=1,
    ).save_pretrained(path / "scheduler")
    write_model_index(path, "StableDiffusionPipeline", {**COMMON_PARTS, "vae": ("diffusers", "AutoencoderKL")})
    return path


def make_tiny_pixel(path: str | Path, seed: int = 0, sample_size: int = 32, learned_variance: bool = True) -> Path:
    """A tiny pixel-space model like DeepFloyd IF stage I, but with a CLIP text encoder: no VAE, RGB UNet input.

    With ``learned_variance`` the UNet outputs ``[B, 6, H, W]`` (noise, then variance interpolation, as IF) and
    the scheduler uses IF's ``learned_range`` variance; else ``[B, 3, H, W]``. Returns ``path``.
    """
    path = Path(path)
    _write_common(path, seed)
    _write_unet(path / "unet", seed, sample_size, in_channels=3, out_channels=6 if learned_variance else 3)
    DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        variance_type="learned_range" if learned_variance else "fixed_small",
    ).save_pretrained(path / "scheduler")
    write_model_index(path, "Text3DPixelDiffusion", COMMON_PARTS)
    return path
