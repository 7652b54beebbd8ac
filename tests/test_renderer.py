import math

import pytest
import torch
import torch.nn.functional as F

from text3d.renderer.cameras import CameraConfig, Cameras, CameraSampler, look_at, spherical_cameras
from text3d.renderer.occupancy import OccupancyConfig
from text3d.renderer.volume import RendererConfig, VolumeRenderer, ray_cube_intersection


class ConstantSphere:
    """Density ``sigma`` inside a ball of radius ``r``, grey albedo; analytic normals."""

    def __init__(self, r=0.5, sigma=3.0, radius=1.0):
        self.r, self.sigma, self.radius = r, sigma, radius

    def __call__(self, x):
        inside = (x.norm(dim=-1) < self.r).to(x.dtype)
        return inside * self.sigma, torch.full((x.shape[0], 3), 0.3, dtype=x.dtype)

    def density(self, x):
        return self(x)[0]

    def density_and_normal(self, x):
        sigma, rgb = self(x)
        return sigma, rgb, F.normalize(x, dim=-1)


def closed_form(offset, r, sigma, distance):
    """Opacity and expected hit depth of a ray at lateral ``offset`` from the centre through a constant ball."""
    half = math.sqrt(r * r - offset * offset)
    length = 2 * half
    t0 = math.sqrt(distance * distance - offset * offset) - half
    opacity = 1 - math.exp(-sigma * length)
    mean = t0 * opacity + 1 / sigma - math.exp(-sigma * length) * (length + 1 / sigma)
    return opacity, mean / opacity


def test_sphere_opacity_and_depth_match_closed_form():
    renderer = VolumeRenderer(RendererConfig(num_samples=1024, occupancy=OccupancyConfig(enabled=False)), 1.0)
    field = ConstantSphere()
    distance = 3.0
    # A camera on +x looking at the origin; rays aimed at lateral offsets in the y direction.
    eye = torch.tensor([[distance, 0.0, 0.0]])
    for offset in (0.0, 0.2, 0.4):
        target = torch.tensor([[0.0, offset, 0.0]])
        cams = Cameras(look_at(eye, target), torch.tensor([0.01]), 1, 1)
        with torch.no_grad():
            out = renderer.render(field, cams)
        # The ray passes the ball's centre at a distance of offset * distance / |eye - target|.
        d = offset * distance / math.hypot(distance, offset)
        opacity, depth = closed_form(d, 0.5, 3.0, distance)
        assert out["opacity"].item() == pytest.approx(opacity, abs=2e-3)
        assert out["depth"].item() == pytest.approx(depth, abs=2e-3)
        expected_rgb = 0.3 * opacity + 1.0 * (1 - opacity)  # white background
        assert out["rgb"][0, 0, 0, 0].item() == pytest.approx(expected_rgb, abs=2e-3)


def test_missing_rays_show_background_and_have_zero_opacity():
    cfg = RendererConfig(num_samples=16, background_color=(0.2, 0.4, 0.6), occupancy=OccupancyConfig(enabled=False))
    renderer = VolumeRenderer(cfg, 1.0)
    eye = torch.tensor([[3.0, 0.0, 0.0]])
    cams = Cameras(look_at(eye, torch.tensor([[0.0, 5.0, 0.0]])), torch.tensor([0.01]), 1, 1)
    out = renderer.render(ConstantSphere(), cams)
    assert out["opacity"].item() == 0.0
    torch.testing.assert_close(out["rgb"].flatten(), torch.tensor([0.2, 0.4, 0.6]))


def test_occupancy_skipping_keeps_the_image_and_skips_empty_cells():
    field = ConstantSphere(r=0.4, sigma=20.0)
    cams = spherical_cameras(torch.tensor([30.0]), torch.tensor([20.0]), torch.tensor([2.5]), torch.tensor([40.0]), 24, 24)
    full = VolumeRenderer(RendererConfig(num_samples=96, occupancy=OccupancyConfig(enabled=False)), 1.0)
    skip = VolumeRenderer(RendererConfig(num_samples=96, occupancy=OccupancyConfig(resolution=32)), 1.0)
    skip.update_occupancy(field, torch.Generator().manual_seed(0))
    assert 0.0 < skip.occupancy.occupied_fraction < 0.15  # the ball fills ~3% of the cube, plus a dilated shell
    with torch.no_grad():
        a, b = full.render(field, cams), skip.render(field, cams)
    torch.testing.assert_close(a["rgb"], b["rgb"])
    torch.testing.assert_close(a["opacity"], b["opacity"])


def test_normals_point_outwards_and_shading_modes_differ():
    renderer = VolumeRenderer(RendererConfig(num_samples=128, occupancy=OccupancyConfig(enabled=False)), 1.0)
    cams = spherical_cameras(torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([3.0]), torch.tensor([5.0]), 1, 1)
    light = torch.tensor([[1.0, 0.0, 0.0]])  # from the camera side: the visible face is fully lit
    lit = renderer.render(ConstantSphere(sigma=50.0), cams, shading="lambertian", light_dirs=light)
    n = F.normalize(lit["normal"].flatten(), dim=0)
    assert n[0].item() > 0.99  # facing the camera at +x
    assert lit["rgb"].flatten()[0].item() == pytest.approx(0.3, abs=0.02)
    back = renderer.render(ConstantSphere(sigma=50.0), cams, shading="textureless", light_dirs=-light)
    assert back["rgb"].flatten()[0].item() == pytest.approx(0.1, abs=0.02)  # ambient only
    assert lit["orientation"].item() == pytest.approx(0.0, abs=1e-3)  # normals face the camera


