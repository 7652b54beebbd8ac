"""Sampling images from a pixel-space text-to-image model (DDIM with classifier-free guidance): the check that the
toy model draws what its prompts say before it is asked to guide a 3D asset."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import DDIMScheduler
from torch import Tensor

from text3d.guide.models import DiffusionModel


@torch.no_grad()
def sample_images(
    model: DiffusionModel,
    prompts: Sequence[str],
    steps: int = 50,
    guidance_scale: float = 5.0,
    seed: int = 0,
) -> Tensor:
    """One image per prompt, ``[N, 3, H, W]`` in [0, 1] with ``H = W = unet.config.sample_size``.

    Deterministic DDIM (eta 0) over ``steps`` steps from seeded noise; the unconditional text is the empty prompt,
    as in training's caption dropout.
    """
    if model.latent:
        raise ValueError("sample_images needs a pixel-space model")
    device, size = model.device, model.unet.config.sample_size
    scheduler = DDIMScheduler.from_config(model.scheduler.config)
    scheduler.set_timesteps(steps, device=device)
    ids = model.tokenizer(
        ["", *prompts], padding="max_length", max_length=model.tokenizer.model_max_length, return_tensors="pt"
    ).input_ids.to(device)
    text = model.text_encoder(ids)[0]
    n = len(prompts)
    context = torch.cat([text[:1].expand(n, -1, -1), text[1:]])  # [2N, L, D]: unconditional, then conditional
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, size, size, generator=generator).to(device, model.dtype)
    for t in scheduler.timesteps:
        # The UNet's output (noise or v, as its scheduler config says) is guided the same way either way.
        uncond, cond = model.unet(torch.cat([x, x]), t, encoder_hidden_states=context).sample[:, :3].chunk(2)
        x = scheduler.step(uncond + guidance_scale * (cond - uncond), t, x).prev_sample
    return ((x.float() + 1.0) / 2.0).clamp(0.0, 1.0)
