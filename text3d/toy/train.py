"""Training the toy pixel-space text-to-image model on the toy world (reproducible, seeded).

    python -m text3d.toy.train OUT_DIR [--steps 3000] [--batch-size 64] [--resolution 32] [--seed 0] [--save-every 500]
    python -m text3d.toy.train OUT_DIR --resume --steps 5000   # continue OUT_DIR's model up to step 5000
    [--azimuth-sectors 12]  # captions name the camera's azimuth sector (0: plain captions only)

The result is a diffusers-layout folder (tokenizer/, text_encoder/, unet/, scheduler/, model_index.json, safetensors)
that `guide.sds.kind=pixel guide.sds.model.model=OUT_DIR` loads through the same ``from_pretrained`` path as any other
model. Training: DDPM v-prediction loss on renders from the toy world, captions that may name the camera's azimuth
sector (", view 30", as ``prompt.azimuth_sectors`` asks at generation), classifier-free-guidance dropout of the caption,
EMA weights saved.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import diffusers
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DConditionModel
from diffusers.training_utils import EMAModel
from transformers import CLIPTextConfig, CLIPTextModel

from text3d.prompt.processor import PromptConfig
from text3d.prompt.vocab import write_word_tokenizer
from text3d.renderer.cameras import CameraConfig, Cameras
from text3d.toy.vocabulary import COLORS, SHAPES
from text3d.toy.world import render_toy_batch

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
    lr: float = 5e-4
    """AdamW learning rate (after a linear warm-up)."""
    warmup_steps: int = 100
    """Steps of linear learning-rate warm-up from zero."""
    cfg_dropout: float = 0.1
    """Probability of replacing a caption by the empty prompt (classifier-free guidance)."""
    azimuth_sectors: int = 12
    """Captions end with the camera's azimuth sector out of this many (``PromptConfig.sector_suffix``, ", view 30"):
    a cube looks alike every quarter turn, so only a finer sector tells the model which way it faces (0: never)."""
    plain_captions: float = 0.25
    """Probability of the plain caption, without a sector, when ``azimuth_sectors`` > 0: plain prompts still work."""
    framing_distance: float = 0.0
    """0: training views at random distances and fields of view (the coarse stage's defaults); > 0: fixed framing
    at this distance (``CameraConfig.fixed_framing``), so an object's size in the image is its size in the world."""
    ema_decay: float = 0.999
    """Decay of the exponential moving average of the weights that are saved."""
    block_out_channels: tuple[int, ...] = (16, 32, 64)
    """UNet channels per resolution level (16 at full resolution: flat-shaded primitives need little there, and it
    halves the step time of (32, 64, 64) on a CPU)."""
    text_hidden: int = 64
    """Width of the text encoder (and the UNet's cross-attention)."""
    max_tokens: int = 16
    """Tokens per prompt (the tokenizer's ``model_max_length``): the longest toy prompt with a view suffix is 14."""
    seed: int = 0
    """Seed of the weights and of the rendered training data."""


def build_toy_model(config: ToyTrainConfig, tokenizer_dir: Path):
    """Fresh seeded ``(tokenizer, text_encoder, unet, scheduler)``; the tokenizer is written to ``tokenizer_dir``."""
    tokenizer = write_word_tokenizer(tokenizer_dir, TOY_WORDS, max_length=config.max_tokens)
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
    # v-prediction: at high noise an epsilon-predictor's image estimate is its error amplified ~30x, and a small,
    # briefly trained one then samples grey noise; predicting v keeps the image estimate well-posed at every t.
    scheduler = DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction"
    )
    return tokenizer, text_encoder, unet, scheduler


