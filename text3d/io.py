"""Atomic file output: every artefact is written to a temp file in the same folder, then renamed."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from text3d.errors import WriteFailed

TEMP_SUFFIX = ".tmp"
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # reading the umask means setting it; put it straight back


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success fsync it and rename it over ``path``.

    A crash (even ``kill -9``) leaves either the old file or the new one, never a torn file. Writers that need a file
    name (imageio, trimesh, torch.save) write to the yielded path. A failure to write (disk full, read-only file
    system, no permission) raises :class:`~text3d.errors.WriteFailed` naming ``path``; the old file stays.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX + path.suffix, dir=path.parent)
    except OSError as e:
        raise WriteFailed(path, os_reason(e)) from e
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs get the usual permissions
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except OSError as e:
        raise WriteFailed(path, os_reason(e)) from e
    except RuntimeError as e:
        if not _is_torch_write_failure(e):
            raise
        raise WriteFailed(path, "the write failed (is the disk full?)") from e
    finally:
        tmp_path.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def is_temp_file(path: Path) -> bool:
    """A temp file of :func:`atomic_path` (left behind only by a killed writer): ``.NAME.XXXX.tmp.SUFFIX``."""
    name = path.name
    return name.startswith(".") and (TEMP_SUFFIX + "." in name or name.endswith(TEMP_SUFFIX))


def remove_temp_files(folder: Path) -> list[Path]:
    """Delete the temp files that killed writers left in ``folder`` (not below it); returns what was removed."""
    removed = [p for p in folder.iterdir() if p.is_file() and is_temp_file(p)] if folder.is_dir() else []
    for p in removed:
        p.unlink(missing_ok=True)
    return removed


def os_reason(e: OSError) -> str:
    """The reason of an OS error in a few words ("No space left on device")."""
    return e.strerror or str(e)


def _is_torch_write_failure(e: RuntimeError) -> bool:
    # torch.save reports a failed write (e.g. ENOSPC) as a RuntimeError from its zip writer.
    text = str(e)
    return "PytorchStreamWriter" in text or "inline_container" in text or "file write failed" in text


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """``open()`` for writing, made atomic with :func:`atomic_path`."""
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        yield f


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json(path: str | os.PathLike, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write ``image: [H, W, C]`` (uint8, or float in [0, 1]) as PNG/JPEG by the path's suffix."""
    import imageio.v3 as iio

    if image.dtype != np.uint8:
        image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, image, extension=Path(path).suffix)


def _fsync_dir(folder: Path) -> None:
    # The rename itself is only durable once the directory entry is flushed.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
