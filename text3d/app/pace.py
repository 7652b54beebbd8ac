"""How long a run takes on this machine: each finished run records its pace (seconds per step of each stage, the
export, the rest), and a later run with the same speed-relevant settings is told the expected time at its start.

Kept in ``<cache dir>/pace.json`` (see :func:`text3d.resources.cache_dir`); a missing or damaged file only means no
estimate.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from text3d.app.schema import Text3DConfig
from text3d.config import to_dict
from text3d.io import write_json
from text3d.resources import cache_dir
from text3d.stage.config import STAGE_NAMES

log = logging.getLogger(__name__)


def signature(config: Text3DConfig, threads: int) -> str:
    """A key for what sets the cost of a step: the renderers, grids, image sizes, model and precision, the steps'
    shapes, the export's sizes, the machine's cores and the CPU threads used (not the prompt, seed or step counts)."""
    c = to_dict(config)
    speed = {
        "cores": os.cpu_count(),
        "threads": threads,
        "trainer": {k: c["trainer"][k] for k in ("device", "mixed_precision")},
        "guide": {k: c["guide"]["sds"][k] for k in ("kind", "resolution")} | {"model": c["guide"]["sds"]["model"]},
        "coarse": {k: c["coarse"][k] for k in ("field", "renderer", "camera", "lambda_orientation")},
        "geometry": {k: c["geometry"][k] for k in ("tet_resolution", "camera")},
        "texture": {"camera": c["texture"]["camera"]},
        "mesh_render": c["mesh_render"],
        "export": c["export"],
    }
    return hashlib.sha256(json.dumps(speed, sort_keys=True).encode()).hexdigest()[:16]


def record(config: Text3DConfig, threads: int, metrics: dict, wall_seconds: float) -> None:
    """Remember the pace of a finished run on ``threads`` CPU threads (``metrics`` as its metrics.json,
    ``wall_seconds`` the whole job's)."""
    stages = {name: metrics[name]["train_seconds"] / max(getattr(config, name).max_steps, 1)
              for name in STAGE_NAMES if name in metrics and "train_seconds" in metrics[name]}
    export = metrics.get("export", {}).get("seconds", 0.0)
    trained = sum(metrics[name]["train_seconds"] for name in stages)
    paces = _read()
    paces[signature(config, threads)] = {"per_step": stages, "export": export, "other": max(wall_seconds - trained - export, 0)}
    try:
        write_json(_path(), paces)
    except Exception as e:  # noqa: BLE001 -- an estimate is a courtesy: never fail a finished run for it
        log.info("could not record this run's pace (%s)", e)


def estimate_seconds(config: Text3DConfig, threads: int) -> float | None:
    """Seconds the run should take on ``threads`` CPU threads, from the last finished run with the same signature;
    None without one."""
    pace = _pace(config, threads)
    if pace is None:
        return None
    return _steps_seconds(config, pace, STAGE_NAMES) + pace["export"] + pace["other"]


def seconds_after(config: Text3DConfig, threads: int, stage: str) -> float | None:
    """Seconds the stages after ``stage`` and the export should take (their setup left out), as
    :func:`estimate_seconds`; None without a measured pace."""
    pace = _pace(config, threads)
    if pace is None:
        return None
    return _steps_seconds(config, pace, STAGE_NAMES[STAGE_NAMES.index(stage) + 1:]) + pace["export"]


def _pace(config: Text3DConfig, threads: int) -> dict | None:
    """The recorded pace of a run like ``config``, when it trained the same stages."""
    pace = _read().get(signature(config, threads))
    if pace is None or set(pace["per_step"]) != {n for n in STAGE_NAMES if getattr(config, n).enabled}:
        return None
    return pace


def _steps_seconds(config: Text3DConfig, pace: dict, stages: tuple[str, ...]) -> float:
    return sum(pace["per_step"][name] * getattr(config, name).max_steps for name in stages if name in pace["per_step"])


def _path() -> Path:
    return cache_dir() / "pace.json"


def _read() -> dict:
    try:
        data = json.loads(_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
