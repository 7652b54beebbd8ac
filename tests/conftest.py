from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A 16x16 NeRF-synthetic-style dataset of a sphere: 6 training and 3 test views."""
    from text3d.data.synthetic import make_dataset

    return make_dataset(tmp_path_factory.mktemp("data") / "sphere", "sphere", n_train=6, n_test=3, resolution=16)


@pytest.fixture
def tiny_config(tiny_dataset):
    """The tiny-test preset pointed at the tiny dataset."""
    from text3d.cli import load_config

    return load_config(str(REPO / "configs" / "tiny-test.yaml"), [f"data.path={tiny_dataset}"])
