"""Packaging that pyproject.toml cannot express: two top-level folders shipped as package data (one source of
truth, no copies in the tree) -- configs/ as ``text3d.presets`` and cuda/ as ``text3d.kernels.sources`` (so a wheel
can JIT-build the kernels) -- and, with ``TEXT3D_BUILD_CUDA=1``, the kernels prebuilt as ``text3d._C``:

    TEXT3D_BUILD_CUDA=1 pip install --no-build-isolation .     # needs torch with CUDA, nvcc and ninja
"""

import os
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def cuda_extension() -> dict:
    if os.environ.get("TEXT3D_BUILD_CUDA", "0") != "1":
        return {}
    from torch.utils.cpp_extension import BuildExtension, CUDAExtension

    sys.path.insert(0, ROOT)
    from text3d.kernels._backend import SOURCES, sources_hash

    extension = CUDAExtension(
        "text3d._C",
        sources=[f"cuda/{name}" for name in SOURCES],
        include_dirs=[os.path.join(ROOT, "cuda")],
        # The loader uses the prebuilt module only when it was built from the sources shipped beside it.
        extra_compile_args={"cxx": ["-O3", f'-DT3D_SOURCES_HASH="{sources_hash()}"'], "nvcc": ["-O3"]},
    )
    return {"ext_modules": [extension], "cmdclass": {"build_ext": BuildExtension}}


DATA_PACKAGES = {"text3d.presets": "configs", "text3d.kernels.sources": "cuda"}

setup(
    packages=[*find_packages(include=["text3d", "text3d.*"]), *DATA_PACKAGES],
    package_dir=DATA_PACKAGES,
    **cuda_extension(),
)
