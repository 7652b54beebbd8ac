"""Loading a frozen text-to-image diffusion model (Stable Diffusion, DeepFloyd IF stage I, ...) for score distillation.

Components are loaded one by one with ``from_pretrained`` (a whole ``DiffusionPipeline`` would also load safety
checkers and feature extractors that a guide never uses). Every failure a user can cause (a wrong path or hub id, a
model that is not downloaded while offline, a gated model, no network, a folder that is not a text-to-image model of
the right kind) becomes a one-line :class:`UserError` that names the model and the fix, and is raised before any
slow work: local paths and offline mode are checked before the network is touched, and the hub is probed once,
without retries, before the libraries (which retry a failing connection for ~20 s per file) take over.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from huggingface_hub import (
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    is_offline_mode,
    try_to_load_from_cache,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from torch import Tensor

from text3d.errors import UserError
from text3d.guide.config import ModelConfig

if TYPE_CHECKING:  # diffusers and transformers take seconds to import: only when a model is loaded
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_PARTS = ("tokenizer", "text_encoder", "unet", "scheduler")
# Exceptions from the HTTP stacks (httpx, httpx2, httpcore, requests, urllib3) are matched by name so that this
# module does not depend on which one huggingface_hub happens to use.
_HTTP_MODULES = ("httpx", "httpcore", "requests", "urllib3")
_NETWORK_WORDS = ("Connect", "Timeout", "Network", "Proxy")
# Where the files come from: a local folder, the hub cache (offline by choice, or the hub is unreachable), the hub.
_Origin = Literal["folder", "offline", "unreachable", "hub"]


@dataclass
class DiffusionModel:
    """A frozen text-to-image diffusion model: every module in eval mode, no parameter requires grad."""

    tokenizer: PreTrainedTokenizerBase
    """Prompt tokenizer (a transformers tokenizer; ``model_max_length`` tokens per prompt)."""
    text_encoder: PreTrainedModel
    """Prompt ids ``[B, L]`` -> ``last_hidden_state: [B, L, D]``, the UNet's cross-attention context."""
    unet: UNet2DConditionModel
    """Noise predictor: ``(x_t: [B, C, h, w], t: [B], context: [B, L, D]) -> [B, C or 2C, h, w]``."""
    scheduler: DDPMScheduler
    """Noise schedule of training (``alphas_cumprod``, ``add_noise``); its config is the model's own."""
    vae: AutoencoderKL | None
    """Image ``[B, 3, H, W]`` in [-1, 1] <-> latents ``[B, C, H/f, W/f]``; None for pixel-space models. float32 when
    its config asks for ``force_upcast``, else in ``dtype``."""
    model_id: str
    """The hub id or folder it was loaded from."""
    dtype: torch.dtype
    """Dtype of the text encoder, UNet and VAE weights."""

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def latent(self) -> bool:
        """True when the UNet denoises VAE latents, False when it denoises pixels."""
        return self.vae is not None

    @property
    def vae_scale_factor(self) -> int:
        """Image pixels per latent pixel along each side (8 for Stable Diffusion, 1 for pixel models)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1) if self.vae is not None else 1

    @cached_property
    def alphas_cumprod(self) -> Tensor:
        """``[T]`` float32 on the model's device: signal fraction ``alpha_bar_t`` of the noised sample at step t."""
        return self.scheduler.alphas_cumprod.to(self.device, torch.float32)

    @property
    def num_train_timesteps(self) -> int:
        return self.scheduler.config.num_train_timesteps

    @property
    def predicts_variance(self) -> bool:
        """True when the UNet also outputs a variance (``out_channels == 2 * in_channels``, as DeepFloyd IF)."""
        return self.unet.config.out_channels == 2 * self.unet.config.in_channels


