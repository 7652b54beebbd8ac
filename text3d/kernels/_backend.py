"""Finding the compiled kernels: a prebuilt extension (``text3d._C``), else a JIT build, else one cached error.

The prebuilt extension comes from building the package with ``TEXT3D_BUILD_CUDA=1`` (``setup.py``); it is used only
when it was built from the same sources. The JIT build (``torch.utils.cpp_extension.load`` with ninja) lands in
``$TEXT3D_CACHE_DIR`` or ``~/.cache/text3d`` under a folder named by the torch and CUDA versions and a hash of the
sources, so it runs once per machine and is shared by every process (the build folder is locked while building).
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import re
import sys
import threading
from pathlib import Path
from types import ModuleType

import torch

from text3d.resources import cache_dir, shipped_folder

log = logging.getLogger(__name__)

SOURCES = ("bindings.cpp", "hashgrid.cu", "volume.cu")
HEADERS = ("common.h", "hashgrid.h", "volume.h", "text3d_kernels.h")
_CXX_FLAGS = ["-O3"]
_CUDA_FLAGS = ["-O3"]

_lock = threading.Lock()
_module: ModuleType | None = None
_failure: str | None = None


class KernelsUnavailable(RuntimeError):
    """The kernels could not be loaded or built (the message is one line)."""


def source_dir() -> Path:
    """The kernel sources: the package's copy (``text3d.kernels.sources``, which maps onto ``cuda/``), else the
    ``cuda/`` folder of the checkout this package runs from."""
    return shipped_folder("text3d.kernels.sources", "cuda", SOURCES[0])


def sources_hash(folder: Path | None = None) -> str:
    """SHA-256 (first 16 hex digits) of every source and header, in a fixed order."""
    folder = folder or source_dir()
    digest = hashlib.sha256()
    for name in (*SOURCES, *HEADERS):
        digest.update(name.encode() + b"\0" + (folder / name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def problem(device: torch.device | str) -> str | None:
    """Why the kernels cannot run on ``device`` (None when they can); loads or builds them on first use."""
    if torch.device(device).type != "cuda":
        return f"needs a CUDA device, not {device}"
    try:
        load()
    except KernelsUnavailable as e:
        return str(e)
    return None


def load() -> ModuleType:
    """The compiled module; raises :class:`KernelsUnavailable` (the same message every time after a failure)."""
    global _module, _failure
    with _lock:
        if _module is None and _failure is None:
            try:
                _module = _prebuilt() or _jit()
            except KernelsUnavailable as e:
                _failure = str(e)
        if _failure is not None:
            raise KernelsUnavailable(_failure)
        return _module


def build(verbose: bool = False) -> Path:
    """JIT-build the kernels now (e.g. while building a container image); returns the build folder."""
    _jit(verbose=verbose)
    return _build_dir()


def _prebuilt() -> ModuleType | None:
    try:
        module = importlib.import_module("text3d._C")
    except ImportError:
        return None
    if getattr(module, "SOURCES_HASH", None) != sources_hash():
        log.info("text3d._C was built from other kernel sources; JIT-building the current ones instead")
        return None
    return module


def _build_dir() -> Path:
    tag = f"torch{torch.__version__}-cuda{torch.version.cuda}-py{sys.version_info[0]}{sys.version_info[1]}"
    return cache_dir() / "cuda" / re.sub(r"[^A-Za-z0-9._-]", "_", tag) / sources_hash()


def _jit(verbose: bool = False) -> ModuleType:
    if torch.version.cuda is None:
        raise KernelsUnavailable(f"torch {torch.__version__} is a CPU build")
    from torch.utils import cpp_extension  # imports setuptools: only when building

    if cpp_extension.CUDA_HOME is None:
        raise KernelsUnavailable("no CUDA toolkit found to build them (install nvcc or set CUDA_HOME)")
    try:
        cpp_extension.verify_ninja_availability()
    except RuntimeError:
        raise KernelsUnavailable("ninja is needed to build them (pip install ninja)") from None
    src, folder = source_dir(), _build_dir()
    folder.mkdir(parents=True, exist_ok=True)
    name = f"text3d_cuda_{sources_hash()}"
    log.info("text3d CUDA kernels: building in %s (first use only, about a minute)", folder)
    try:
        return cpp_extension.load(
            name=name,
            sources=[str(src / s) for s in SOURCES],
            extra_include_paths=[str(src)],
            extra_cflags=_CXX_FLAGS,
            extra_cuda_cflags=_CUDA_FLAGS,
            build_directory=str(folder),
            verbose=verbose,
        )
    except Exception as e:  # a compiler or linker failure: keep the whole log, report one line
        log_path = folder / "error.log"
        log_path.write_text(f"{type(e).__name__}: {e}\n")
        first = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise KernelsUnavailable(f"the JIT build failed ({first[:200]}); full log: {log_path}") from e
