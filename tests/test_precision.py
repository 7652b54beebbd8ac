"""The precision plumbing of the GPU path, checked on the CPU: a half-precision frozen model with an upcast VAE, and
mixed-precision training through every stage."""

import pytest
import torch
import torch.nn.functional as F

from text3d.app.jobs import generate
from text3d.app.presets import load_config
from text3d.guide.models import ModelConfig, choose_vae_dtype, load_diffusion_model
from text3d.guide.sds import SDSConfig, make_sds_guide
from text3d.prompt.processor import PromptConfig, PromptProcessor
from text3d.renderer.cameras import spherical_cameras


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def sds_render_gradient(
    model_path, dtype: str, vae_dtype: str = "auto", device: str = "cpu"
) -> tuple[torch.Tensor, object]:
    """The SDS gradient on two 16x16 renders with the tiny SD stack loaded in ``dtype`` (its VAE in ``vae_dtype``)."""
    config = ModelConfig(model=str(model_path), dtype=dtype, vae_dtype=vae_dtype)
    model = load_diffusion_model(config, "latent", device)
    prompts = PromptProcessor(PromptConfig(text="a red cube"), model.tokenizer, model.text_encoder, device, model.dtype)
    guide = make_sds_guide(SDSConfig(kind="latent", resolution=32, guidance_scale=7.5), model, prompts, 10, seed=3)
    one = torch.ones(2)
    cameras = spherical_cameras(torch.tensor([0.0, 90.0]), 10 * one, 1.8 * one, 50 * one, 16, 16)
    rgb = torch.rand(2, 16, 16, 3, generator=torch.Generator().manual_seed(0)).to(device).requires_grad_(True)
    guide.step({"rgb": rgb}, cameras, step=0)["loss_sds"].backward()
    return rgb.grad, model


def test_bf16_model_with_upcast_vae_gives_the_fp32_gradient_within_tolerance(tiny_sd_path):
    grad32, _ = sds_render_gradient(tiny_sd_path, "fp32")
    grad16, model = sds_render_gradient(tiny_sd_path, "bf16")
    # The UNet and text encoder run in bfloat16; the VAE (force_upcast, as SD 2.x) stays float32.
    assert model.unet.dtype == torch.bfloat16 and model.text_encoder.dtype == torch.bfloat16
    assert model.vae.dtype == torch.float32
    assert grad16.dtype == torch.float32
    # bfloat16 keeps 8 bits of mantissa: a few per cent of the gradient's norm, the same direction.
    relative = ((grad16 - grad32).norm() / grad32.norm()).item()
    assert relative < 0.06, relative
    assert F.cosine_similarity(grad16.flatten(), grad32.flatten(), dim=0) > 0.998


def test_a_bf16_vae_gives_the_fp32_gradient_within_tolerance(tiny_sd_path):
    # What 'auto' picks on CUDA for a force_upcast VAE: the gradient through a bf16 encoder stays close to fp32's.
    grad32, _ = sds_render_gradient(tiny_sd_path, "fp32")
    grad_bf16, model = sds_render_gradient(tiny_sd_path, "fp32", vae_dtype="bf16")
    assert model.vae.dtype == torch.bfloat16 and model.unet.dtype == torch.float32
    assert grad_bf16.dtype == torch.float32
    relative = ((grad_bf16 - grad32).norm() / grad32.norm()).item()
    assert relative < 0.06, relative
    assert F.cosine_similarity(grad_bf16.flatten(), grad32.flatten(), dim=0) > 0.998


@pytest.mark.gpu
def test_on_cuda_the_fp16_model_gets_a_bf16_vae_and_the_fp32_gradient_within_tolerance(tiny_sd_path):
    grad32, _ = sds_render_gradient(tiny_sd_path, "fp32", vae_dtype="fp32", device="cuda")
    grad16, model = sds_render_gradient(tiny_sd_path, "auto", device="cuda")
    assert model.unet.dtype == torch.float16 and model.vae.dtype == torch.bfloat16
    assert grad16.dtype == torch.float32 and torch.isfinite(grad16).all()
    relative = ((grad16 - grad32).norm() / grad32.norm()).item()
    assert relative < 0.06, relative
    assert F.cosine_similarity(grad16.flatten(), grad32.flatten(), dim=0) > 0.998


@pytest.mark.parametrize(("choice", "dtype", "force_upcast", "bf16_ok", "expected"), [
    ("auto", torch.float16, True, True, torch.bfloat16),   # SD 2.x on a recent GPU
    ("auto", torch.float16, True, False, torch.float32),   # ... on a GPU without bf16
    ("auto", torch.bfloat16, True, False, torch.float32),  # bf16 asked for on the CPU: the VAE stays fp32
    ("auto", torch.float16, False, True, torch.float16),   # a VAE safe in fp16 follows the model
    ("auto", torch.float32, True, True, torch.float32),
    ("fp32", torch.float16, True, True, torch.float32),    # an explicit choice wins
    ("fp16", torch.float16, True, True, torch.float16),
])
def test_the_vae_dtype_rule(choice, dtype, force_upcast, bf16_ok, expected):
    assert choose_vae_dtype(choice, dtype, force_upcast, bf16_ok) == expected


def test_bf16_mixed_precision_trains_every_stage_on_the_cpu(tiny_sd_path, tmp_path):
    config = load_config("tiny-test", [f"guide.sds.model.model={tiny_sd_path}", "prompt.text=a red cube",
                                       "trainer.mixed_precision=bf16", "export.turntable_frames=0"])
    linear_dtypes = set()

    def record(module, args, output):
        if isinstance(module, torch.nn.Linear) and torch.is_grad_enabled():
            linear_dtypes.add(output.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        result = generate(config, tmp_path / "run")
    finally:
        handle.remove()
    assert torch.bfloat16 in linear_dtypes  # autocast was on for the field's MLP
    assert [result.metrics[s]["steps"] for s in ("coarse", "geometry", "texture")] == [6, 3, 3]
    assert (tmp_path / "run" / "model.glb").stat().st_size > 0
    checkpoint = torch.load(sorted((tmp_path / "run" / "checkpoints").glob("texture-*.pt"))[-1], weights_only=False)
    table = checkpoint["modules"]["field"]["encoding.table"]
    assert table.dtype == torch.float32 and torch.isfinite(table).all()  # parameters stay float32
