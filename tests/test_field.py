"""The coarse field's density priors."""

from dataclasses import replace

import torch
import torch.nn.functional as F

from text3d.field.config import FieldConfig, HashGridConfig
from text3d.field.nerf import HashGridField


def test_density_radius_bounds_the_field_where_learning_cannot_undo_it():
    torch.manual_seed(0)
    config = FieldConfig(encoding=HashGridConfig(n_levels=4, log2_hashmap_size=10, init_scale=1.0, backend="torch"),
                         blob_density=0.0)
    free = HashGridField(config)
    bounded = HashGridField(replace(config, density_radius=0.8))
    bounded.load_state_dict(free.state_dict())
    directions = F.normalize(torch.randn(200, 3, generator=torch.Generator().manual_seed(1)), dim=-1)
    for radius, kept in ((0.5, 1.0), (0.71, 1.0), (0.76, 0.5), (0.85, 0.0), (1.5, 0.0)):  # fades over 0.72 .. 0.8
        x = directions * radius
        torch.testing.assert_close(bounded.density(x), free.density(x) * kept)
    assert (free.density(directions * 0.85) > 0).all()  # the bound, not the field, is what zeroes it
    bounded.density(directions * 0.85).sum().backward()
    assert bounded.encoding.table.grad.abs().sum() == 0  # nothing out there can be learnt back
