"""The guide seam: anything that turns renders into named losses."""

from __future__ import annotations

from typing import Protocol

from torch import Tensor

from text3d.renderer.cameras import Cameras


class Guide(Protocol):
    """Scores renders of the current 3D model; the pipeline never cares which guide it has."""

    loss_weights: dict[str, float]
    """Weight of each loss this guide returns, keyed like the returned dict."""

    def step(self, renders: dict[str, Tensor], cameras: Cameras, step: int) -> dict[str, Tensor]:
        """Named scalar losses for renders of ``cameras``.

        ``renders["rgb"]: [B, H, W, 3]`` and ``renders["opacity"]: [B, H, W, 1]`` are always present.
        """
        ...
