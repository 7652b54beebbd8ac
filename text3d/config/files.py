"""Config files: reading a YAML preset into a :class:`~text3d.config.loader.Layer`, and finding a preset by name."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path, PurePath

from text3d.config.loader import Layer, config_error, describe_value
from text3d.config.yaml12 import YAMLError, read_yaml, yaml_where

_YAML_SUFFIXES = (".yaml", ".yml")


def load_yaml(path: str | PurePath) -> Layer:
    """The mapping in a YAML file (``{}`` if empty), as a :class:`Layer` whose source is the file name."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise config_error(f"config: file not found: {path}") from None
    except UnicodeDecodeError:
        raise config_error(f"config: {path} is not UTF-8 text") from None
    except OSError as e:
        raise config_error(f"config: cannot read {path}: {e.strerror or e}") from None
    try:
        data = read_yaml(text)
    except YAMLError as e:
        raise config_error(f"config: invalid YAML in {path}{yaml_where(e)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise config_error(f"config: {path} must hold a mapping of keys at the top level, got {describe_value(data)}")
    return Layer(data, source=path.name)


def resolve_preset(name_or_path: str | PurePath, search_dirs: Sequence[str | PurePath]) -> Path:
    """An existing .yaml/.yml path as is; otherwise ``NAME.yaml`` (or ``.yml``) from the first search dir holding it."""
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.suffix in _YAML_SUFFIXES and path.is_file():
        return path
    dirs = [Path(d) for d in search_dirs]
    file_names = [name] if path.suffix in _YAML_SUFFIXES else [name + s for s in _YAML_SUFFIXES]
    for d in dirs:
        for file_name in file_names:
            if (candidate := d / file_name).is_file():
                return candidate
    available = sorted(
        {f.stem for d in dirs if d.is_dir() for f in d.iterdir() if f.suffix in _YAML_SUFFIXES and f.is_file()}
    )
    match = difflib.get_close_matches(path.stem, available, n=1)
    hint = f"; did you mean '{match[0]}'?" if match else ""
    what = f"preset file not found: {name}" if path.suffix in _YAML_SUFFIXES else f"unknown preset '{name}'"
    listing = ", ".join(available) or "none"
    raise config_error(f"config: {what} (available presets: {listing}{hint}; or give the path of a .yaml file)")