def load_diffusion_model(
    config: ModelConfig, kind: Literal["latent", "pixel"], device: str | torch.device = "cpu"
) -> DiffusionModel:
    """Load ``config.model`` frozen on ``device``: a latent (with ``vae/``) or pixel-space text-to-image model.

    Raises :class:`UserError` (one line naming the model and the fix) for every problem a user can cause.
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from diffusers.models.attention_processor import AttnProcessor2_0
    from transformers import AutoTokenizer, CLIPTextModel, PreTrainedModel, PreTrainedTokenizerBase

    device = torch.device(device)
    model = config.model
    local = _local_folder(model, kind)
    offline = config.local_files_only
    if offline is None:
        offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")
    offline = offline or is_offline_mode()  # HF_HUB_OFFLINE at import: huggingface_hub refuses requests anyway
    origin: _Origin = "folder" if local is not None else "offline" if offline else "hub"
    if origin == "hub" and _cached_when_unreachable(model, kind, config.revision):
        origin = "unreachable"
    source = str(local) if local is not None else model
    hub = {"revision": None if local else config.revision, "local_files_only": origin != "hub"}

    def explained(part: str) -> Any:
        return _explained(model, kind, part, config.revision, origin)

    with explained("model_index.json"):
        index = _model_index(source, local is not None, hub)
    # The index names the classes. AutoTokenizer is only the fallback: offline, it fails on a cache filled by
    # `hf download`, which lacks the "tokenizer/config.json does not exist" marker that it looks for.
    tokenizer_cls = _component_class(index, "tokenizer", AutoTokenizer, PreTrainedTokenizerBase, model, kind)
    encoder_cls = _component_class(index, "text_encoder", CLIPTextModel, PreTrainedModel, model, kind)
    with explained("tokenizer/"):
        tokenizer = tokenizer_cls.from_pretrained(source, subfolder="tokenizer", **hub)
    with explained("scheduler/"):
        scheduler = DDPMScheduler.from_pretrained(source, subfolder="scheduler", **hub)
    # Check the UNet's channels from the configs before loading any weights (gigabytes for real models).
    with explained("unet/"):
        unet_config = UNet2DConditionModel.load_config(source, subfolder="unet", **hub)
    channels, vae_config = 3, {}
    if kind == "latent":
        with explained("vae/"):
            vae_config = AutoencoderKL.load_config(source, subfolder="vae", **hub)
        channels = vae_config["latent_channels"]
    c_in, c_out = unet_config["in_channels"], unet_config["out_channels"]
    if c_in != channels or c_out not in (c_in, 2 * c_in):
        raise UserError(
            f"{model} is not a {kind} text-to-image diffusion model (its UNet maps {c_in} to {c_out} channels; "
            f"a {kind} model needs {channels} in and {channels} or {2 * channels} out)"
        )

    dtype = _DTYPES.get(config.dtype) or (torch.float16 if device.type == "cuda" else torch.float32)
    with explained("text_encoder/"):
        text_encoder = encoder_cls.from_pretrained(source, subfolder="text_encoder", dtype=dtype, **hub)
    with explained("unet/"):
        unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", torch_dtype=dtype, **hub)
    vae = None
    if kind == "latent":
        bf16_ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
        vae_dtype = choose_vae_dtype(config.vae_dtype, dtype, vae_config.get("force_upcast", True), bf16_ok)
        with explained("vae/"):
            vae = AutoencoderKL.from_pretrained(source, subfolder="vae", torch_dtype=vae_dtype, **hub)

    for module in (text_encoder, unet, vae):
        if module is not None:
            module.eval().requires_grad_(False).to(device)
    unet.set_attn_processor(AttnProcessor2_0())  # SDPA (flash / memory-efficient kernels), whatever the config says
    if device.type == "cuda":
        if config.channels_last:
            for module in (unet, vae):
                if module is not None:
                    module.to(memory_format=torch.channels_last)
        if config.compile:
            unet.compile()  # in place: keeps the UNet2DConditionModel type and its .config
    return DiffusionModel(tokenizer, text_encoder, unet, scheduler, vae, model, dtype)


def choose_vae_dtype(choice: str, dtype: torch.dtype, force_upcast: bool, bf16_ok: bool) -> torch.dtype:
    """The VAE's weight dtype for ``guide.sds.model.vae_dtype = choice`` and a model loaded in ``dtype``.

    VAEs flagged force_upcast (diffusers' default; SD 1.x/2.x) overflow in fp16, so 'auto' never gives them a half
    dtype's range: bf16 where the device has it (on an H200 the fp32 encoder's forward and backward took 38 ms at
    512^2, 59 % of the diffusion floor), else fp32.
    """
    if choice != "auto":
        return _DTYPES[choice]
    if not force_upcast or dtype == torch.float32:
        return dtype
    return torch.bfloat16 if bf16_ok else torch.float32


def _local_folder(model: str, kind: str) -> Path | None:
    """The model's folder when ``model`` is a local path (after checking its layout), None for a hub id."""
    path = Path(model).expanduser()
    if not path.exists():
        head = model.split(os.sep)[0]
        # "./x", "/x", "~/x", "a/b/c", or "models/x" where models/ exists: meant as a path, not a hub id (org/name).
        if model.startswith((".", "/", "~")) or model.count("/") > 1 or (os.sep in model and Path(head).is_dir()):
            raise UserError(f"model folder {model} does not exist (give --model, or guide.sds.model.model, an existing "
                            "folder or a hub id)")
        return None
    if not path.is_dir():
        raise UserError(f"model {model} is a file; --model (guide.sds.model.model) needs a folder in diffusers' "
                        "layout or a hub id")
    missing = [f"{p}/" for p in (*_PARTS, "vae") if (p != "vae" or kind == "latent") and not (path / p).is_dir()]
    if missing:
        raise UserError(f"{model} is not a {kind} text-to-image diffusion model (no {', '.join(missing)} in it)")
    return path


