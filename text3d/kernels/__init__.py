"""text3d's own CUDA kernels (sources in the top-level ``cuda/`` folder), loaded lazily.

- :func:`problem` — why the kernels cannot run on a device (``None`` when they can); the probe that
  :func:`text3d.backends.select_backend` uses. The first call on a CUDA device loads a prebuilt extension or JIT-builds
  one (about a minute, once per torch/CUDA version); a failure is remembered and reported in one line.
- :func:`hash_encode` — multiresolution hash-grid encoding, forward, backward and double backward (for normals from
  density gradients); twin: :meth:`text3d.field.hashgrid.HashGridEncoding.encode`.
- :func:`render_weight_from_density` — volume-rendering weights of packed rays, forward and backward; twin:
  :func:`text3d.renderer.compositing.render_weight_from_density` with ``backend="torch"``.

:mod:`text3d.kernels.cpu` holds the hash-grid encoding built for the CPU (``cuda/cpu_kernels.cpp``, with g++).

Importing this package imports nothing compiled; ``import text3d`` never imports it.
"""

from text3d.kernels import cpu
from text3d.kernels._backend import build, problem, source_dir
from text3d.kernels.hashgrid import hash_encode
from text3d.kernels.volume import render_weight_from_density

__all__ = ["build", "cpu", "hash_encode", "problem", "render_weight_from_density", "source_dir"]