def test_volume_render_gradient_reaches_the_field():
    renderer = VolumeRenderer(RendererConfig(num_samples=32, occupancy=OccupancyConfig(enabled=False)), 1.0)
    sigma = torch.tensor(3.0, requires_grad=True)

    class Learnable(ConstantSphere):
        def __call__(self, x):
            inside = (x.norm(dim=-1) < 0.5).float()
            return inside * sigma, torch.full((x.shape[0], 3), 0.3)

    cams = spherical_cameras(torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([3.0]), torch.tensor([5.0]), 2, 2)
    out = renderer.render(Learnable(), cams, generator=torch.Generator().manual_seed(0))
    out["opacity"].sum().backward()
    assert sigma.grad is not None and sigma.grad.item() > 0  # more density, more opacity


def test_ray_cube_intersection():
    o = torch.tensor([[3.0, 0.0, 0.0], [3.0, 3.0, 0.0], [0.0, 0.0, 0.0]])
    d = F.normalize(torch.tensor([[-1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), dim=-1)
    near, far = ray_cube_intersection(o, d, 1.0)
    torch.testing.assert_close(near[0], torch.tensor(2.0))
    torch.testing.assert_close(far[0], torch.tensor(4.0))
    assert far[1] <= near[1]  # misses
    torch.testing.assert_close(torch.stack([near[2], far[2]]), torch.tensor([0.0, 1.0]))  # starts inside


def test_look_at_and_rays():
    cams = spherical_cameras(torch.tensor([90.0]), torch.tensor([30.0]), torch.tensor([2.0]), torch.tensor([60.0]), 5, 7)
    rot = cams.c2w[0, :3, :3]
    torch.testing.assert_close(rot.T @ rot, torch.eye(3), atol=1e-6, rtol=0)
    assert cams.azimuth.item() == pytest.approx(90.0, abs=1e-4)
    assert cams.elevation.item() == pytest.approx(30.0, abs=1e-4)
    origins, dirs = cams.rays()
    assert origins.shape == dirs.shape == (1, 5, 7, 3)
    # The centre pixel looks at the origin.
    torch.testing.assert_close(dirs[0, 2, 3], F.normalize(-cams.position[0], dim=0), atol=1e-5, rtol=0)
    # The image's up direction is world +z-ish (camera y), right is camera x.
    assert (dirs[0, 0, 3] - dirs[0, 4, 3])[2] > 0
    # A pixel subset gives exactly the same rays as the full image.
    pixels = torch.tensor([[0, 10, 34]])
    _, sub = cams.with_pixels(pixels).rays()
    torch.testing.assert_close(sub[0, 0], dirs[0].reshape(-1, 3)[pixels[0]])


def test_camera_sampler_ranges_and_seeding():
    cfg = CameraConfig(batch_size=256)
    sample = CameraSampler(cfg)
    a = sample(torch.Generator().manual_seed(1))
    b = sample(torch.Generator().manual_seed(1))
    torch.testing.assert_close(a.c2w, b.c2w)
    assert a.elevation.min() >= -10.001 and a.elevation.max() <= 45.001
    dist = a.position.norm(dim=-1)
    assert dist.min() >= 1.5 - 1e-4 and dist.max() <= 2.0 + 1e-4
    fov = torch.rad2deg(a.fov_y)
    assert fov.min() >= 40 - 1e-3 and fov.max() <= 70 + 1e-3
    orbit = sample.orbit(4)
    az = torch.deg2rad(orbit.azimuth)  # compared as directions: 180 and -180 are the same azimuth
    expected = torch.deg2rad(torch.tensor([0.0, 90.0, 180.0, 270.0]))
    torch.testing.assert_close(torch.stack([az.cos(), az.sin()]), torch.stack([expected.cos(), expected.sin()]), atol=1e-5, rtol=0)


def test_fixed_framing_gives_the_scene_one_size_in_every_image():
    free = CameraSampler(CameraConfig(batch_size=64))(torch.Generator().manual_seed(2))
    fixed = CameraSampler(CameraConfig(batch_size=64, fixed_framing=True, distance_range=(1.75, 1.75)))(
        torch.Generator().manual_seed(2))
    torch.testing.assert_close(fixed.fov_y, free.fov_y)  # the same draws: only the distance follows the fov
    # The half-height a view spans at the origin: what makes an object look large or small.
    span = fixed.position.norm(dim=-1) * torch.tan(fixed.fov_y / 2)
    torch.testing.assert_close(span, torch.full_like(span, 1.75 * math.tan(math.radians(55.0) / 2)))
    free_span = free.position.norm(dim=-1) * torch.tan(free.fov_y / 2)
    assert free_span.max() / free_span.min() > 2.0  # without it the framing varies over 2x
    assert fixed.position.norm(dim=-1).max() / fixed.position.norm(dim=-1).min() > 1.5
