"""A batch on a local Ray cluster with 1 worker and with 2 (the same prompts): prompts per hour, the scaling ratio,
and the scheduling overhead per prompt.

    python benchmarks/ray_batch.py [--prompts 6] [--coarse-steps 150] [--out DIR]

The toy preset at reduced steps. "1 worker" is one task at a time with every core (``--ray-cpus`` = the cores);
"2 workers" are two tasks at once with half the cores each. Overhead per prompt = (the batch's wall time - the sum of
the runs' own pipeline seconds from the manifest) / prompts, in the 1-worker batch, where runs do not overlap: Ray's
start, task scheduling, worker start and imports, the storage check. Run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLORS = ["red", "green", "blue", "yellow", "orange", "purple"]
SHAPES = ["cube", "sphere", "cone", "cylinder", "torus", "pyramid"]


def batch(prompts: Path, out: Path, cpus: int, coarse_steps: int) -> dict:
    cmd = [sys.executable, "-m", "text3d", "batch", str(prompts), "--out-root", str(out), "--preset", "toy",
           "--quiet", "--ray", "--ray-cpus", str(cpus), f"coarse.max_steps={coarse_steps}", "geometry.max_steps=50",
           "texture.max_steps=30", "export.turntable_frames=0"]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"batch failed ({done.returncode}): {done.stderr[-2000:]}")
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    pipeline = sum(r["seconds"] for r in records)
    return {"wall_s": round(wall, 1), "pipeline_s": round(pipeline, 1), "prompts": len(records),
            "prompts_per_hour": round(len(records) / wall * 3600, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=6)
    parser.add_argument("--coarse-steps", type=int, default=150)
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        prompts = root / "prompts.txt"
        prompts.write_text("".join(f"a {COLORS[i % 6]} {SHAPES[(i + i // 6) % 6]}\n" for i in range(args.prompts)))
        print(f"{args.prompts} toy prompts, coarse {args.coarse_steps} steps, {cores} cores; load before: "
              f"{os.getloadavg()[0]:.2f}", flush=True)
        one = batch(prompts, root / "one", cores, args.coarse_steps)
        print(f"1 worker ({cores} CPUs):  {one['wall_s']} s, {one['prompts_per_hour']} prompts/hour", flush=True)
        two = batch(prompts, root / "two", max(cores // 2, 1), args.coarse_steps)
        print(f"2 workers ({max(cores // 2, 1)} CPU each): {two['wall_s']} s, {two['prompts_per_hour']} prompts/hour")
        overhead = (one["wall_s"] - one["pipeline_s"]) / one["prompts"]
        print(f"scaling 2 vs 1 workers: {two['prompts_per_hour'] / one['prompts_per_hour']:.2f}x; overhead per "
              f"prompt (1 worker): {overhead:.1f} s; load after: {os.getloadavg()[0]:.2f}")
        print(json.dumps({"one": one, "two": two, "overhead_per_prompt_s": round(overhead, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