def _cached_when_unreachable(model: str, kind: str, revision: str | None) -> bool:
    """Probes the hub with one request, without retries: False when it answers, True when it cannot be reached but
    the model is cached (then load from the cache). Raises UserError for a missing, gated or unreachable model."""
    try:
        get_hf_file_metadata(hf_hub_url(model, "model_index.json", revision=revision))
    except EntryNotFoundError:
        pass  # no index: the text encoder class defaults to CLIP
    except Exception as e:
        if _network_error(e) and isinstance(try_to_load_from_cache(model, "unet/config.json", revision=revision), str):
            log.warning("cannot reach the Hugging Face hub (%s); using the cached copy of %s", _first_line(e), model)
            return True
        reason = _reason(e, model, kind, "model_index.json", revision, "hub")
        if reason is None:
            raise
        raise UserError(reason) from e
    return False


def _model_index(source: str, local: bool, hub: dict[str, Any]) -> dict[str, Any]:
    """The model's ``model_index.json`` (which class each component is), or {} when it has none."""
    try:
        path = Path(source, "model_index.json") if local else hf_hub_download(source, "model_index.json", **hub)
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, EntryNotFoundError):  # EntryNotFoundError: also not cached; the parts will say so
        return {}


def _component_class(index: dict[str, Any], part: str, default: type, base: type, model: str, kind: str) -> type:
    """The transformers class that ``model_index.json`` names for ``part`` (a ``base`` subclass), else ``default``."""
    import transformers  # already imported by the caller

    entry = index.get(part)
    if entry is None:
        return default
    match entry:
        case ["transformers", str(name)] if isinstance(cls := getattr(transformers, name, None), type) and issubclass(
            cls, base
        ):
            return cls
    raise UserError(
        f"{model} is not a {kind} text-to-image diffusion model ({part} {entry} is not a transformers {base.__name__})"
    )


