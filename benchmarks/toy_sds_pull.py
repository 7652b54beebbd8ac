"""Where the toy model's score distillation pulls the true toy object, prompt by prompt, in seconds instead of runs.

    python benchmarks/toy_sds_pull.py [--prompts "green torus" ...] [--guidance 1 3 20] [--views 16] [--draws 12]
                                      [--model DIR] [KEY=VALUE ...]

For each prompt, the true object ("a green torus" from the toy world) is rendered from the toy preset's coarse
cameras, and the coarse stage's own SDS guide (its timesteps, weighting, view captions; guidance scales as given)
computes its gradient on those images, averaged over ``--draws`` noise and timestep draws. Printed: the mean pixel
update (minus the gradient, in [-1, 1] pixel units) on the object, on a ring up to 3 pixels outside its silhouette
and on the background beyond, and the object's and the ring's mean update per channel.

An object that SDS would keep as it is gets updates near 0. On white, a negative update darkens: a negative ring
grows the object past its true silhouette, a negative background fogs the scene, a positive ring holds the
silhouette in. The colour column shows where guidance pushes the hue (e.g. green towards lime).
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch

from text3d.app.jobs import generation_context
from text3d.app.presets import TOY_PRESET, load_config
from text3d.guide.sds import scale_chroma
from text3d.toy.bundled import TOY_MODEL_DIR
from text3d.toy.vocabulary import COLORS, SHAPES, caption, normal_caption, parse_caption
from text3d.toy.world import render_toy_batch

RING = 3
"""Pixels outside the silhouette that count as its ring."""


def pull(guide, images: torch.Tensor, cameras, draws: int, generator: torch.Generator) -> torch.Tensor:
    """Mean pixel update ``[N, 3, H, W]`` (minus the SDS gradient, with the guide's share of its chroma) of
    ``images: [N, 3, H, W]`` in [0, 1]."""
    z = images * 2.0 - 1.0
    total = torch.zeros_like(z)
    for _ in range(draws):
        t = guide.sample_timesteps(len(z), step=0)
        noise = torch.randn(z.shape, generator=generator)
        total -= guide.sds_gradient(z, t, noise, cameras)
    return scale_chroma(total / draws, guide.chroma_share(step=0))


def regions(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Masks ``[N, H, W]`` of the object (below white), the ring outside it, and the background beyond."""
    obj = images.min(dim=1).values < 0.9
    near = torch.nn.functional.max_pool2d(obj.float()[:, None], 2 * RING + 1, 1, RING)[:, 0] > 0
    return {"object": obj, "ring": near & ~obj, "background": ~near}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", nargs="+", default=[f"{c} torus" for c in COLORS], metavar="'COLOUR SHAPE'")
    parser.add_argument("--guidance", nargs="+", type=float, default=[1.0, 3.0, 20.0])
    parser.add_argument("--views", type=int, default=16)
    parser.add_argument("--draws", type=int, default=12)
    parser.add_argument("--model", default=str(TOY_MODEL_DIR), help="toy model folder (default: the bundled one)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="toy preset overrides")
    args = parser.parse_args()
    objects = [parse_caption(normal_caption(p) or "") for p in args.prompts]  # (colour, shape) each
    for prompt, obj in zip(args.prompts, objects, strict=True):
        if obj is None:
            parser.error(f"--prompts {prompt!r}: want 'COLOUR SHAPE' ({', '.join(COLORS)}; {', '.join(SHAPES)})")

    print(f"{'prompt':16s} {'guidance':>8s} {'object':>8s} {'ring':>8s} {'backgr.':>8s}  object R, G, B"
          "          ring R, G, B")
    for color, shape in objects:
        prompt = f"{color} {shape}"
        config = load_config(TOY_PRESET, [f"prompt.text={caption(color, shape)}", f"guide.sds.model.model={args.model}",
                                          "trainer.device=cpu", *args.overrides])
        ctx = generation_context(config)
        generator = torch.Generator().manual_seed(config.seed)
        images, _, cameras = render_toy_batch(args.views, config.guide.sds.resolution, generator,
                                              config.coarse.camera, obj=(color, shape))
        masks = regions(images)
        for scale in args.guidance:
            guide = ctx.make_guide(replace(config.coarse, guidance_scale=scale))
            update = pull(guide, images, cameras, args.draws, torch.Generator().manual_seed(config.seed))
            lum = update.mean(dim=1)
            means = {k: lum[m].mean().item() for k, m in masks.items()}
            rgb = [update.permute(0, 2, 3, 1)[masks[k]].mean(dim=0).tolist() for k in ("object", "ring")]
            print(f"{prompt:16s} {scale:8g} {means['object']:+8.3f} {means['ring']:+8.3f} {means['background']:+8.3f}"
                  + "".join(f"  {', '.join(f'{v:+.3f}' for v in c)}" for c in rgb), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
