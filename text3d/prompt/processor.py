"""Prompt processing for score distillation: clean and check the prompt, encode every text once, pick per view.

View-dependent prompting (DreamFusion) appends ", front view" etc. by camera azimuth/elevation (or, for a model
trained on them, ", view 30" etc. by finer azimuth sectors); Perp-Neg
(Armandpour et al. 2023, weights as in threestudio) interpolates the positive text between views and uses the other
views as negatives whose components perpendicular to the positive direction are removed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from text3d.errors import UserError
from text3d.prompt.config import VIEWS, PromptConfig, clean_prompt, collapse_text
from text3d.renderer.cameras import Cameras


def check_length(text: str, tokenizer: Any, what: str = "prompt") -> None:
    """Refuse ``text`` (rather than silently truncate it) when its tokens do not fit the text encoder.

    The limit is ``tokenizer.model_max_length`` minus the special tokens the tokenizer adds (BOS/EOS for CLIP: 77 - 2).
    ``what`` names the text in the one-line :class:`UserError`, which also shows where a cut would fall.
    """
    limit = tokenizer.model_max_length - tokenizer.num_special_tokens_to_add(pair=False)
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    if len(ids) <= limit:
        return
    words = tokenizer.decode(ids[:limit]).split()
    tail = ("…" if len(words) > 6 else "") + " ".join(words[-6:])
    raise UserError(
        f"{what} is too long: {len(ids)} tokens, the text encoder takes at most {limit} "
        f"(the first {limit} tokens end at '{tail}'); shorten it"
    )


def _decay(coeffs: tuple[float, float, float], r: Tensor) -> Tensor:
    """Perp-Neg's shifted exponential ``a * exp(-b * r) + c`` for ``r: [B]``."""
    a, b, c = coeffs
    return a * torch.exp(-b * r) + c


def _wrap_degrees(angle: Tensor) -> Tensor:
    """``angle`` in degrees wrapped into (-180, 180]."""
    return 180.0 - torch.remainder(180.0 - angle, 360.0)


def perpendicular_component(x: Tensor, y: Tensor) -> Tensor:
    """The component of ``x`` perpendicular to ``y``, per batch item: ``x - (<x, y> / |y|^2) y``.

    ``x, y: [B, ...]`` (flattened over all but the batch dimension); returns ``[B, ...]`` in ``x``'s dtype.
    """
    # Half-precision sums of squares over a whole latent can overflow: reduce in float32.
    x32, y32 = x.float(), y.float()
    dims = tuple(range(1, x.ndim))
    coef = (x32 * y32).sum(dims, keepdim=True) / (y32 * y32).sum(dims, keepdim=True).clamp_min(1e-12)
    return (x32 - coef * y32).to(x.dtype)


