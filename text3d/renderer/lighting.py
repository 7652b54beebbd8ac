"""Light directions for shaded training renders (lambertian, textureless), shared by the volume and mesh stages."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from text3d.renderer.cameras import Cameras


def random_light_dirs(cameras: Cameras, generator: torch.Generator, spread: float = 0.5) -> Tensor:
    """``[B, 3]`` unit light directions near each camera's direction, so the visible side is lit."""
    to_camera = F.normalize(cameras.position, dim=-1)
    noise = torch.randn(to_camera.shape, generator=generator).to(to_camera.device) * spread
    return F.normalize(to_camera + noise, dim=-1)
