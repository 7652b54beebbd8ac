"""Prompt processing for score distillation: clean and check the prompt, encode every text once, pick per view.

View-dependent prompting (DreamFusion) appends ", front view" etc. by camera azimuth/elevation (or, for a model
trained on them, ", view 30" etc. by finer azimuth sectors); Perp-Neg
(Armandpour et al. 2023, weights as in threestudio) interpolates the positive text between views and uses the other
views as negatives whose components perpendicular to the positive direction are removed.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any

import torch
from torch import Tensor

from text3d.config import Range
from text3d.errors import UserError
from text3d.renderer.cameras import Cameras

VIEWS = ("front", "side", "back", "overhead")
"""View names in the order of :meth:`PromptConfig.view_index` without azimuth sectors (0 front, 1 side, 2 back,
3 overhead)."""


@dataclass
class PromptConfig:
    """The text prompt and how it is turned into text embeddings (defaults: DreamFusion / threestudio)."""

    text: str = ""
    """The prompt."""
    negative: str = ""
    """Negative prompt, used as the unconditional text of classifier-free guidance ("" = plain unconditional)."""
    view_dependent: bool = True
    """Append a view suffix (front/side/back/overhead) chosen by each camera's azimuth and elevation."""
    front_threshold: Annotated[float, Range(0, 180)] = 45.0
    """Cameras with |azimuth| <= this (degrees) get the front suffix."""
    back_threshold: Annotated[float, Range(0, 180)] = 45.0
    """Cameras with |azimuth| >= 180 - this (degrees) get the back suffix; those in between get the side suffix."""
    overhead_threshold: Annotated[float, Range(-90, 90)] = 60.0
    """Cameras with elevation >= this (degrees) get the overhead suffix, whatever their azimuth."""
    front_suffix: str = ", front view"
    """Appended to the prompt for front views."""
    side_suffix: str = ", side view"
    """Appended to the prompt for side views."""
    back_suffix: str = ", back view"
    """Appended to the prompt for back views."""
    overhead_suffix: str = ", overhead view"
    """Appended to the prompt for overhead views."""
    azimuth_sectors: Annotated[int, Range(0, 360)] = 0
    """When > 0, views below the overhead threshold are named by this many equal azimuth sectors (the first centred
    on the front) with ``sector_suffix`` instead of front/side/back: finer than a quarter turn, they can tell a
    model which way a cube faces."""
    sector_suffix: str = ", view {azimuth}"
    """Appended for an azimuth sector; ``{azimuth}`` becomes the sector's centre in whole degrees in [0, 360)."""
    perp_neg: bool = False
    """Perp-Neg guidance: interpolated view prompts, other views as perpendicular negatives (needs view_dependent)."""
    perp_neg_f_sb: Annotated[tuple[float, float, float], Range(-100.0, 100.0)] = (1.0, 0.5, -0.606)
    """Perp-Neg (a, b, c) of a*exp(-b*r)+c: weight of the side negative between side (r=1) and back (r=0)."""
    perp_neg_f_fsb: Annotated[tuple[float, float, float], Range(-100.0, 100.0)] = (1.0, 0.5, 0.967)
    """Perp-Neg (a, b, c): weight of the front negative between side (r=1) and back (r=0)."""
    perp_neg_f_fs: Annotated[tuple[float, float, float], Range(-100.0, 100.0)] = (4.0, 0.5, -2.426)
    """Perp-Neg (a, b, c): weight of the front negative between front (r=1) and side (r=0)."""
    perp_neg_f_sf: Annotated[tuple[float, float, float], Range(-100.0, 100.0)] = (4.0, 0.5, -2.426)
    """Perp-Neg (a, b, c): weight of the side negative between front and side, evaluated at 1 - r."""

    def __post_init__(self) -> None:
        # Whichever front end a prompt comes from, a run sees (and saves) it cleaned: control characters and runs
        # of whitespace become one space.
        self.text = _collapse(self.text)
        self.negative = _collapse(self.negative)

    def validate(self) -> None:
        if self.front_threshold + self.back_threshold > 180:
            raise ValueError("front_threshold + back_threshold must be <= 180 (the front and back ranges overlap)")
        if self.perp_neg and not self.view_dependent:
            raise ValueError("perp_neg needs view_dependent=true")
        if self.perp_neg and self.azimuth_sectors:
            raise ValueError("perp_neg needs the front/side/back views (azimuth_sectors=0)")
        if self.azimuth_sectors and "{azimuth}" not in self.sector_suffix:
            raise ValueError("sector_suffix must contain {azimuth} (the sector's centre azimuth)")

    @property
    def suffixes(self) -> tuple[str, ...]:
        """The view suffixes in :meth:`view_index` order: front, side, back (:data:`VIEWS`) or one per azimuth
        sector, then overhead."""
        if self.azimuth_sectors:
            width = 360.0 / self.azimuth_sectors
            around = (
                self.sector_suffix.replace("{azimuth}", str(round(k * width))) for k in range(self.azimuth_sectors)
            )
            return (*around, self.overhead_suffix)
        return self.front_suffix, self.side_suffix, self.back_suffix, self.overhead_suffix

    def view_index(self, azimuth: Tensor, elevation: Tensor) -> Tensor:
        """``[B]`` int64 index into :attr:`suffixes` of each camera; overhead (the last) wins over azimuth.

        ``azimuth, elevation: [B]`` in degrees; azimuth in any range (0 = front). Without sectors: 0 front, 1 side,
        2 back, 3 overhead.
        """
        overhead = self.azimuth_sectors or VIEWS.index("overhead")  # the last suffix, without building them all
        if self.azimuth_sectors:
            width = 360.0 / self.azimuth_sectors
            index = torch.floor(torch.remainder(azimuth + 0.5 * width, 360.0) / width).long() % self.azimuth_sectors
        else:
            az = _wrap_degrees(azimuth).abs()
            index = torch.ones_like(az, dtype=torch.long)
            index = torch.where(az >= 180.0 - self.back_threshold, 2, index)
            index = torch.where(az <= self.front_threshold, 0, index)  # after back: front wins where both touch at 90°
        return torch.where(elevation >= self.overhead_threshold, overhead, index)


def _collapse(text: str) -> str:
    # Control/format characters (category C*) are invisible in a log but still tokenised: make them spaces.
    spaced = "".join(" " if unicodedata.category(ch).startswith("C") else ch for ch in text)
    return " ".join(spaced.split())


def shorten(text: str, limit: int = 80) -> str:
    """``text`` cut to its first ``limit`` characters and "…", for messages that echo user text."""
    return text if len(text) <= limit else text[:limit] + "…"


def clean_prompt(text: str) -> str:
    """``text`` stripped, with control characters and runs of whitespace replaced by one space.

    Raises :class:`UserError` when nothing is left.
    """
    if not text:
        raise UserError("prompt is empty")
    cleaned = _collapse(text)
    if not cleaned:
        raise UserError("prompt has only whitespace or control characters")
    return cleaned


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
        negative = _collapse(config.negative)
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
