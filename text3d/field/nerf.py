"""The coarse-stage radiance field: hash-grid features -> small MLP -> density and albedo."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from text3d.field.config import FieldConfig
from text3d.field.hashgrid import HashGridEncoding


class _TruncExp(torch.autograd.Function):
    """exp with its gradient computed at a clamped input, so a large raw density cannot blow up the step."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(max=15.0))


class HashGridField(nn.Module):
    """Density ``sigma: [N]`` (>= 0) and albedo ``rgb: [N, 3]`` in [0, 1] at world points ``x: [N, 3]``."""

    def __init__(self, config: FieldConfig, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.config = config
        self.encoding = HashGridEncoding(config.encoding, device=device)
        layers: list[nn.Module] = []
        width = self.encoding.output_dim
        for _ in range(config.hidden_layers):
            layers += [nn.Linear(width, config.hidden_dim), nn.ReLU(inplace=True)]
            width = config.hidden_dim
        layers.append(nn.Linear(width, 4))
        self.mlp = nn.Sequential(*layers).to(device)

    @property
    def radius(self) -> float:
        return self.config.radius

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Returns ``(sigma: [N], albedo: [N, 3])`` for world points ``x: [N, 3]``."""
        unit = (x / self.config.radius + 1.0) * 0.5
        h = self.mlp(self.encoding(unit)).float()
        return self._activate_density(h[:, 0], x), torch.sigmoid(h[:, 1:])

    def density(self, x: Tensor) -> Tensor:
        """``sigma: [N]`` at world points ``x: [N, 3]``."""
        return self(x)[0]

    def albedo(self, x: Tensor) -> Tensor:
        """``rgb: [N, 3]`` at world points ``x: [N, 3]``."""
        return self(x)[1]

    def density_and_normal(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(sigma: [N], albedo: [N, 3], normal: [N, 3])``; normals are -grad(sigma), unit length.

        The graph is kept when gradients are enabled, so losses on normals (orientation) train the field.
        """
        keep_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            sigma, rgb = self(x)
            (grad,) = torch.autograd.grad(sigma.sum(), x, create_graph=keep_graph)
        normal = -F.normalize(grad, dim=-1, eps=1e-8)
        if not keep_graph:
            return sigma.detach(), rgb.detach(), normal.detach()
        return sigma, rgb, normal

    def _activate_density(self, raw: Tensor, x: Tensor) -> Tensor:
        c = self.config
        r = x.norm(dim=-1)
        if c.blob_density > 0:
            raw = raw + c.blob_density * (1.0 - r / c.blob_radius)
        sigma = _TruncExp.apply(raw) if c.density_activation == "exp" else F.softplus(raw - 1.0)
        if c.density_radius > 0:
            sigma = sigma * ((c.density_radius - r) / (0.1 * c.density_radius)).clamp(0.0, 1.0)
        return sigma
