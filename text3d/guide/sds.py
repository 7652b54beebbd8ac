"""Score distillation sampling (DreamFusion) with a frozen diffusers model, in latent or pixel space.

For renders ``x`` (latents ``z = E(x)`` for latent models), a timestep ``t`` and noise ``eps``, the frozen UNet predicts
``eps_hat`` with classifier-free guidance; the SDS gradient on ``z`` is ``w(t) * (eps_hat - eps)``. It is applied
through a detached target, ``loss = 0.5 * ||z - (z - grad)||^2 / B``, so the loss is a plain scalar whose gradient
w.r.t. ``z`` is exactly ``grad / B``, and no backward pass ever runs through the UNet.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor

from text3d.guide.config import SDSConfig
from text3d.guide.models import DiffusionModel
from text3d.prompt.processor import PromptProcessor, perpendicular_component
from text3d.renderer.cameras import Cameras


def scale_chroma(grad: Tensor, share: float) -> Tensor:
    """``grad: [B, 3, H, W]`` with its chroma (each pixel's deviation from its channel mean) times ``share``."""
    luminance = grad.mean(dim=1, keepdim=True)
    return luminance + share * (grad - luminance)


class ScaleChromaGradient(torch.autograd.Function):
    """Identity on ``images: [B, 3, H, W]``; backwards, the part of the gradient that differs between the colour
    channels of a pixel (its chroma) is scaled by ``share`` and the part common to them (luminance) kept.

    Why (docs/benchmarks.md, the toy model): under guidance 20 its guided prediction pushes a green object past the
    most saturated green and asks for a magenta halo round it; on a white background only density can draw that
    halo, and it grew into fog and a slab filling the scene. From luminance alone every torus kept its shape, but a
    yellow object, which differs from white mostly in one channel, then came out foggy.
    """

    @staticmethod
    def forward(ctx, images: Tensor, share: float) -> Tensor:
        ctx.share = share
        return images.view_as(images)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return scale_chroma(grad, ctx.share), None


class SDSGuide(ABC):
    """``step(renders, cameras, step)`` -> ``{"loss_sds": scalar}`` for either kind of model.

    ``LatentSDSGuide`` (Stable Diffusion) and ``PixelSDSGuide`` differ only in how renders become the diffused
    variable (``encode``); timestep sampling, guidance and the gradient are shared.
    """

    def __init__(
        self, config: SDSConfig, model: DiffusionModel, prompts: PromptProcessor, max_steps: int, seed: int
    ) -> None:
        self.config = config
        self.model = model
        self.prompts = prompts
        self.max_steps = max(max_steps, 1)
        self.generator = torch.Generator().manual_seed(seed)
        self.loss_weights = {"loss_sds": config.lambda_sds}
        # v-prediction models (SD 2.x 768) predict v; SDS needs the noise, recovered from v and x_t.
        self.v_prediction = model.scheduler.config.get("prediction_type", "epsilon") == "v_prediction"

    @abstractmethod
    def encode(self, images: Tensor) -> Tensor:
        """Renders ``[B, 3, H, W]`` in [0, 1] (float32) -> the diffused variable ``[B, C, h, w]`` (differentiable)."""

    def step(self, renders: dict[str, Tensor], cameras: Cameras, step: int) -> dict[str, Tensor]:
        images = renders["rgb"].permute(0, 3, 1, 2)  # [B, 3, H, W]
        size = (self.config.resolution, self.config.resolution)
        if images.shape[-2:] != size:
            images = F.interpolate(images, size, mode="bilinear", align_corners=False, antialias=False)
        share = self.chroma_share(step)
        if share < 1.0:
            images = ScaleChromaGradient.apply(images, share)
        z = self.encode(images)
        t = self.sample_timesteps(z.shape[0], step)
        # The frozen model sees its own dtype; z and the gradient through the encoder stay in z's (float32 when the
        # VAE is upcast), so a half-precision UNet does not round the gradient that reaches the renders.
        noise = torch.randn(z.shape, generator=self.generator, dtype=torch.float32).to(z.device, self.model.dtype)
        grad = self.sds_gradient(z.detach().to(self.model.dtype), t, noise, cameras)
        target = (z.float() - grad).detach()
        loss = 0.5 * F.mse_loss(z.float(), target, reduction="sum") / z.shape[0]
        return {"loss_sds": loss}

    def chroma_share(self, step: int) -> float:
        """The share of the gradient's chroma that reaches the renders at ``step``."""
        return 0.0 if step < self.config.chroma_gradient_delay else self.config.chroma_gradient

    def max_t_at(self, step: int) -> float:
        """The annealed largest timestep fraction at ``step``."""
        c = self.config
        frac = min(step / self.max_steps, 1.0)
        if c.anneal == "sqrt":
            frac = math.sqrt(frac)
        return c.max_t + (c.max_t_end - c.max_t) * frac

    def sample_timesteps(self, n: int, step: int) -> Tensor:
        """``[n]`` integer timesteps uniform in [min_t, max_t(step)] * T."""
        T = self.model.num_train_timesteps
        lo = int(self.config.min_t * T)
        hi = max(int(self.max_t_at(step) * T), lo + 1)
        return torch.randint(lo, hi, (n,), generator=self.generator)

    def weight(self, t: Tensor) -> Tensor:
        """``w(t): [B]``."""
        table = self.model.alphas_cumprod
        alpha_bar = table[t.to(table.device)]
        if self.config.weighting == "sds":
            return 1.0 - alpha_bar
        if self.config.weighting == "snr":
            return alpha_bar.sqrt() * (1.0 - alpha_bar).sqrt()
        return torch.ones_like(alpha_bar)

    @torch.no_grad()
    def sds_gradient(self, z: Tensor, t: Tensor, noise: Tensor, cameras: Cameras) -> Tensor:
        """``w(t) * (eps_hat_cfg - noise)`` as float32 ``[B, C, h, w]``; non-finite entries become 0."""
        eps_hat = self.predict_noise(z, t, noise, cameras).float()
        grad = self.weight(t).to(z.device).view(-1, 1, 1, 1) * (eps_hat - noise.float())
        grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
        if self.config.grad_clip > 0:
            grad = grad.clamp(-self.config.grad_clip, self.config.grad_clip)
        return grad

    @torch.no_grad()
    def predict_noise(self, z: Tensor, t: Tensor, noise: Tensor, cameras: Cameras) -> Tensor:
        """Classifier-free-guided noise prediction ``[B, C, h, w]`` for ``z`` noised to ``t`` with ``noise``."""
        model = self.model
        t_dev = t.to(z.device)
        noisy = model.scheduler.add_noise(z, noise, t_dev)
        s = self.config.guidance_scale
        if self.prompts.config.perp_neg:
            text, neg_w = self.prompts.perp_neg_embeddings(cameras)  # [B, 4, L, D], [B, 2]
            b = z.shape[0]
            eps = self._unet(noisy.repeat(4, 1, 1, 1), t_dev.repeat(4), text.transpose(0, 1).flatten(0, 1))
            e_pos, e_unc, e_n1, e_n2 = eps.view(4, b, *eps.shape[1:])
            delta = e_pos - e_unc
            neg = sum(
                neg_w[:, i].to(z.device).view(-1, 1, 1, 1) * perpendicular_component(e - e_unc, delta)
                for i, e in enumerate((e_n1, e_n2))
            )
            return e_unc + s * (delta + neg)
        cond, uncond = self.prompts.embeddings(cameras)
        eps = self._unet(torch.cat([noisy, noisy]), torch.cat([t_dev, t_dev]), torch.cat([cond, uncond]))
        e_cond, e_unc = eps.chunk(2)
        return e_unc + s * (e_cond - e_unc)

    def _unet(self, x: Tensor, t: Tensor, text: Tensor) -> Tensor:
        """Noise prediction ``[N, C, h, w]`` for noisy ``x`` at timesteps ``t``."""
        out = self.model.unet(x, t, encoder_hidden_states=text.to(x.dtype)).sample
        # Models that also predict the variance (DeepFloyd IF) output [eps, var] channels: keep eps.
        out = out[:, : x.shape[1]] if self.model.predicts_variance else out
        if self.v_prediction:
            alpha_bar = self.model.alphas_cumprod[t].view(-1, 1, 1, 1).to(out.dtype)
            out = alpha_bar.sqrt() * out + (1.0 - alpha_bar).sqrt() * x
        return out

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


class LatentSDSGuide(SDSGuide):
    """Stable-Diffusion SDS: renders are encoded by the frozen VAE; gradients flow through its encoder."""

    def encode(self, images: Tensor) -> Tensor:
        vae = self.model.vae
        # The VAE may be float32 while the UNet is half (force_upcast): renders reach it unrounded.
        posterior = vae.encode(images.to(vae.dtype) * 2.0 - 1.0).latent_dist
        # A fixed noise draw keeps resume exact (posterior.sample() would use the global RNG).
        eps = torch.randn(posterior.mean.shape, generator=self.generator).to(posterior.mean)
        return (posterior.mean + posterior.std * eps) * vae.config.scaling_factor


class PixelSDSGuide(SDSGuide):
    """Pixel-space SDS (DeepFloyd IF stage I style): the renders themselves, in [-1, 1], are diffused."""

    def encode(self, images: Tensor) -> Tensor:
        return images * 2.0 - 1.0


def make_sds_guide(
    config: SDSConfig, model: DiffusionModel, prompts: PromptProcessor, max_steps: int, seed: int
) -> SDSGuide:
    cls = LatentSDSGuide if config.kind == "latent" else PixelSDSGuide
    return cls(config, model, prompts, max_steps, seed)
