import os
import tempfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config):
    """Runs in the tests (and the CLI processes they start) keep their records out of the user's cache, and use a
    fixed thread count: a job picks the idle cores otherwise, and results repeat exactly only at one count."""
    os.environ.setdefault("TEXT3D_CACHE_DIR", tempfile.mkdtemp(prefix="text3d-test-cache-"))
    os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need a CUDA device: without one they are skipped, with the reason shown."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="gpu: no CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A 16x16 NeRF-synthetic-style dataset of a sphere: 6 training and 3 test views."""
    from text3d.data.synthetic import make_dataset

    return make_dataset(tmp_path_factory.mktemp("data") / "sphere", "sphere", n_train=6, n_test=3, resolution=16)


@pytest.fixture
def tiny_config(tiny_dataset):
    """The tiny-test preset pointed at the tiny dataset."""
    from text3d.app.presets import load_config

    return load_config(str(REPO / "configs" / "tiny-test.yaml"), [f"data.path={tiny_dataset}"])


@pytest.fixture(scope="session")
def tiny_sd_path(tmp_path_factory) -> Path:
    """A tiny seeded Stable-Diffusion-like latent model folder (32 px images, 16 px latents)."""
    from text3d.testing.tiny_models import make_tiny_sd

    return make_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def tiny_pixel_path(tmp_path_factory) -> Path:
    """A tiny seeded pixel-space model folder (32 px, learned variance like DeepFloyd IF)."""
    from text3d.testing.tiny_models import make_tiny_pixel

    return make_tiny_pixel(tmp_path_factory.mktemp("models") / "tiny-pixel")
