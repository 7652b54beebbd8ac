"""Reconstruct the bundled example and print test-view PSNR, steps/s and peak RSS.

    python benchmarks/reconstruct.py [--dataset examples/toy] [--out DIR] [KEY=VALUE ...]

Runs `text3d reconstruct` with the default `reconstruct` preset into a fresh temporary directory (or --out).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from text3d.cli import main as text3d

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=REPO / "examples" / "toy")
    parser.add_argument("--out", type=Path, help="run directory (default: a new temporary one)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="text3d-bench-")) / "run"
    t0 = time.perf_counter()
    code = text3d(["reconstruct", str(args.dataset), "--out", str(out), "--quiet", *args.overrides])
    wall = time.perf_counter() - t0
    if code != 0:
        return code
    m = json.loads((out / "metrics.json").read_text())["coarse"]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"threads={torch.get_num_threads()} torch={torch.__version__} run={out}")
    print(f"test PSNR          {m['psnr']:.2f} dB over {len(m['psnr_per_view'])} views")
    print(f"steps              {m['steps']} in {m['train_seconds']:.1f} s -> {m['steps'] / m['train_seconds']:.1f} steps/s")
    print(f"wall time          {wall:.1f} s (training, evaluation, mesh export)")
    print(f"peak RSS           {peak_mib:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
