"""Loading frozen diffusion models: tiny random models through the real from_pretrained path, and every error case."""

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import AutoTokenizer, CLIPTextModel, CLIPTokenizer

from text3d.errors import UserError
from text3d.guide.models import DiffusionModel, ModelConfig, load_diffusion_model
from text3d.testing.tiny_models import make_tiny_pixel

_COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def offline(monkeypatch, tmp_path) -> Path:
    """HF_HUB_OFFLINE=1 and an empty hub cache (returned), whatever the machine has cached."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def _hub_at(monkeypatch, port: int) -> None:
    """Send every hub request to 127.0.0.1:port."""
    url = f"http://127.0.0.1:{port}/{{repo_id}}/resolve/{{revision}}/{{filename}}"
    monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE", url)


@pytest.fixture
def online(monkeypatch, tmp_path) -> Path:
    """Online mode with an empty hub cache (returned) and a hub address that refuses connections."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _hub_at(monkeypatch, port)
    return tmp_path / "hub"


@pytest.fixture
def fake_hub(online, monkeypatch) -> Iterator[None]:
    """A local hub that answers like the real one for a missing (``missing/*``) or gated (``gated/*``) model."""

    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            code, error = {"missing": (401, "RepoNotFound"), "gated": (403, "GatedRepo")}[self.path.split("/")[1]]
            self.send_response(code)
            self.send_header("X-Error-Code", error)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    _hub_at(monkeypatch, server.server_port)
    yield
    server.shutdown()
    server.server_close()


def _cache(hub: Path, repo: str, folder: Path) -> None:
    """Put ``folder`` into the hub cache ``hub`` as the main revision of ``repo`` (as `hf download` would)."""
    root = hub / f"models--{repo.replace('/', '--')}"
    shutil.copytree(folder, root / "snapshots" / _COMMIT)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(_COMMIT)


def _check_frozen(m: DiffusionModel) -> None:
    modules = [m.text_encoder, m.unet] + ([m.vae] if m.vae is not None else [])
    assert not any(p.requires_grad for module in modules for p in module.parameters())
    assert not any(sub.training for module in modules for sub in module.modules())


@pytest.mark.parametrize("kind", ["latent", "pixel"])
def test_load_tiny_model(kind, tiny_sd_path, tiny_pixel_path, offline):
    path = tiny_sd_path if kind == "latent" else tiny_pixel_path
    m = load_diffusion_model(ModelConfig(model=str(path)), kind)
    assert isinstance(m.tokenizer, CLIPTokenizer) and isinstance(m.text_encoder, CLIPTextModel)
    assert isinstance(m.unet, UNet2DConditionModel) and isinstance(m.scheduler, DDPMScheduler)
    assert m.model_id == str(path) and m.dtype == torch.float32 and m.num_train_timesteps == 1000
    _check_frozen(m)
    a = m.alphas_cumprod
    assert a.shape == (1000,) and a.dtype == torch.float32 and bool((a[1:] < a[:-1]).all())

    ids = m.tokenizer(["a red cube"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    context = m.text_encoder(ids).last_hidden_state
    assert context.shape == (1, 77, 32)
    if kind == "latent":
        assert isinstance(m.vae, AutoencoderKL) and m.latent and m.vae_scale_factor == 2 and not m.predicts_variance
        image = torch.rand(1, 3, 32, 32) * 2 - 1
        x = m.vae.encode(image).latent_dist.mean  # [1, 4, 16, 16]
        assert x.shape == (1, 4, 16, 16) and m.vae.decode(x).sample.shape == image.shape
    else:
        assert m.vae is None and not m.latent and m.vae_scale_factor == 1 and m.predicts_variance
        x = torch.randn(1, 3, 32, 32)
    out = m.unet(x, torch.tensor([500]), encoder_hidden_states=context).sample
    assert out.shape == (1, x.shape[1] * (2 if m.predicts_variance else 1), *x.shape[2:])
    assert torch.isfinite(out).all()


def test_tokenizer_round_trip(tiny_sd_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_sd_path, subfolder="tokenizer")
    ids = tokenizer("a red cube").input_ids
    assert tokenizer.convert_ids_to_tokens(ids) == ["<|startoftext|>", "a</w>", "red</w>", "cube</w>", "<|endoftext|>"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a red cube"
    assert tokenizer.model_max_length == 77


def test_tiny_models_are_reproducible(tmp_path, tiny_pixel_path):
    again = make_tiny_pixel(tmp_path / "again")
    for f in tiny_pixel_path.rglob("*.safetensors"):
        assert f.read_bytes() == (again / f.relative_to(tiny_pixel_path)).read_bytes()


def test_cached_hub_model_loads_offline_and_when_hub_unreachable(tiny_sd_path, online):
    _cache(online, "someone/tiny-sd", tiny_sd_path)
    m = load_diffusion_model(ModelConfig(model="someone/tiny-sd"), "latent")  # the probe is refused: use the cache
    assert m.latent and m.model_id == "someone/tiny-sd"
    m = load_diffusion_model(ModelConfig(model="someone/tiny-sd", local_files_only=True), "latent")
    assert m.vae_scale_factor == 2


def _broken_folder(path: Path) -> Path:
    for part in ("tokenizer", "text_encoder", "scheduler", "vae"):
        (path / part).mkdir(parents=True)
    return path


@pytest.mark.parametrize(
    ("model", "kind", "match"),
    [
        ("{tmp}/nope", "latent", "model folder .*/nope does not exist"),
        ("./no/such/model", "latent", r"model folder \./no/such/model does not exist"),
        ("{broken}", "latent", r"broken is not a latent text-to-image diffusion model \(no unet/ in it\)"),
        ("{sd}", "pixel", r"tiny-sd is not a pixel text-to-image diffusion model \(its UNet maps 4 to 4 channels"),
        ("{pixel}", "latent", r"tiny-pixel is not a latent text-to-image diffusion model \(no vae/ in it\)"),
        ("text3d-tests/not-downloaded", "latent", r"text3d-tests/not-downloaded is not downloaded .*hf download"),
    ],
)
def test_load_errors(model, kind, match, tmp_path, tiny_sd_path, tiny_pixel_path, offline):
    model = model.format(
        tmp=tmp_path, broken=_broken_folder(tmp_path / "broken"), sd=tiny_sd_path, pixel=tiny_pixel_path
    )
    start = time.perf_counter()
    with pytest.raises(UserError, match=match) as info:
        load_diffusion_model(ModelConfig(model=model), kind)
    assert time.perf_counter() - start < 5
    assert "\n" not in str(info.value)


def test_unreachable_hub_fails_fast(online):
    start = time.perf_counter()  # the libraries alone would retry each file for ~20 s
    with pytest.raises(UserError, match="cannot reach the Hugging Face hub to fetch org/model .*refused") as info:
        load_diffusion_model(ModelConfig(model="org/model"), "latent")
    assert time.perf_counter() - start < 5
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("model", "match"),
    [
        ("missing/model", "no model missing/model on the Hugging Face hub .*spelling"),
        ("gated/model", "gated/model is a gated model: accept its licence .*hf auth login"),
    ],
)
def test_hub_errors(model, match, fake_hub):
    start = time.perf_counter()
    with pytest.raises(UserError, match=match) as info:
        load_diffusion_model(ModelConfig(model=model), "latent")
    assert time.perf_counter() - start < 5
    assert "\n" not in str(info.value)
