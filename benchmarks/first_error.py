"""How long a mistake takes to answer: wall time of `text3d` invocations that end in a one-line error (exit 2).

    python benchmarks/first_error.py [--repeats 3]

Each case runs as a fresh process, as a user types it; the figure is the median of ``--repeats`` runs. The goal is
well under a second: arguments and configs are checked before torch, diffusers or Gradio are imported. Run it alone
and read the load average printed beside the figures (a busy machine slows every import).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

CASES = {
    "--help": ["--help"],
    "unknown KEY=VALUE (generate, default preset)": ["generate", "a red cube", "coarse.max_step=3"],
    "value out of range": ["generate", "a red cube", "--seed", "-1"],
    "prompt the toy model does not know": ["generate", "a pink dog"],
    "unknown preset": ["reconstruct", "examples/toy", "--preset", "nope"],
    "missing prompt file": ["batch", "no-such-prompts.txt"],
    "bad config key (config)": ["config", "coarse.max_step=3"],
    "bad --max-queue (ui)": ["ui", "--max-queue", "0"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, argv in CASES.items():
            times, codes = [], set()
            for _ in range(args.repeats):
                start = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "text3d", *argv], capture_output=True, text=True,
                                      cwd=os.getcwd(), env={**os.environ, "TMPDIR": tmp})
                times.append(time.perf_counter() - start)
                codes.add(done.returncode)
            print(f"{statistics.median(times):6.2f} s  exit {'/'.join(map(str, sorted(codes)))}  {name}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
