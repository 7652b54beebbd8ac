"""The settings of prompts and view suffixes (a plain dataclass; no torch), and the cleaning every prompt gets."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from text3d.config import Range
from text3d.errors import UserError

if TYPE_CHECKING:
    from torch import Tensor


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
        self.text = collapse_text(self.text)
        self.negative = collapse_text(self.negative)

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
        # Tensor methods only: this module is read before torch is imported (config checks stay fast).
        overhead = self.azimuth_sectors or VIEWS.index("overhead")  # the last suffix, without building them all
        if self.azimuth_sectors:
            width = 360.0 / self.azimuth_sectors
            index = ((azimuth + 0.5 * width).remainder(360.0) / width).floor().long() % self.azimuth_sectors
        else:
            az = (180.0 - (180.0 - azimuth).remainder(360.0)).abs()  # |azimuth| wrapped into (-180, 180]
            index = (az * 0).long() + 1
            index = index.masked_fill(az >= 180.0 - self.back_threshold, 2)
            index = index.masked_fill(az <= self.front_threshold, 0)  # after back: front wins where both touch at 90°
        return index.masked_fill(elevation >= self.overhead_threshold, overhead)


def collapse_text(text: str) -> str:
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
    cleaned = collapse_text(text)
    if not cleaned:
        raise UserError("prompt has only whitespace or control characters")
    return cleaned
