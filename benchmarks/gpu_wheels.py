"""Fill a wheel folder with what benchmarks/gpu_check.py installs on a GPU machine that has no internet.

    python benchmarks/gpu_wheels.py [DIR] [--python-version 3.12]      # default DIR: .whl (git-ignored)

Downloads, without dependencies, a manylinux x86_64 wheel of each package in gpu_check.REQUIREMENTS for the target
Python, skips those too big to carry (imageio-ffmpeg; the check then makes no turntable) unless --all, and fails when
the folder would exceed --max-mib (60). Then, on the GPU machine: ``python benchmarks/gpu_check.py --out OUT
--wheels DIR``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from gpu_check import REQUIREMENTS

PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, nargs="?", default=Path(".whl"))
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python (default 3.12)")
    parser.add_argument("--all", action="store_true", help="also the optional packages (imageio-ffmpeg, 68 MB)")
    parser.add_argument("--max-mib", type=float, default=60.0)
    args = parser.parse_args()
    wanted = [req for _, req, needed in REQUIREMENTS if needed or args.all]
    args.dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
           "--only-binary=:all:", "--python-version", args.python_version, "--implementation", "cp",
           *(arg for p in PLATFORMS for arg in ("--platform", p)), "-d", str(args.dir), *wanted]
    subprocess.run(cmd, check=True)
    wheels = sorted(args.dir.glob("*.whl"))
    size = sum(w.stat().st_size for w in wheels) / 2**20
    for w in wheels:
        print(f"{w.stat().st_size / 2**20:7.2f} MiB  {w.name}")
    print(f"{size:7.2f} MiB  in {args.dir} ({len(wheels)} wheels, for Python {args.python_version})")
    if size > args.max_mib:
        print(f"error: {args.dir} holds more than {args.max_mib:g} MiB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