@contextmanager
def _explained(model: str, kind: str, part: str, revision: str | None, origin: _Origin) -> Iterator[None]:
    """Turns the failures of loading ``part`` of ``model`` that a user can fix into one-line UserErrors."""
    try:
        with warnings.catch_warnings():  # diffusers 0.42 passes huggingface_hub an argument it deprecated
            warnings.filterwarnings("ignore", message="The `local_dir_use_symlinks` argument is deprecated")
            yield
    except UserError:
        raise
    except Exception as e:
        reason = _reason(e, model, kind, part, revision, origin)
        if reason is None:
            raise
        raise UserError(reason) from e


def _reason(e: BaseException, model: str, kind: str, part: str, revision: str | None, origin: _Origin) -> str | None:
    """The one-line explanation of a loading failure that the user can fix, else None (a bug: keep the traceback)."""
    chain = _chain(e)
    if origin == "folder":  # only the folder's files are involved: a missing, truncated or malformed file
        return f"cannot load {part} of {model} ({_first_line(e)})" if isinstance(e, (OSError, ValueError)) else None

    def has(*types: type[BaseException]) -> bool:
        return any(isinstance(x, types) for x in chain)

    # The libraries wrap hub errors in OSErrors with long messages; the original is in the cause chain.
    if has(GatedRepoError):
        return (
            f"{model} is a gated model: accept its licence at https://huggingface.co/{model} while logged in, "
            "then run `hf auth login` (`huggingface-cli login` in older versions) on this machine"
        )
    if has(RepositoryNotFoundError):
        return (
            f"no model {model} on the Hugging Face hub (check the spelling; for a private model run "
            "`hf auth login`; for a local folder give its path)"
        )
    if has(RevisionNotFoundError):
        return f"model {model} has no revision {revision!r} on the Hugging Face hub"
    if has(HFValidationError):
        return f"{model} is neither an existing folder nor a valid Hugging Face hub id (org/name)"
    not_cached = has(LocalEntryNotFoundError, OfflineModeIsEnabled) or (
        isinstance(e, OSError) and ("offline" in str(e) or "cached" in str(e))
    )
    if origin == "offline" and not_cached:
        return (
            f"{model} is not downloaded ({part} is not in the local cache) and the hub is off (HF_HUB_OFFLINE or "
            f"local_files_only): run `hf download {model}` on a machine with internet, unset HF_HUB_OFFLINE, "
            "or give --model (guide.sds.model.model) a local folder"
        )
    if origin == "unreachable" and not_cached:
        return (
            f"cannot reach the Hugging Face hub and {model} is only partly downloaded ({part} is not in the "
            f"local cache); check the network or proxy, or run `hf download {model}` on a machine with internet"
        )
    if any(_network_error(x) for x in chain) or has(LocalEntryNotFoundError):
        return (
            f"cannot reach the Hugging Face hub to fetch {model} ({_first_line(chain[-1])}); check the network "
            "or proxy, or use a downloaded copy (HF_HUB_OFFLINE=1) or a local folder"
        )
    if has(EntryNotFoundError):
        return f"{model} is not a {kind} text-to-image diffusion model (it has no {part} on the hub)"
    if has(HfHubHTTPError):  # e.g. 5xx: the hub is up but failing
        return f"the Hugging Face hub failed to serve {model} ({_first_line(e)}); try again later"
    return None


def _chain(e: BaseException) -> list[BaseException]:
    """``e`` and its causes / contexts, outermost first."""
    out: list[BaseException] = []
    while e is not None and e not in out:
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def _network_error(e: BaseException) -> bool:
    if isinstance(e, OfflineModeIsEnabled):  # a ConnectionError subclass, but a choice, not a failure
        return False
    if isinstance(e, (ConnectionError, TimeoutError)):
        return True
    cls = type(e)
    return cls.__module__.startswith(_HTTP_MODULES) and any(w in cls.__name__ for w in _NETWORK_WORDS)


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


__all__ = ["DiffusionModel", "ModelConfig", "load_diffusion_model"]
