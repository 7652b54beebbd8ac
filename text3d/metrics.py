"""Image and geometry metrics."""

from __future__ import annotations

import numpy as np
import torch
import trimesh
from torch import Tensor


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB per image, for ``[B, H, W, C]`` images in [0, 1]; returns ``[B]``."""
    mse = (pred - target).square().flatten(1).mean(dim=1)
    return -10.0 * torch.log10(mse.clamp(min=1e-10))


def chamfer_distance(a, b, samples: int = 50_000, seed: int = 0) -> float:
    """Symmetric Chamfer distance between two trimesh surfaces, as a fraction of ``b``'s bounding-box diagonal.

    Mean over ``samples`` area-uniform surface points of each mesh of the distance to the nearest point sampled on
    the other, averaged over both directions.
    """
    from scipy.spatial import cKDTree  # SciPy's import takes a while: only for this metric

    pa, _ = trimesh.sample.sample_surface(a, samples, seed=seed)
    pb, _ = trimesh.sample.sample_surface(b, samples, seed=seed + 1)
    d_ab = cKDTree(pb).query(pa)[0].mean()
    d_ba = cKDTree(pa).query(pb)[0].mean()
    diagonal = float(np.linalg.norm(b.bounds[1] - b.bounds[0]))
    return 0.5 * (d_ab + d_ba) / diagonal
