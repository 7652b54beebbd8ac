"""Reconstruct the bundled example through every stage; print per-stage test PSNR, Chamfer, times, peak RSS.

    python benchmarks/reconstruct.py [--dataset examples/toy] [--out DIR] [KEY=VALUE ...]

Runs `text3d reconstruct` with the default `reconstruct` preset into a fresh temporary directory (or --out).
The exported mesh's PSNR is that of model.glb's own mesh and baked texture, rendered with the torch rasterizer;
the Chamfer distance (to the dataset's mesh.ply) is in % of the ground truth's bounding-box diagonal.
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
    metrics = json.loads((out / "metrics.json").read_text())
    print(f"threads={torch.get_num_threads()} torch={torch.__version__} run={out}")
    print(f"{'stage':<10} {'steps':>6} {'seconds':>8} {'steps/s':>8} {'test PSNR':>10}")
    for name in ("coarse", "geometry", "texture"):
        if name in metrics:
            m = metrics[name]
            rate = m["steps"] / m["train_seconds"] if m["train_seconds"] else float("nan")
            print(f"{name:<10} {m['steps']:>6} {m['train_seconds']:>8.1f} {rate:>8.1f} {m['psnr']:>9.2f} dB")
    e = metrics["export"]
    print(f"{'export':<10} {'':>6} {'':>8} {'':>8} {e['psnr']:>9.2f} dB  ({e['faces']} faces, {e['texture_size']}² texture)")
    if "chamfer_pct" in e:
        print(f"Chamfer distance, exported mesh to ground truth: {e['chamfer_pct']:.3f} % of the bbox diagonal")
    print(f"exported - coarse PSNR: {e['psnr'] - metrics['coarse']['psnr']:+.2f} dB")
    print(f"wall time {wall:.1f} s; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
