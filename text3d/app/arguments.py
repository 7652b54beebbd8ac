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


def count_argument(lowest: int):
    """An argument type: a whole number >= ``lowest``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"{value} is below {lowest}")
        return value

    return parse
