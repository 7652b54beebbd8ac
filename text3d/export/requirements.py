"""What an export needs beyond text3d's own dependencies, checked before a run starts (a run must not train for an
hour to fail at its export): a one-line :class:`~text3d.errors.UserError` that says how to get it."""

from __future__ import annotations

from text3d.export.compress import check_compression
from text3d.export.config import ExportConfig
from text3d.export.usdz import check_usd


def check_export_tools(config: ExportConfig) -> None:
    """``gltf-transform`` for ``config.compress``, ``usd-core`` for a usdz in ``config.texture.formats``."""
    check_compression(config.compress)
    if "usdz" in config.texture.formats:
        check_usd()
