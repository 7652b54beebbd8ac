"""text3d's kernels for the CPU (``cuda/cpu_kernels.cpp``: the hash-grid math of ``cuda/hashgrid.h`` with OpenMP).

A plain shared library without torch headers: g++ builds it in about a second, on first use, into
``$TEXT3D_CACHE_DIR`` (or ``~/.cache/text3d``) under ``cpu/<sources hash>/``, and ctypes calls it on tensors'
memory. No g++, or a failed build, is one cached, one-line problem (:func:`problem`); the backend rule then keeps the
torch twin, :meth:`text3d.field.hashgrid.HashGridEncoding.encode`.

Results do not depend on the number of threads (each point's forward, and each level's share of the table gradient,
is summed by one thread in a fixed order).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from text3d.kernels._backend import KernelsUnavailable, source_dir
from text3d.kernels.hashgrid import MAX_LEVELS, check_grid, describe
from text3d.resources import cache_dir

log = logging.getLogger(__name__)

SOURCES = ("cpu_kernels.cpp", "hashgrid.h", "common.h")
_FLAGS = ["-O3", "-std=c++17", "-fopenmp", "-fPIC", "-shared"]

_P, _N, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
_SIGNATURES = {  # the C ABI of cuda/cpu_kernels.cpp: pointers, the point count, &HashGridParams, threads
    "t3d_cpu_hashgrid_forward": [_P, _P, _P, _N, _P, _INT],  # x, table, out
    "t3d_cpu_hashgrid_backward_table": [_P, _P, _N, _P, _P, _INT],  # x, grad_out, ..., grad_table
}

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_failure: str | None = None


class _Params(ctypes.Structure):
    """``HashGridParams`` of ``cuda/hashgrid.h``."""

    _fields_ = [("n_levels", ctypes.c_int32), ("features", ctypes.c_int32), ("table_size", ctypes.c_uint32),
                ("resolution", ctypes.c_int32 * MAX_LEVELS)]


def problem(device: torch.device | str) -> str | None:
    """Why the CPU kernels cannot run on ``device`` (None when they can); builds them on first use."""
    if torch.device(device).type != "cpu":
        return f"runs on the CPU, not {device}"
    try:
        _load()
    except KernelsUnavailable as e:
        return str(e)
    return None


def hash_encode(x: Tensor, table: Tensor, resolutions: Sequence[int], table_size: int) -> Tensor:
    """Encode ``x: [N, 3]`` float32 (the unit cube; clamped) with ``table: [L * table_size, F]`` float32 on the CPU.

    The layout, hashing and dense coarse levels are those of :class:`text3d.field.hashgrid.HashGridEncoding`.
    Returns ``[N, L * F]``, differentiable in ``table`` (not in ``x``: normals from density gradients use the torch
    encoding).
    """
    if not isinstance(x, Tensor) or x.dtype != torch.float32 or x.dim() != 2 or x.shape[1] != 3:
        raise ValueError(f"x: expected a float32 tensor [N, 3], got {describe(x)}")
    if not isinstance(table, Tensor) or table.dtype != torch.float32 or table.dim() != 2:
        raise ValueError(f"table: expected a float32 tensor [L * T, F], got {describe(table)}")
    if x.device.type != "cpu" or table.device.type != "cpu":
        raise ValueError(f"x and table must be on the CPU, got {x.device} and {table.device}")
    if x.requires_grad:
        raise ValueError("x: the CPU kernels give no gradient to x (use the torch encoding)")
    check_grid(table, resolutions, table_size)
    grid = (ctypes.c_int32 * MAX_LEVELS)(*map(int, resolutions))
    params = _Params(len(resolutions), table.shape[1], table_size, grid)
    return _Encode.apply(x.contiguous(), table.contiguous(), params)


class _Encode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, params: _Params) -> Tensor:
        ctx.save_for_backward(x)
        ctx.params, ctx.rows = params, table.shape[0]
        out = x.new_empty(x.shape[0], params.n_levels * params.features)
        _check(_load().t3d_cpu_hashgrid_forward(_ptr(x), _ptr(table), _ptr(out), x.shape[0], ctypes.byref(params),
                                                torch.get_num_threads()))
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[None, Tensor | None, None]:
        if not ctx.needs_input_grad[1]:
            return None, None, None
        (x,) = ctx.saved_tensors
        params = ctx.params
        grad_out = grad_out.float().contiguous()
        grad_table = grad_out.new_zeros(ctx.rows, params.features)
        _check(_load().t3d_cpu_hashgrid_backward_table(_ptr(x), _ptr(grad_out), x.shape[0], ctypes.byref(params),
                                                       _ptr(grad_table), torch.get_num_threads()))
        return None, grad_table, None


def library_path() -> Path:
    """Where the built library is cached: one per sources hash."""
    digest = hashlib.sha256()
    src = source_dir()
    for name in SOURCES:
        digest.update(name.encode() + b"\0" + (src / name).read_bytes() + b"\0")
    digest.update(" ".join(_FLAGS).encode())
    return cache_dir() / "cpu" / digest.hexdigest()[:16] / "libtext3d_cpu.so"


def _load() -> ctypes.CDLL:
    """The library, built on first use; raises KernelsUnavailable (the same one-line message after a failure)."""
    global _library, _failure
    with _lock:
        if _library is None and _failure is None:
            try:
                _library = _open(_build())
            except KernelsUnavailable as e:
                _failure = str(e)
        if _failure is not None:
            raise KernelsUnavailable(_failure)
        return _library


def _build() -> Path:
    path = library_path()
    if path.is_file():
        return path
    compiler = shutil.which(os.environ.get("CXX", "g++"))
    if compiler is None:
        raise KernelsUnavailable("no C++ compiler to build them (install g++, or set CXX)")
    path.parent.mkdir(parents=True, exist_ok=True)
    src = source_dir()
    # Built under a temp name and renamed: another process building at the same time never loads a torn file.
    fd, tmp = tempfile.mkstemp(prefix=".libtext3d_cpu.", suffix=".so", dir=path.parent)
    os.close(fd)
    try:
        done = subprocess.run([compiler, *_FLAGS, f"-I{src}", str(src / SOURCES[0]), "-o", tmp],
                              capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            log_path = path.parent / "error.log"
            log_path.write_text(done.stdout + done.stderr)
            first = next((line for line in done.stderr.splitlines() if "error" in line), "compiler failed")
            raise KernelsUnavailable(f"the build failed ({first.strip()[:200]}); full log: {log_path}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("text3d CPU kernels: built %s", path)
    return path


def _open(path: Path) -> ctypes.CDLL:
    try:
        library = ctypes.CDLL(str(path))
    except OSError as e:
        raise KernelsUnavailable(f"{path} does not load ({e})") from None
    for name, argtypes in _SIGNATURES.items():
        function = getattr(library, name)
        function.restype, function.argtypes = ctypes.c_int, argtypes
    return library


def _ptr(t: Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


def _check(status: int) -> None:
    if status != 0:
        raise RuntimeError(f"text3d CPU kernel failed with status {status}")
