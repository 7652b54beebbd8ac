"""How many CPU threads a job's torch ops use: by default the cores idle when the job starts, so that a run shares a
busy machine gracefully. torch's own default, a spinning OpenMP thread per core, slows down several times beside
another busy process (docs/benchmarks.md, 2 cores: a toy coarse step 142 ms alone, 391 ms beside one busy process;
145 and 217 ms with this choice). Passive waiting (OMP_WAIT_POLICY=PASSIVE) softens that as well but costs about a
fifth of the speed on a free machine, so it is left to the user.
"""

from __future__ import annotations

import logging
import os

import psutil

log = logging.getLogger(__name__)

_SAMPLE_SECONDS = 0.25
_BUSY = 50.0  # per cent: a core busier than this over the sample counts as taken


def choose_cpu_threads(requested: int) -> int:
    """``requested`` when > 0; else ``OMP_NUM_THREADS`` when the user set it; else the cores idle now (at least 1)."""
    if requested > 0:
        return requested
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"])
    usage = psutil.cpu_percent(interval=_SAMPLE_SECONDS, percpu=True)
    idle = max(1, sum(1 for u in usage if u < _BUSY))
    if idle < len(usage):
        log.info("%d of %d cores are busy with other work: using %d thread(s)", len(usage) - idle, len(usage), idle)
    return idle
