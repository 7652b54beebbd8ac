"""Data folders that ship inside the package but live at the top of the checkout: ``configs/`` (the presets, as
``text3d.presets``) and ``cuda/`` (the kernel sources, as ``text3d.kernels.sources``). setup.py maps each package
onto its folder, so an installed wheel carries a copy and a checkout has the one source of truth."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Where text3d keeps what it can rebuild (kernel builds, measured paces): ``$TEXT3D_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/text3d``, else ``~/.cache/text3d``."""
    if os.environ.get("TEXT3D_CACHE_DIR"):
        return Path(os.environ["TEXT3D_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "text3d"


def shipped_folder(package: str, folder: str, probe: str) -> Path:
    """The folder of data package ``package`` (which holds the file ``probe``) as installed, else the checkout's
    ``folder`` when the package runs from a checkout that was not installed (e.g. on ``PYTHONPATH``)."""
    try:
        # A folder without __init__.py: files() is a namespace path; a file in it is a plain path.
        shipped = resources.files(package).joinpath(probe)
        if shipped.is_file():
            return Path(str(shipped)).parent
    except ModuleNotFoundError:
        pass
    return _CHECKOUT / folder
