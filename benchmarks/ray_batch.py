"""`text3d batch --ray` on a local Ray cluster with 1 worker and with 2 (the same prompts): prompts per hour, the
scaling ratio, and the scheduling overhead per prompt.

    python benchmarks/ray_batch.py [--prompts 6] [--coarse-steps 150] [--out DIR]

The toy preset at reduced steps, without the turntable. "1 worker" runs one task at a time with every core
(``--ray-cpus`` = the cores); "2 workers" run two tasks at once with half the cores each. Each run's span is read from
its ``log.txt`` (first line: the pipeline has loaded its model and holds the run; last line: its files are written).
The overhead per prompt is, in the 1-worker batch, the gap from one run's end to the next run's start (from the
driver's start for the first): Ray's scheduling, a worker's start and imports, loading the model. The same batch
without Ray gives the baseline gap. Run it with nothing else on the machine; the load is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

COLORS = ["red", "green", "blue", "yellow", "orange", "purple"]
SHAPES = ["cube", "sphere", "cone", "cylinder", "torus", "pyramid"]


def log_span(log: Path) -> tuple[float, float]:
    """Unix times of the first and the last line of a run's ``log.txt``."""
    lines = log.read_text().splitlines()
    return tuple(datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp() for line in (lines[0], lines[-1]))


def batch(prompts: Path, out: Path, coarse_steps: int, ray_cpus: int | None) -> dict:
    """Run the batch (on Ray with ``ray_cpus`` CPUs a task, or without Ray); its wall time, runs and gaps."""
    ray = [] if ray_cpus is None else ["--ray", "--ray-cpus", str(ray_cpus)]
    cmd = [sys.executable, "-m", "text3d", "batch", str(prompts), "--out-root", str(out), "--preset", "toy",
           "--quiet", *ray, f"coarse.max_steps={coarse_steps}", "geometry.max_steps=50", "texture.max_steps=30",
           "export.turntable_frames=0"]
    start = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)
    wall = time.time() - start
    if done.returncode != 0:
        raise SystemExit(f"batch failed ({done.returncode}): {done.stderr[-2000:]}")
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    if [r["status"] for r in records] != ["done"] * len(records):
        raise SystemExit(f"not every run finished: {[r['status'] for r in records]}")
    spans = sorted(log_span(Path(r["run_dir"]) / "log.txt") for r in records)
    ends = [start] + [end for _, end in spans[:-1]]
    overlap = sum(max(0.0, ends[i] - spans[i][0]) for i in range(1, len(spans)))
    gaps = [s - e for (s, _), e in zip(spans, ends, strict=True)]
    return {"wall_s": round(wall, 1), "prompts": len(records),
            "prompts_per_hour": round(len(records) / wall * 3600, 1),
            "run_s": [round(e - s, 1) for s, e in spans], "gap_s": [round(g, 1) for g in gaps],
            "overlap_s": round(overlap, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=6)
    parser.add_argument("--coarse-steps", type=int, default=150)
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    half = max(cores // 2, 1)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        prompts = root / "prompts.txt"
        prompts.write_text("".join(f"a {COLORS[i % 6]} {SHAPES[(i + i // 6) % 6]}\n" for i in range(args.prompts)))
        print(f"{args.prompts} toy prompts, coarse {args.coarse_steps} steps, {cores} cores; load before: "
              f"{os.getloadavg()[0]:.2f}", flush=True)
        results = {}
        for name, cpus in (("no Ray", None), ("1 worker", cores), ("2 workers", half)):
            results[name] = r = batch(prompts, root / name.replace(" ", "-"), args.coarse_steps, cpus)
            each = "" if cpus is None else f" ({cpus} CPUs each)"
            gaps = f"gaps {r['gap_s']} s" if r["overlap_s"] == 0 else f"runs overlapping {r['overlap_s']} s"
            print(f"{name}{each}: {r['wall_s']} s, {r['prompts_per_hour']} prompts/hour; runs {r['run_s']} s; {gaps}",
                  flush=True)
        one, two, local = results["1 worker"], results["2 workers"], results["no Ray"]
        overhead = statistics.median(one["gap_s"][1:] or one["gap_s"])
        baseline = statistics.median(local["gap_s"][1:] or local["gap_s"])
        print(f"scaling 2 vs 1 workers: {two['prompts_per_hour'] / one['prompts_per_hour']:.2f}x; gap between runs "
              f"(median, after the first): {overhead:.1f} s on Ray, {baseline:.1f} s without; first run starts after "
              f"{one['gap_s'][0]:.1f} s on Ray, {local['gap_s'][0]:.1f} s without; load after: "
              f"{os.getloadavg()[0]:.2f}")
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