class PromptProcessor:
    """Encodes the prompt, its view-dependent variants and the negative prompt once; hands out embeddings per camera.

    Embeddings are ``[L, D]`` per text with ``L = tokenizer.model_max_length`` (padded) and ``D`` the encoder width.
    """

    def __init__(
        self,
        config: PromptConfig,
        tokenizer: Any,
        text_encoder: Any,
        device: torch.device | str,
        dtype: torch.dtype | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.device = torch.device(device)
        prompt = clean_prompt(config.text)
        negative = collapse_text(config.negative)
        check_length(prompt, tokenizer)
        views = [prompt + suffix for suffix in config.suffixes] if config.view_dependent else []
        for view, suffix in zip(views, config.suffixes):  # the text encoder sees the suffixed prompts
            check_length(view, tokenizer, f"prompt with its view suffix {suffix!r}")
        check_length(negative, tokenizer, "negative prompt")
        self._texts = (prompt, *views, negative)
        emb = _encode(self._texts, tokenizer, text_encoder).to(self.device, dtype)  # [T, L, D]
        self._plain = emb[0]
        self._views = emb[1:-1] if views else None  # [V, L, D], V = len(config.suffixes)
        self._uncond = emb[-1]

    @property
    def texts(self) -> tuple[str, ...]:
        """The exact strings encoded: the prompt, its view variants (when view-dependent), the negative prompt."""
        return self._texts

    def embeddings(self, cameras: Cameras) -> tuple[Tensor, Tensor]:
        """``cond: [B, L, D]`` (view-dependent when enabled, else the plain prompt) and ``uncond: [B, L, D]``.

        Both may be expanded views of shared storage: do not write into them.
        """
        b = len(cameras)
        if self._views is None:
            cond = self._plain.expand(b, -1, -1)
        else:
            cond = self._views[self.config.view_index(cameras.azimuth, cameras.elevation).to(self.device)]
        return cond, self._uncond.expand(b, -1, -1)

    def perp_neg_embeddings(self, cameras: Cameras) -> tuple[Tensor, Tensor]:
        """Perp-Neg texts ``[B, 4, L, D]`` (positive, unconditional, negative 1, negative 2) and weights ``[B, 2]``.

        Between front (r=1) and side (r=0), ``r = 1 - |az|/90``: positive ``r*front + (1-r)*side``, negatives
        (front, side) weighted ``(-f_fs(r), -f_sf(1-r))``. Between side (r=1) and back (r=0), ``r = 2 - |az|/90``:
        positive ``r*side + (1-r)*back``, negatives (side, front) weighted ``(-f_sb(r), -f_fsb(r))``. Overhead views:
        the overhead prompt, no negatives (unconditional texts with weight 0). Weights are float32 on ``device``.
        """
        if self._views is None:
            raise ValueError("Perp-Neg needs view_dependent prompts")
        c = self.config
        azimuth, elevation = cameras.azimuth.to(self.device), cameras.elevation.to(self.device)
        az = _wrap_degrees(azimuth.float()).abs()
        front_half = az < 90.0
        r = torch.where(front_half, 1.0 - az / 90.0, 2.0 - az / 90.0)  # [B]
        front, side, back, overhead = self._views
        fh, rr = front_half.view(-1, 1, 1), r.to(front.dtype).view(-1, 1, 1)
        pos = torch.where(fh, rr * front + (1 - rr) * side, rr * side + (1 - rr) * back)
        neg1 = torch.where(fh, front, side)
        neg2 = torch.where(fh, side, front)
        weights = torch.where(
            front_half[:, None],
            torch.stack([-_decay(c.perp_neg_f_fs, r), -_decay(c.perp_neg_f_sf, 1.0 - r)], dim=-1),
            torch.stack([-_decay(c.perp_neg_f_sb, r), -_decay(c.perp_neg_f_fsb, r)], dim=-1),
        )
        top = c.view_index(azimuth, elevation) == VIEWS.index("overhead")
        uncond = self._uncond.expand_as(pos)
        pos = torch.where(top.view(-1, 1, 1), overhead, pos)
        neg1 = torch.where(top.view(-1, 1, 1), uncond, neg1)
        neg2 = torch.where(top.view(-1, 1, 1), uncond, neg2)
        weights = torch.where(top[:, None], 0.0, weights)
        return torch.stack([pos, uncond, neg1, neg2], dim=1), weights


@torch.no_grad()
def _encode(texts: tuple[str, ...], tokenizer: Any, text_encoder: Any) -> Tensor:
    """Last hidden states ``[T, L, D]`` of ``texts`` padded to ``L = model_max_length``, in one encoder call."""
    length = tokenizer.model_max_length
    tokens = tokenizer(list(texts), padding="max_length", max_length=length, truncation=False, return_tensors="pt")
    cfg = text_encoder.config
    # Stable Diffusion's UNet was trained on CLIP states computed without a padding mask (diffusers passes one only
    # when the config asks); T5 encoders (DeepFloyd IF) are used with it.
    use_mask = getattr(cfg, "use_attention_mask", None)
    if use_mask is None:
        use_mask = cfg.model_type != "clip_text_model"
    ids = tokens.input_ids.to(text_encoder.device)
    mask = tokens.attention_mask.to(text_encoder.device) if use_mask else None
    return text_encoder(ids, attention_mask=mask)[0]
