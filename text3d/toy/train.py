"""Training the toy pixel-space text-to-image model on the toy world (reproducible, seeded).

    python -m text3d.toy.train OUT_DIR [--steps 3000] [--batch-size 64] [--resolution 32] [--seed 0]

The result is a diffusers-layout folder (tokenizer/, text_encoder/, unet/, scheduler/, model_index.json, safetensors)
that `guide.sds.kind=pixel guide.sds.model.model=OUT_DIR` loads through the same ``from_pretrained`` path as any other
model. Training: DDPM noise-prediction loss on renders from the toy world, classifier-free-guidance dropout of the
caption, EMA weights saved.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import diffusers
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DConditionModel
from diffusers.training_utils import EMAModel
from transformers import CLIPTextConfig, CLIPTextModel

from text3d.prompt.vocab import write_word_tokenizer
from text3d.toy.world import COLORS, SHAPES, render_toy_batch

log = logging.getLogger(__name__)

# The words of toy prompts (with their view suffixes) get BPE merges: most become single tokens, a few split in two.
TOY_WORDS = ("a", *COLORS, *SHAPES, "front", "side", "back", "overhead", "view")


@dataclass
class ToyTrainConfig:
    """Architecture and optimisation of the toy model."""

    resolution: int = 32
    """Image side in pixels."""
    steps: int = 3000
    """Optimisation steps."""
    batch_size: int = 64
    """Images per step (rendered on the fly)."""
    lr: float = 3e-4
    """AdamW learning rate."""
    cfg_dropout: float = 0.1
    """Probability of replacing a caption by the empty prompt (classifier-free guidance)."""
    ema_decay: float = 0.999
    """Decay of the exponential moving average of the weights that are saved."""
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    """UNet channels per resolution level."""
    text_hidden: int = 64
    """Width of the text encoder (and the UNet's cross-attention)."""
    seed: int = 0
    """Seed of the weights and of the rendered training data."""


def build_toy_model(config: ToyTrainConfig, tokenizer_dir: Path):
    """Fresh seeded ``(tokenizer, text_encoder, unet, scheduler)``; the tokenizer is written to ``tokenizer_dir``."""
    tokenizer = write_word_tokenizer(tokenizer_dir, TOY_WORDS)
    torch.manual_seed(config.seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=config.text_hidden,
            intermediate_size=2 * config.text_hidden,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    levels = len(config.block_out_channels)
    unet = UNet2DConditionModel(
        sample_size=config.resolution,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=config.block_out_channels,
        # Attention only at the coarser levels: it is what ties shape and colour to the words, and it is cheapest there.
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",),
        cross_attention_dim=config.text_hidden,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    return tokenizer, text_encoder, unet, scheduler


def train_toy_model(out_dir: Path, config: ToyTrainConfig, log_every: int = 50) -> dict:
    """Train and save the model into ``out_dir`` (written to a temp folder, then renamed); returns the stats."""
    out_dir = Path(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        tokenizer, text_encoder, unet, scheduler = build_toy_model(config, staging / "tokenizer")
        params = [*unet.parameters(), *text_encoder.parameters()]
        optimizer = torch.optim.AdamW(params, lr=config.lr)
        ema = EMAModel(params, decay=config.ema_decay)
        data = torch.Generator().manual_seed(config.seed)
        t0, losses = time.perf_counter(), []
        for step in range(config.steps):
            images, captions = render_toy_batch(config.batch_size, config.resolution, data)
            drop = torch.rand(len(captions), generator=data) < config.cfg_dropout
            texts = ["" if d else c for c, d in zip(captions, drop.tolist(), strict=True)]
            ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt")
            x0 = images * 2.0 - 1.0
            noise = torch.randn(x0.shape, generator=data)
            t = torch.randint(0, scheduler.config.num_train_timesteps, (len(texts),), generator=data)
            pred = unet(scheduler.add_noise(x0, noise, t), t, encoder_hidden_states=text_encoder(ids.input_ids)[0])
            loss = F.mse_loss(pred.sample, noise)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            ema.step(params)
            losses.append(loss.item())
            if (step + 1) % log_every == 0 or step + 1 == config.steps:
                recent = losses[-log_every:]
                log.info("toy model: step %d/%d, loss %.4f", step + 1, config.steps, sum(recent) / len(recent))
        seconds = time.perf_counter() - t0
        ema.copy_to(params)  # the averaged weights are the ones that sample well
        text_encoder.save_pretrained(staging / "text_encoder")
        unet.save_pretrained(staging / "unet")
        scheduler.save_pretrained(staging / "scheduler")
        index = {
            "_class_name": "Text3DPixelDiffusion",
            "_diffusers_version": diffusers.__version__,
            "scheduler": ["diffusers", "DDPMScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
        }
        (staging / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
        stats = {
            "steps": config.steps,
            "seconds": round(seconds, 1),
            "final_loss": round(sum(losses[-log_every:]) / len(losses[-log_every:]), 5),
            "machine": f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}",
            "config": asdict(config),
        }
        (staging / "training.json").write_text(json.dumps(stats, indent=2) + "\n")
        # Swap folders so that a crash at any point leaves a complete model (old or new) under out_dir.
        old = staging.with_name(staging.name + ".old")
        if out_dir.exists():
            out_dir.rename(old)
        staging.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
        return stats
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m text3d.toy.train", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    defaults = ToyTrainConfig()
    for name in ("steps", "batch_size", "resolution", "seed"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    parser.add_argument("--lr", type=float, default=defaults.lr)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = ToyTrainConfig(
        resolution=args.resolution, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed
    )
    stats = train_toy_model(args.out_dir, config)
    print(f"trained {stats['steps']} steps in {stats['seconds']} s, final loss {stats['final_loss']}: {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
