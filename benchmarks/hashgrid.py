"""Torch hash-grid encoding: forward+backward throughput (points/s) at 2^18 points.

    python benchmarks/hashgrid.py [--points 262144] [--repeats 5]

Prints one line per configuration: the defaults (16 levels x 2 features, 2^19 entries, 16 -> 2048) and the CPU preset
used by `text3d reconstruct` (12 levels, 2^16 entries, 16 -> 128).
"""

from __future__ import annotations

import argparse
import time

import torch

from text3d.field.hashgrid import HashGridConfig, HashGridEncoding

CONFIGS = {
    "default (16 lv, 2^19, 16->2048)": HashGridConfig(backend="torch"),
    "reconstruct preset (12 lv, 2^16, 16->128)": HashGridConfig(
        n_levels=12, log2_hashmap_size=16, max_resolution=128, backend="torch"
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=2**18)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"device={args.device} threads={torch.get_num_threads()} points={args.points} torch={torch.__version__}")
    for name, cfg in CONFIGS.items():
        enc = HashGridEncoding(cfg, device=args.device)
        x = torch.rand(args.points, 3, device=args.device)
        times = []
        for i in range(args.repeats + 1):
            if args.device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            enc(x).square().sum().backward()
            if args.device == "cuda":
                torch.cuda.synchronize()
            if i:  # the first run warms up allocators
                times.append(time.perf_counter() - t)
        best = min(times)
        print(f"{name}: {best * 1000:.0f} ms per fwd+bwd (best of {args.repeats}), {args.points / best / 1e6:.3f} M points/s")


if __name__ == "__main__":
    main()
