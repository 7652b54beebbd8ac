"""The settings of the guides: the diffusion model to load, score distillation, reconstruction (plain dataclasses;
no torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from text3d.config import Range


@dataclass
class ModelConfig:
    """Which text-to-image diffusion model a guide loads, and how."""

    model: str = "stabilityai/stable-diffusion-2-1-base"
    """Hugging Face hub id (org/name), local folder in diffusers' layout (unet/, text_encoder/, ...), or text3d-toy
    (the bundled toy model)."""
    revision: str | None = None
    """Hub branch, tag or commit to load (None: main); ignored for local folders."""
    local_files_only: bool | None = None
    """Never touch the network, use the local cache only (None: follow the HF_HUB_OFFLINE environment variable)."""
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    """Weight dtype of the frozen model ('auto': fp16 on CUDA, fp32 on CPU)."""
    vae_dtype: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    """Weight dtype of the VAE ('auto': as the model, except a VAE flagged force_upcast (SD 1.x/2.x overflow in
    fp16): bf16 (fp32's range) on CUDA devices that have it, else fp32)."""
    channels_last: bool = True
    """Store UNet and VAE weights channels-last (faster convolutions on CUDA; ignored elsewhere)."""
    compile: bool = False
    """torch.compile the UNet (CUDA only; slow first step)."""


@dataclass
class SDSConfig:
    """Score distillation with a text-to-image diffusion model."""

    kind: Literal["latent", "pixel"] = "latent"
    """'latent': Stable-Diffusion-style model with a VAE; 'pixel': pixel-space model (DeepFloyd IF stage I, toy)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Which diffusion model to load, and how."""
    resolution: Annotated[int, Range(8, 1024)] = 512
    """Renders are resized to this before encoding (latent: VAE input, 512 for SD; pixel: 64 for IF)."""
    guidance_scale: Annotated[float, Range(0.0)] = 100.0
    """Classifier-free guidance scale (DreamFusion uses 100)."""
    weighting: Literal["sds", "uniform", "snr"] = "sds"
    """w(t): 'sds' = 1 - alpha_bar(t) (DreamFusion), 'uniform' = 1, 'snr' = sqrt(alpha_bar) * sqrt(1 - alpha_bar)."""
    min_t: Annotated[float, Range(0.0, 1.0)] = 0.02
    """Smallest timestep, as a fraction of the training timesteps."""
    max_t: Annotated[float, Range(0.0, 1.0)] = 0.98
    """Largest timestep at the start of training."""
    max_t_end: Annotated[float, Range(0.0, 1.0)] = 0.98
    """Largest timestep at the end of training (annealed from max_t; e.g. 0.5)."""
    anneal: Literal["linear", "sqrt"] = "linear"
    """Shape of the max-timestep schedule from max_t to max_t_end over the stage's steps."""
    grad_clip: Annotated[float, Range(0.0)] = 0.0
    """Clamp each element of the SDS gradient to [-grad_clip, grad_clip] (0 disables)."""
    chroma_gradient: Annotated[float, Range(0.0, 1.0)] = 1.0
    """Share of the gradient's chroma (at each pixel of the renders, its deviation from the mean over the colour
    channels) that reaches the renders: below 1, the hue errors a model makes under high guidance (pushes past the
    most saturated colour, a complementary halo round the object) cannot grow geometry; 0 keeps only luminance."""
    chroma_gradient_delay: Annotated[int, Range(0, 1_000_000)] = 0
    """Steps at the start of each stage during which the gradient keeps no chroma (share 0), so the shape forms from
    luminance before hue errors can move it; chroma_gradient applies from then on."""
    lambda_sds: Annotated[float, Range(0.0)] = 1.0
    """Weight of the SDS loss."""

    def validate(self) -> None:
        if not self.min_t < self.max_t or not self.min_t < self.max_t_end:
            raise ValueError("min_t must be below max_t and max_t_end")


@dataclass
class ReconstructionGuideConfig:
    """Photometric + mask losses against a dataset's training views."""

    lambda_rgb: Annotated[float, Range(0.0)] = 1.0
    """Weight of the colour loss (renders vs. references composited on the render background)."""
    lambda_mask: Annotated[float, Range(0.0)] = 0.1
    """Weight of the mask loss (rendered opacity vs. reference alpha)."""
    loss: Literal["mse", "huber"] = "mse"
    """Colour loss: mean squared error or Huber (smooth L1 with delta 0.1)."""
