"""Run directories under the web UI's output root: where a job writes, safe look-up by name, what to show."""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

from text3d.app.run_dir import failed, holds_config, is_finished, run_names
from text3d.app.schema import Text3DConfig
from text3d.errors import UserError
from text3d.io import atomic_path, is_temp_file
from text3d.prompt.config import shorten

log = logging.getLogger(__name__)

OBJ_PARTS = ("model.obj", "model.mtl", "model.png")
_MAX_NAME = 255  # the longest file name most file systems take
OBJ_BUNDLE = "model-obj.zip"


def choose_run_dir(root: Path, config: Text3DConfig) -> tuple[Path, bool]:
    """Where a job writes, and whether it resumes: ``<prompt-slug>-<seed>``, or ``…-2``, ``…-3`` once taken.

    A stopped (unfinished) run of the very same config is resumed, so Cancel then Generate continues from the
    checkpoint; a finished run, a run that failed (it would fail again) or a different config is never touched.
    User text reaches the path only through :func:`slugify`.
    """
    for name in run_names(config):
        path = root / name
        if not (path / "config.yaml").exists():
            return path, False
        if not is_finished(path) and not failed(path) and holds_config(path, config):
            return path, True
    raise AssertionError("unreachable: run_names never ends")


def resolve_run(root: Path, name: str) -> Path:
    """The run called ``name`` under ``root``, or a UserError unless it is a direct child of ``root`` (after
    resolving links) holding a run's ``config.yaml``: a name from a browser is never trusted as a path."""
    shown = shorten(name, 60)
    if not name or name in (".", "..") or any(c in name for c in "/\\\0") or len(name) > _MAX_NAME:
        raise UserError(f"no run named {shown!r}")
    root = root.resolve()
    try:
        path = (root / name).resolve()
        found = path.parent == root and (path / "config.yaml").is_file()
    except OSError:  # e.g. a name too long for the file system
        found = False
    if not found:
        raise UserError(f"no run named {shown!r}")
    return path


def list_runs(root: Path, limit: int = 48) -> list[Path]:
    """Run directories directly under ``root``, the last started (or resumed) first."""
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and (p / "config.yaml").is_file()]
    # config.yaml is rewritten when a run starts or resumes; the folder's own mtime moves whenever a file is added.
    return sorted(runs, key=lambda p: (p / "config.yaml").stat().st_mtime, reverse=True)[:limit]


def obj_bundle(run: Path) -> Path | None:
    """``model-obj.zip`` (OBJ + MTL + texture) in ``run``, rebuilt atomically when older than its parts."""
    parts = [run / name for name in OBJ_PARTS]
    if not all(_file(p) is not None for p in parts):
        return None
    bundle = run / OBJ_BUNDLE
    if bundle.is_file() and bundle.stat().st_mtime >= max(p.stat().st_mtime for p in parts):
        return bundle
    # Two viewers opening the same run each write a temp file and rename it: neither sees a torn zip.
    with atomic_path(bundle) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in parts:
            zf.write(p, arcname=p.name)
    return bundle


def _file(path: Path) -> Path | None:
    """``path`` if it is a plain file of its run: a link (which could point anywhere) is skipped with a warning."""
    if path.is_symlink():
        log.warning("web UI: not serving %s: it is a symbolic link", path)
        return None
    return path if path.is_file() else None


@dataclass
class RunView:
    """The files of a run directory that the UI shows (any may be missing in a stopped run)."""

    path: Path
    finished: bool
    model: Path | None
    video: Path | None
    contact_sheet: Path | None
    preview: Path | None
    """The newest preview image."""

    @classmethod
    def of(cls, run: Path) -> RunView:
        previews = [p for p in (run / "previews").glob("*.png") if not is_temp_file(p) and _file(p) is not None]
        previews.sort(key=lambda p: p.stat().st_mtime)
        return cls(
            path=run,
            finished=is_finished(run),
            model=_file(run / "model.glb"),
            video=_file(run / "turntable.mp4"),
            contact_sheet=_file(run / "contact_sheet.png"),
            preview=previews[-1] if previews else None,
        )

    def downloads(self) -> list[Path]:
        """model.glb, its compressed copies (export.compress) and the OBJ zip (built on first use, not for every run
        the gallery lists)."""
        compressed = [_file(p) for p in sorted(self.path.glob("model.*.glb"))]  # temp files start with a dot
        return [p for p in (self.model, *compressed, obj_bundle(self.path)) if p is not None]

    @property
    def thumbnail(self) -> Path | None:
        return self.contact_sheet or self.preview
