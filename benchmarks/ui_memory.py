"""Memory of the web UI's server over many jobs: RSS after the first job, after the last, and when idle.

    python benchmarks/ui_memory.py [--jobs 20] [--idle 30] [--steps 4]

Starts ``text3d ui`` (the toy preset, tiny steps, its own output root) as a separate process, submits ``--jobs``
generations one after another through ``gradio_client`` (as the page does), and reads the server's resident memory
(its process and children) after each job, then after ``--idle`` seconds without work. The goal: after 20 jobs
within +150 MB of after the first, and near the start when idle. Run it alone: other work on the machine slows the
jobs, not the figures.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil


def rss_mb(pid: int) -> float:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds to wait without work at the end")
    parser.add_argument("--steps", type=int, default=4, help="coarse steps of each job (the form's Steps)")
    args = parser.parse_args()
    from gradio_client import Client

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_TEMP_DIR": str(Path(tmp) / "gradio")}
        overrides = ["geometry.tet_resolution=16", "export.turntable_frames=4", "export.turntable_resolution=64",
                     "coarse.renderer.occupancy.warmup_steps=1"]
        server = subprocess.Popen(
            [sys.executable, "-m", "text3d", "ui", "--port", str(port), "--preset", "toy", "--output-root",
             str(Path(tmp) / "outputs"), *overrides],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}/"
            deadline = time.monotonic() + 120
            while True:
                try:
                    client = Client(url, verbose=False, download_files=False)
                    break
                except Exception:  # noqa: BLE001 -- not up yet
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise
                    time.sleep(1)
            start = rss_mb(server.pid)
            figures = []
            prompts = [f"a {c} {s}" for s in ("cube", "sphere", "cone", "torus") for c in ("red", "blue", "green")]
            t0 = time.perf_counter()
            for k in range(args.jobs):
                client.predict(prompts[k % len(prompts)], "", "toy", k, args.steps, 7.5, api_name="/generate")
                figures.append(rss_mb(server.pid))
                print(f"job {k + 1:3d}: RSS {figures[-1]:8.1f} MB", flush=True)
            took = time.perf_counter() - t0
            time.sleep(args.idle)
            idle = rss_mb(server.pid)
        finally:
            server.terminate()
            server.wait(30)
    print(f"load average {os.getloadavg()[0]:.2f}; {args.jobs} jobs in {took:.0f} s")
    print(f"RSS at start {start:.1f} MB, after job 1 {figures[0]:.1f} MB, after job {args.jobs} {figures[-1]:.1f} MB "
          f"(+{figures[-1] - figures[0]:.1f} MB), idle {args.idle:.0f} s later {idle:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
