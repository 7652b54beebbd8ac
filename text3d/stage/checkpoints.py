"""Checkpoints of a run: ``checkpoints/<stage>-<step>.pt``, each written atomically (the one owner of their format).

Listing them needs no torch; saving and loading import it.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from text3d.errors import UserError
from text3d.io import atomic_path

log = logging.getLogger(__name__)

_CKPT_RE = re.compile(r"^(?P<stage>[a-z0-9_-]+)-(?P<step>\d{7})\.pt$")


class CheckpointStore:
    """``<dir>/<stage>-<step>.pt`` files, each written atomically (temp file + rename)."""

    def __init__(self, folder: Path, keep: int) -> None:
        self.folder = folder
        self.keep = keep

    def path(self, stage: str, step: int) -> Path:
        return self.folder / f"{stage}-{step:07d}.pt"

    def list(self, stage: str) -> list[tuple[int, Path]]:
        """Complete checkpoints of ``stage``, newest first. Temp files of interrupted saves never match."""
        if not self.folder.is_dir():
            return []
        found = []
        for p in self.folder.iterdir():
            m = _CKPT_RE.match(p.name)
            if m and m["stage"] == stage:
                found.append((int(m["step"]), p))
        return sorted(found, reverse=True)

    def save(self, stage: str, step: int, state: dict) -> Path:
        import torch  # a few seconds to import: only when a checkpoint is written or read

        path = self.path(stage, step)
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        for _, old in self.list(stage)[self.keep :]:
            old.unlink(missing_ok=True)
        return path

    def load_latest(self, stage: str) -> tuple[dict, Path] | None:
        """The newest checkpoint that loads; a damaged one is skipped with a warning (resume: the last good one)."""
        for _, path in self.list(stage):
            try:
                return self.load(path), path
            except UserError as e:
                log.warning("%s; trying an older one", e)
        return None

    def load_newest(self, stage: str) -> tuple[dict, Path] | None:
        """The newest checkpoint, or None when there is none; an unreadable one is a :class:`UserError` naming it
        (what the stage finished with must not silently become an earlier state)."""
        found = self.list(stage)
        return (self.load(found[0][1]), found[0][1]) if found else None

    @staticmethod
    def load(path: Path) -> dict:
        import torch

        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # a damaged file (disk full, foreign edit)
            first = (str(e).splitlines() or [""])[0][:120]
            raise UserError(f"checkpoint {path} is unreadable ({type(e).__name__}: {first})") from None
