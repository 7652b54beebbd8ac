"""Typed configuration: nested dataclasses built from defaults, YAML presets and ``key=value`` overrides."""

from text3d.config.files import load_yaml, resolve_preset
from text3d.config.loader import Layer, Range, build, describe, diff, field_docs, field_range, to_dict, to_yaml

__all__ = [
    "Layer",
    "Range",
    "build",
    "describe",
    "diff",
    "field_docs",
    "field_range",
    "load_yaml",
    "resolve_preset",
    "to_dict",
    "to_yaml",
]