MODEL_INDEX = {
    "_class_name": "Text3DPixelDiffusion",
    "scheduler": ["diffusers", "DDPMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
}


def model_card(stats: dict) -> str:
    """The model folder's README: what the model is, how it was trained and what that cost."""
    c = stats["config"]
    runs = stats["runs"]

    def framed(r: dict) -> bool:
        return r.get("framing_distance", 0) > 0

    def captions(r: dict) -> str:
        framing = f" --framing-distance {r['framing_distance']}" if framed(r) else ""
        return f" --azimuth-sectors {r['azimuth_sectors']} --plain-captions {r['plain_captions']}{framing}"

    first = (
        f"python -m text3d.toy.train text3d/toy/weights --steps {runs[0]['steps'][1]} --batch-size {c['batch_size']}"
        f" --resolution {c['resolution']} --seed {c['seed']} --lr {c['lr']}" + captions(runs[0])
    )
    commands = [first] + [
        f"python -m text3d.toy.train text3d/toy/weights --resume --steps {r['steps'][1]}" + captions(r)
        for r in runs[1:]
    ]
    sector = PromptConfig().sector_suffix.replace("{azimuth}", "A")

    def caption_kind(r: dict) -> str:
        if not r["azimuth_sectors"]:
            return "plain"
        return (
            f'plain in {r["plain_captions"]:.0%} of images, else ending "{sector}" with A the centre (degrees) of the'
            f" camera's azimuth sector out of {r['azimuth_sectors']}"
        )

    def views(r: dict) -> str:
        if framed(r):
            return f"distance {r['framing_distance']} with fixed framing (`camera.fixed_framing`)"
        return "random distances and fields of view"

    caption_runs = "\n".join(
        f"  - steps {r['steps'][0]}-{r['steps'][1]}: captions {caption_kind(r)}; views at {views(r)}" for r in runs
    )
    cost = "\n".join(
        f"  - steps {r['steps'][0]}-{r['steps'][1]}: {r['seconds'] / 60:.1f} minutes on {r['machine']}"
        + (f" ({r['note']})" if "note" in r else "")
        for r in runs
    )
    resumed = (
        " A resumed run starts from the saved (EMA) weights with a fresh optimiser (warm-up again) and a data stream"
        " seeded by the seed and its first step."
        if len(runs) > 1
        else ""
    )
    return f"""# text3d-toy: the bundled toy text-to-image model

A pixel-space diffusion model ({c["resolution"]}x{c["resolution"]} RGB) that draws the toy world of `text3d.toy.world`:
six shapes ({", ".join(SHAPES)}) in six colours ({", ".join(COLORS)}), lambertian-lit on white, from the
coarse stage's cameras. Prompts: "a COLOUR SHAPE", optionally with a view sector ("a red cube, view 30").
It is the guide of `configs/toy.yaml`, which
`text3d generate` uses on machines without CUDA, and loads like any diffusers model
(`guide.sds.model.model=text3d-toy`, or this folder's path).

- Components: `UNet2DConditionModel` (channels {list(c["block_out_channels"])}, cross-attention at the coarser levels),
  `CLIPTextModel` (width {c["text_hidden"]}, 2 layers), `CLIPTokenizer` with our own vocabulary
  ({c["max_tokens"]} tokens per prompt), `DDPMScheduler` (1000 steps, cosine schedule, v-prediction).
- Captions and views:
{caption_runs}
- Training: {stats["steps"]} steps of batch {c["batch_size"]} rendered on the fly (seed {c["seed"]}), AdamW lr {c["lr"]}
  after {c["warmup_steps"]} warm-up steps, caption dropout {c["cfg_dropout"]} for classifier-free guidance; the saved
  weights are the EMA (decay {c["ema_decay"]}). Final loss {stats["final_loss"]} (mean of the last steps).{resumed}
- Cost, {stats["seconds"] / 60:.1f} minutes in all:
{cost}

Reproduce (same seeds and data; bit-for-bit equality also needs the same machine and thread count):

```bash
{chr(10).join(commands)}
```
"""


def save_toy_model(out_dir: Path, tokenizer, text_encoder, unet, scheduler, stats: dict) -> None:
    """Write a diffusers-layout model folder to ``out_dir`` atomically: built in a temp folder, then swapped in, so
    that a crash at any point leaves a complete model (old or new) there."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        tokenizer.save_pretrained(staging / "tokenizer")
        text_encoder.save_pretrained(staging / "text_encoder")
        unet.save_pretrained(staging / "unet")
        scheduler.save_pretrained(staging / "scheduler")
        index = {**MODEL_INDEX, "_diffusers_version": diffusers.__version__}
        (staging / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
        (staging / "training.json").write_text(json.dumps(stats, indent=2) + "\n")
        (staging / "README.md").write_text(model_card(stats))
        old = staging.with_name(staging.name + ".old")
        if out_dir.exists():
            out_dir.rename(old)
        staging.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def saved_training(out_dir: Path) -> tuple[ToyTrainConfig, dict]:
    """The config and stats (``training.json``) of a model trained by this script into ``out_dir``."""
    try:
        stats = json.loads((Path(out_dir) / "training.json").read_text())
        saved = stats["config"]
        config = ToyTrainConfig(**{**saved, "block_out_channels": tuple(saved["block_out_channels"])})
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{out_dir} holds no model trained by this script (training.json: {e})") from e
    return config, stats


def _load_for_resume(out_dir: Path, config: ToyTrainConfig, text_encoder, unet) -> dict:
    """Load the weights of the model in ``out_dir`` into freshly built components (so the folder written at the end
    is exactly what a run from scratch writes) after checking it against ``config``; returns its stats."""
    saved, stats = saved_training(out_dir)
    # Only the captions and the views may change between runs: the rest shapes the weights being loaded.
    free = {"steps", "azimuth_sectors", "plain_captions", "framing_distance"}
    changed = [k for k, v in asdict(config).items() if k not in free and v != getattr(saved, k)]
    if changed:
        raise ValueError(f"cannot resume {out_dir} with a different {', '.join(changed)}")
    if config.steps <= stats["steps"]:
        raise ValueError(
            f"cannot resume: {out_dir} is trained for {stats['steps']} steps already, not below {config.steps}"
        )
    text_encoder.load_state_dict(CLIPTextModel.from_pretrained(out_dir / "text_encoder").state_dict())
    unet.load_state_dict(UNet2DConditionModel.from_pretrained(out_dir / "unet").state_dict())
    return stats


def training_texts(
    captions: list[str], cameras: Cameras, config: ToyTrainConfig, generator: torch.Generator
) -> list[str]:
    """The texts the model learns from for one batch of toy ``captions`` seen by ``cameras``: each ends with its
    camera's azimuth sector (as the prompt processor words it) unless drawn plain, and is dropped to "" with the
    classifier-free-guidance probability."""
    drop = torch.rand(len(captions), generator=generator) < config.cfg_dropout
    texts = captions
    if config.azimuth_sectors:
        views = PromptConfig(azimuth_sectors=config.azimuth_sectors)
        names = views.suffixes
        suffixes = [names[i] for i in views.view_index(cameras.azimuth, cameras.elevation).tolist()]
        plain = torch.rand(len(captions), generator=generator) < config.plain_captions
        texts = [c if p else c + v for c, v, p in zip(captions, suffixes, plain.tolist(), strict=True)]
    return ["" if d else t for t, d in zip(texts, drop.tolist(), strict=True)]


def train_toy_model(
    out_dir: Path, config: ToyTrainConfig, log_every: int = 50, save_every: int = 0, resume: bool = False
) -> dict:
    """Train and save the EMA weights into ``out_dir`` (also every ``save_every`` steps if > 0); returns the stats.

    ``resume`` continues the model saved in ``out_dir`` (same config but ``steps``) up to ``config.steps``: the saved
    EMA weights become both the trained and the averaged weights, AdamW starts afresh with its warm-up, and the data
    stream is seeded by ``(seed, first step)`` so that it does not replay the batches already seen.
    """
    if config.azimuth_sectors < 0 or not 0.0 <= config.plain_captions <= 1.0:
        raise ValueError("azimuth_sectors must be >= 0 and plain_captions in [0, 1]")
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer, text_encoder, unet, scheduler = build_toy_model(config, Path(scratch) / "tokenizer")
    start, runs, seconds_before = 0, [], 0.0
    if resume:
        previous = _load_for_resume(out_dir, config, text_encoder, unet)
        start, runs, seconds_before = previous["steps"], previous["runs"], previous["seconds"]
    params = [*unet.parameters(), *text_encoder.parameters()]
    # Adam's second moments of tiny gradients become denormal floats, which slow a CPU down several times.
    torch.set_flush_denormal(True)
    optimizer = torch.optim.AdamW(params, lr=config.lr)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: min(1.0, (k + 1) / max(1, config.warmup_steps)))
    ema = EMAModel(params, decay=config.ema_decay)
    ema.optimization_step = start  # a resumed average keeps its full decay instead of warming up again
    data = torch.Generator().manual_seed(config.seed if start == 0 else config.seed * 1_000_003 + start)
    machine = f"{torch.get_num_threads()} CPU threads ({platform.processor() or platform.machine()}), "
    machine += f"torch {torch.__version__}"
    run_settings = {"azimuth_sectors": config.azimuth_sectors, "plain_captions": config.plain_captions,
                    "framing_distance": config.framing_distance}
    d = config.framing_distance
    camera = CameraConfig(fixed_framing=True, distance_range=(d, d)) if d > 0 else None
    t0, losses = time.perf_counter(), []

    def recent_loss() -> float:
        recent = losses[-log_every:]
        return round(sum(recent) / len(recent), 5)

    def stats(step: int) -> dict:
        seconds = round(time.perf_counter() - t0, 1)
        return {
            "steps": step,
            "seconds": round(seconds_before + seconds, 1),
            "final_loss": recent_loss(),
            "config": {**asdict(config), "steps": step},
            "runs": [*runs, {"steps": [start, step], "seconds": seconds, "machine": machine, **run_settings}],
        }

    def save(step: int) -> None:
        ema.store(params)
        ema.copy_to(params)  # the averaged weights are the ones that sample well
        save_toy_model(out_dir, tokenizer, text_encoder, unet, scheduler, stats(step))
        ema.restore(params)

    for step in range(start + 1, config.steps + 1):
        images, captions, cameras = render_toy_batch(config.batch_size, config.resolution, data, camera)
        texts = training_texts(captions, cameras, config, data)
        ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt")
        x0 = images * 2.0 - 1.0
        noise = torch.randn(x0.shape, generator=data)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(texts),), generator=data)
        pred = unet(scheduler.add_noise(x0, noise, t), t, encoder_hidden_states=text_encoder(ids.input_ids)[0])
        loss = F.mse_loss(pred.sample, scheduler.get_velocity(x0, noise, t))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        warmup.step()
        ema.step(params)
        losses.append(loss.item())
        if step % log_every == 0 or step == config.steps:
            log.info("toy model: step %d/%d, loss %.4f", step, config.steps, recent_loss())
        if save_every > 0 and step % save_every == 0 and step < config.steps:
            save(step)
    save(config.steps)
    return stats(config.steps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m text3d.toy.train", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    defaults = ToyTrainConfig()
    for name in ("steps", "batch_size", "resolution", "seed"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument(
        "--azimuth-sectors",
        type=int,
        help=f"view sectors named in captions (default: {defaults.azimuth_sectors}, "
        "or the saved model's when resuming; 0: plain captions)",
    )
    parser.add_argument(
        "--plain-captions",
        type=float,
        help=f"share of plain captions with sectors (default: {defaults.plain_captions}, or the saved model's)",
    )
    parser.add_argument(
        "--framing-distance",
        type=float,
        help="> 0: training views with fixed framing at this distance (default: 0, random distance and field of view, "
        "or the saved model's)",
    )
    parser.add_argument("--save-every", type=int, default=500, help="also save the EMA weights every N steps (0: off)")
    parser.add_argument(
        "--resume", action="store_true", help="continue the model in OUT_DIR (its saved settings) up to --steps"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.resume:
            config = replace(saved_training(args.out_dir)[0], steps=args.steps)
        else:
            config = ToyTrainConfig(
                resolution=args.resolution, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed
            )
        given = {"azimuth_sectors": args.azimuth_sectors, "plain_captions": args.plain_captions,
                 "framing_distance": args.framing_distance}
        config = replace(config, **{k: v for k, v in given.items() if v is not None})
        stats = train_toy_model(args.out_dir, config, save_every=args.save_every, resume=args.resume)
    except ValueError as e:
        parser.error(str(e))
    print(f"trained {stats['steps']} steps in {stats['seconds']} s, final loss {stats['final_loss']}: {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
