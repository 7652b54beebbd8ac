"""Argument types shared by the command-line front ends (``text3d`` verbs, ``batch``, ``ui``): each refuses what
would otherwise fail later with a traceback or do something surprising."""

from __future__ import annotations

import argparse
from pathlib import Path


def path_argument(text: str) -> Path:
    """A path, never the empty string (which would mean the current directory)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path")
    return Path(text)
