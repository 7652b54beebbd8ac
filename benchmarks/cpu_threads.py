"""CPU thread settings against a busy neighbour: a toy run's coarse stage (rendering, hash grid, the toy model's SDS),
timed alone and beside another process that keeps one core busy, under several thread settings.

    python benchmarks/cpu_threads.py [--steps 60]

Each setting runs in a fresh process (OpenMP reads its environment when torch loads). Run it with nothing else on
the machine: the script makes its own neighbour.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CORES = f"trainer.cpu_threads={os.cpu_count()}"
SETTINGS = {  # name: (environment, config overrides)
    "torch default (a thread per core, OpenMP spin-waits)": ({}, [CORES]),
    "OMP_WAIT_POLICY=PASSIVE, a thread per core": ({"OMP_WAIT_POLICY": "PASSIVE"}, [CORES]),
    "1 thread": ({}, ["trainer.cpu_threads=1"]),
    "text3d's default (the cores idle at the start)": ({}, []),
}

MEASURE = """
import json, pathlib, sys, tempfile
import torch
from text3d.app.jobs import generate
from text3d.app.presets import load_config
steps = int(sys.argv[1])
config = load_config("toy", [f"coarse.max_steps={steps}", "geometry.max_steps=1", "texture.max_steps=1",
                             "export.turntable_frames=0", "geometry.tet_resolution=16", "prompt.text=a red cube",
                             *sys.argv[2:]])
with tempfile.TemporaryDirectory() as tmp:
    result = generate(config, pathlib.Path(tmp) / "run")
coarse = result.metrics["coarse"]
print(json.dumps({"ms": coarse["train_seconds"] / steps * 1000, "threads": coarse["cpu_threads"]}))
"""


def measure(env: dict[str, str], overrides: list[str], steps: int) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
    done = subprocess.run([sys.executable, "-c", MEASURE, str(steps), *overrides], capture_output=True, text=True,
                          env={**clean, "HF_HUB_OFFLINE": "1", **env}, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="coarse steps per measurement")
    parser.add_argument("--only", help="run only the settings whose name contains this")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; load average before: {os.getloadavg()[0]:.2f}")
    chosen = {k: v for k, v in SETTINGS.items() if not args.only or args.only in k}
    for name, (env, overrides) in chosen.items():
        alone = measure(env, overrides, args.steps)
        neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(2)  # let the load average see it
        try:
            busy = measure(env, overrides, args.steps)
        finally:
            neighbour.kill()
            neighbour.wait()
        print(f"{alone['ms']:8.1f} ms/step alone ({alone['threads']} threads)  {busy['ms']:8.1f} ms/step beside a busy process "
              f"({busy['threads']} threads)  {name}")
        time.sleep(5)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
