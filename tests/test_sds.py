import json
import threading
import time

import pytest
import torch
import torch.nn.functional as F
import trimesh

from text3d.app.jobs import generate
from text3d.app.presets import load_config
from text3d.cli import main
from text3d.guide.models import ModelConfig, load_diffusion_model
from text3d.guide.sds import SDSConfig, make_sds_guide
from text3d.prompt.processor import PromptConfig, PromptProcessor
from text3d.renderer.cameras import spherical_cameras
from text3d.stage.trainer import Callback


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def front_camera():
    one = torch.ones(1)
    return spherical_cameras(0 * one, 10 * one, 1.8 * one, 50 * one, 16, 16)


def encode_text(model, text):
    ids = model.tokenizer(text, padding="max_length", max_length=model.tokenizer.model_max_length, return_tensors="pt")
    return model.text_encoder(ids.input_ids)[0]


def capture_latents(guide):
    captured = {}
    encode = guide.encode

    def spy(images):
        z = encode(images)
        z.retain_grad()
        captured["z"] = z
        return z

    guide.encode = spy
    return captured


@pytest.mark.parametrize("kind", ["latent", "pixel"])
def test_sds_gradient_is_weighted_cfg_residual(kind, tiny_sd_path, tiny_pixel_path):
    path = tiny_sd_path if kind == "latent" else tiny_pixel_path
    model = load_diffusion_model(ModelConfig(model=str(path), dtype="fp32"), kind, "cpu")
    prompts = PromptProcessor(PromptConfig(text="a red cube"), model.tokenizer, model.text_encoder, "cpu")
    scale = 7.5
    guide = make_sds_guide(SDSConfig(kind=kind, resolution=32, guidance_scale=scale), model, prompts, 10, seed=3)
    captured = capture_latents(guide)
    before = {k: v.clone() for k, v in model.unet.state_dict().items()}

    rgb = torch.rand(1, 16, 16, 3, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    loss = guide.step({"rgb": rgb, "opacity": torch.ones(1, 16, 16, 1)}, front_camera(), step=0)["loss_sds"]
    loss.backward()

    # Independently: the same random draws in the same order, two separate UNet calls, CFG by hand.
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        x = F.interpolate(rgb.permute(0, 3, 1, 2), (32, 32), mode="bilinear", align_corners=False) * 2 - 1
        if kind == "latent":
            post = model.vae.encode(x).latent_dist
            z = (post.mean + post.std * torch.randn(post.mean.shape, generator=g)) * model.vae.config.scaling_factor
        else:
            z = x
        T = model.num_train_timesteps
        t = torch.randint(int(0.02 * T), int(0.98 * T), (1,), generator=g)
        noise = torch.randn(z.shape, generator=g)
        noisy = model.scheduler.add_noise(z, noise, t)
        cond = encode_text(model, "a red cube, front view")
        uncond = encode_text(model, "")
        eps_c = model.unet(noisy, t, encoder_hidden_states=cond).sample[:, : z.shape[1]]
        eps_u = model.unet(noisy, t, encoder_hidden_states=uncond).sample[:, : z.shape[1]]
        eps_hat = eps_u + scale * (eps_c - eps_u)
        w = 1 - model.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
        expected = w * (eps_hat - noise)

    torch.testing.assert_close(captured["z"].detach(), z, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(captured["z"].grad, expected, rtol=1e-4, atol=1e-5)
    assert rgb.grad is not None and rgb.grad.abs().sum() > 0  # the gradient reaches the renders
    # The frozen model: no gradients, no changes.
    assert all(p.grad is None and not p.requires_grad for p in model.unet.parameters())
    assert all(p.grad is None for p in model.text_encoder.parameters())
    if model.vae is not None:
        assert all(p.grad is None for p in model.vae.parameters())
    for k, v in model.unet.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("kind", ["latent", "pixel"])
def test_chroma_gradient_scales_only_what_differs_between_colour_channels(kind, tiny_sd_path, tiny_pixel_path):
    path = tiny_sd_path if kind == "latent" else tiny_pixel_path
    model = load_diffusion_model(ModelConfig(model=str(path), dtype="fp32"), kind, "cpu")
    prompts = PromptProcessor(PromptConfig(text="a red cube"), model.tokenizer, model.text_encoder, "cpu")
    rgb0 = torch.rand(2, 16, 16, 3, generator=torch.Generator().manual_seed(0))
    two = torch.ones(2)
    cameras = spherical_cameras(torch.tensor([0.0, 90.0]), 10 * two, 1.8 * two, 50 * two, 16, 16)
    grads = {}
    # (share, delay, step): the timesteps do not depend on the step (max_t_end = max_t), so only the share differs
    for share, delay, step in ((1.0, 0, 0), (0.5, 0, 0), (0.0, 0, 0), (0.5, 4, 3), (0.5, 4, 4)):
        config = SDSConfig(kind=kind, resolution=32, guidance_scale=7.5, chroma_gradient=share,
                           chroma_gradient_delay=delay)
        guide = make_sds_guide(config, model, prompts, 10, seed=3)  # the same draws for every share
        rgb = rgb0.clone().requires_grad_(True)
        guide.step({"rgb": rgb, "opacity": torch.ones(2, 16, 16, 1)}, cameras, step=step)["loss_sds"].backward()
        grads[share, delay, step] = rgb.grad
    full = grads[1.0, 0, 0]
    luminance = full.mean(dim=-1, keepdim=True)
    half = luminance + 0.5 * (full - luminance)
    assert (full - luminance).abs().max() > 1e-3 * full.abs().max()  # the plain gradient has chroma to remove
    torch.testing.assert_close(grads[0.0, 0, 0], luminance.expand_as(full), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grads[0.5, 0, 0], half, rtol=1e-5, atol=1e-7)
    # within the delay only luminance, from its last step on the configured share
    torch.testing.assert_close(grads[0.5, 4, 3], luminance.expand_as(full), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grads[0.5, 4, 4], half, rtol=1e-5, atol=1e-7)


def test_timestep_annealing_and_weighting(tiny_sd_path):
    model = load_diffusion_model(ModelConfig(model=str(tiny_sd_path), dtype="fp32"), "latent", "cpu")
    prompts = PromptProcessor(PromptConfig(text="a cube"), model.tokenizer, model.text_encoder, "cpu")
    cfg = SDSConfig(kind="latent", max_t=0.98, max_t_end=0.5, anneal="linear", weighting="uniform")
    guide = make_sds_guide(cfg, model, prompts, max_steps=100, seed=0)
    assert guide.max_t_at(0) == pytest.approx(0.98)
    assert guide.max_t_at(50) == pytest.approx(0.74)
    assert guide.max_t_at(100) == pytest.approx(0.5)
    late = guide.sample_timesteps(2000, step=100)
    assert late.min() >= 20 and late.max() < 500
    assert torch.equal(guide.weight(torch.tensor([10, 900])), torch.ones(2))


def test_generate_end_to_end_writes_glb_and_previews(tiny_sd_path, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["generate", "a red cube", "--model", str(tiny_sd_path), "--preset", "tiny-test", "--out", str(out)]
    code = main([*argv, "--quiet"])
    assert code == 0, capsys.readouterr().err
    mesh = trimesh.load(out / "coarse.glb", force="mesh")
    assert len(mesh.faces) > 0
    assert sorted(p.name for p in (out / "previews").iterdir()) == [
        "coarse-0000003.png", "coarse-0000006.png", "geometry-0000003.png", "texture-0000003.png"
    ]
    textured = trimesh.load(out / "model.glb", force="mesh")
    assert len(textured.faces) > 0 and textured.visual.kind == "texture"
    assert "a red cube" in (out / "config.yaml").read_text()


class StopAt(Callback):
    def __init__(self, step, event):
        self.step, self.event = step, event

    def on_step(self, progress):
        if progress.step == self.step:
            self.event.set()


def test_generate_resume_matches_an_uninterrupted_run(tiny_pixel_path, tmp_path):
    config = load_config(
        "tiny-test", [f"guide.sds.model.model={tiny_pixel_path}", "guide.sds.kind=pixel", "prompt.text=a blue ball"]
    )
    generate(config, tmp_path / "full")
    event = threading.Event()
    assert generate(config, tmp_path / "split", callbacks=[StopAt(2, event)], stop_event=event).stopped
    assert not generate(config, tmp_path / "split", resume=True).stopped
    for stage, module, step in (("coarse", "field", 6), ("geometry", "dmtet", 3), ("texture", "field", 3)):
        name = f"{stage}-{step:07d}.pt"
        full = torch.load(tmp_path / "full" / "checkpoints" / name, weights_only=False)["modules"][module]
        split = torch.load(tmp_path / "split" / "checkpoints" / name, weights_only=False)["modules"][module]
        for k, v in full.items():
            torch.testing.assert_close(split[k], v, rtol=0, atol=1e-6, msg=f"{stage}.{k}")


def test_a_stage_can_have_its_own_guidance_scale_and_chroma_settings(tiny_pixel_path, tmp_path, monkeypatch):
    from text3d.app import jobs

    made = []
    real = jobs.make_sds_guide

    def spy(config, model, prompts, max_steps, seed):
        made.append((config.guidance_scale, config.chroma_gradient, config.chroma_gradient_delay, max_steps))
        return real(config, model, prompts, max_steps, seed)

    monkeypatch.setattr(jobs, "make_sds_guide", spy)
    overrides = [f"guide.sds.model.model={tiny_pixel_path}", "guide.sds.kind=pixel", "prompt.text=a blue ball"]
    overrides += ["guide.sds.guidance_scale=7", "texture.guidance_scale=2.5", "geometry.max_steps=2"]
    overrides += ["guide.sds.chroma_gradient=0", "texture.chroma_gradient=1"]
    overrides += ["guide.sds.chroma_gradient_delay=5", "coarse.chroma_gradient_delay=3"]
    generate(load_config("tiny-test", overrides), tmp_path / "run")
    # the guide's settings where a stage has none of its own
    assert made == [(7.0, 0.0, 3, 6), (7.0, 0.0, 5, 2), (2.5, 1.0, 5, 3)]


def test_a_coarse_field_filling_the_scene_starts_over_with_the_retry_guide_settings(tiny_pixel_path, tmp_path,
                                                                                      monkeypatch):
    from text3d.app import jobs

    made = []
    real = jobs.make_sds_guide

    def spy(config, model, prompts, max_steps, seed):
        made.append((config.guidance_scale, config.chroma_gradient, max_steps))
        return real(config, model, prompts, max_steps, seed)

    monkeypatch.setattr(jobs, "make_sds_guide", spy)
    overrides = [f"guide.sds.model.model={tiny_pixel_path}", "guide.sds.kind=pixel", "prompt.text=a blue ball"]
    overrides += ["guide.sds.guidance_scale=7", "coarse.fill_guard.check_step=2", "coarse.fill_guard.retry.chroma_gradient=0"]
    overrides += ["coarse.fill_guard.retry.guidance_scale=3"]
    plain = generate(load_config("tiny-test", overrides), tmp_path / "plain")  # the guard is off (edge_opacity 0)
    assert "restarted" not in plain.metrics["coarse"] and len(made) == 3
    made.clear()
    result = generate(load_config("tiny-test", [*overrides, "coarse.fill_guard.edge_opacity=1e-6"]), tmp_path / "run")
    # coarse, its second start (the retry's settings over the stage's), geometry, texture
    assert made == [(7.0, 1.0, 6), (3.0, 0.0, 6), (7.0, 1.0, 3), (7.0, 1.0, 3)]
    assert result.metrics["coarse"]["restarted"].startswith("the field filled the scene by step 2")
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["coarse"]["restarted"]
    assert "starting the stage over" in (tmp_path / "run" / "log.txt").read_text()


@pytest.mark.parametrize(
    "prompt, message", [("   ", "prompt"), ("\x00\x01", "prompt"), ("word " * 100, "tokens")]
)
def test_bad_prompts_fail_with_one_line(prompt, message, tiny_sd_path, tmp_path, capsys):
    code = main(["generate", prompt, "--model", str(tiny_sd_path), "--preset", "tiny-test", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_missing_model_fails_fast_with_a_clear_message(tmp_path, capsys):
    t0 = time.perf_counter()
    code = main(["generate", "a cube", "--model", "no-such-org/no-such-model", "--out", str(tmp_path / "r")])
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert code == 2 and "no-such-org/no-such-model" in err and len(err.strip().splitlines()) == 1
    assert elapsed < 10
    assert not (tmp_path / "r").exists()


def test_v_prediction_models_are_turned_into_noise_predictions(tiny_sd_path):
    model = load_diffusion_model(ModelConfig(model=str(tiny_sd_path), dtype="fp32"), "latent", "cpu")
    prompts = PromptProcessor(PromptConfig(text="a cube"), model.tokenizer, model.text_encoder, "cpu")
    eps_guide = make_sds_guide(SDSConfig(kind="latent", resolution=32), model, prompts, 10, seed=0)
    model.scheduler.register_to_config(prediction_type="v_prediction")
    v_guide = make_sds_guide(SDSConfig(kind="latent", resolution=32), model, prompts, 10, seed=0)
    assert v_guide.v_prediction and not eps_guide.v_prediction
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([500])
    text = encode_text(model, "a cube")
    raw = eps_guide._unet(x, t, text)  # the UNet's output, read as v
    a = model.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(v_guide._unet(x, t, text), a.sqrt() * raw + (1 - a).sqrt() * x)


def test_perp_neg_guidance_runs_and_differs_from_plain_cfg(tiny_sd_path):
    model = load_diffusion_model(ModelConfig(model=str(tiny_sd_path), dtype="fp32"), "latent", "cpu")
    grads = {}
    for perp in (False, True):
        prompts = PromptProcessor(PromptConfig(text="a dog", perp_neg=perp), model.tokenizer, model.text_encoder, "cpu")
        guide = make_sds_guide(SDSConfig(kind="latent", resolution=32), model, prompts, 10, seed=0)
        one = torch.ones(1)
        side = spherical_cameras(60 * one, 10 * one, 1.8 * one, 50 * one, 16, 16)  # a side view: negatives active
        z = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(2))
        noise = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(3))
        grads[perp] = guide.sds_gradient(z, torch.tensor([400]), noise, side)
    assert torch.isfinite(grads[True]).all()
    assert not torch.allclose(grads[True], grads[False])
