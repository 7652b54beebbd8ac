"""One optimisation loop for every stage and every guide, built on ``accelerate.Accelerator``."""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from torch import Tensor, nn

from text3d.errors import TrainingError, UserError
from text3d.io import write_image
from text3d.stage.checkpoints import CheckpointStore
from text3d.stage.config import TrainerConfig
from text3d.stage.cpu_threads import choose_cpu_threads

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """What callbacks learn about a running stage."""

    stage: str
    step: int
    max_steps: int
    losses: dict[str, float] = field(default_factory=dict)
    elapsed: float = 0.0
    """Seconds of training in this invocation."""
    start_step: int = 0
    """The step this invocation started (or resumed) at."""
    earlier: float = 0.0
    """Seconds of training in earlier invocations (before a resume)."""

    @property
    def seconds(self) -> float:
        """Seconds of training of this stage in all, across resumes."""
        return self.earlier + self.elapsed

    @property
    def eta(self) -> float | None:
        """Seconds left at the pace of the steps done in this invocation; None before the first of them."""
        done = self.step - self.start_step
        if done <= 0:
            return None
        return self.elapsed / done * max(self.max_steps - self.step, 0)


class Callback:
    """Hooks the trainer calls; subclass and override what you need (CLI bar, web UI, tests)."""

    def on_start(self, progress: Progress) -> None: ...

    def on_step(self, progress: Progress) -> None: ...

    def on_preview(self, progress: Progress, path: Path) -> None: ...

    def on_checkpoint(self, progress: Progress, path: Path) -> None: ...

    def on_end(self, progress: Progress) -> None: ...


class Stage(Protocol):
    """What the trainer needs from a stage (coarse NeRF, DMTet geometry, texture)."""

    name: str
    max_steps: int
    loss_weights: dict[str, float]
    restarted: str | None
    """Why the stage started over (see :meth:`restart`), or None."""

    def modules(self) -> dict[str, nn.Module]:
        """Everything whose state goes into a checkpoint."""

    def param_groups(self) -> list[dict]:
        """Optimizer parameter groups, each with its own ``lr``."""

    def training_step(self, step: int) -> dict[str, Tensor]:
        """Named scalar losses for one step (unweighted)."""

    def restart(self, step: int) -> str | None:
        """After ``step`` completed steps: None to go on, or why the stage has just reset itself to start over
        (modules, generators and guide as at step 0; the trainer then resets the optimizer and the step count)."""

    def preview(self) -> np.ndarray:
        """A preview image ``[H, W, 3]`` in [0, 1]."""

    def extra_state(self) -> dict:
        """Non-module state to checkpoint (random generators, ...)."""

    def load_extra_state(self, state: dict) -> None: ...


@dataclass
class FitResult:
    step: int
    """Last completed step."""
    stopped: bool
    """True when a stop was requested before ``max_steps``."""
    checkpoint: Path | None
    """The checkpoint written last."""
    seconds: float = 0.0
    """Seconds of training of the stage in all, across resumes."""


def make_accelerator(config: TrainerConfig) -> Accelerator:
    """Where and how a job computes: its accelerator (device, precision), and torch's CPU threads for it."""
    cpu = config.device == "cpu" or not torch.cuda.is_available()
    if config.device == "cuda" and not torch.cuda.is_available():
        raise UserError("trainer.device=cuda but no CUDA device is available (use trainer.device=auto or cpu)")
    # accelerate keeps one process-wide state and refuses a second Accelerator with another precision or device;
    # each job (a UI or batch process runs many) brings its own, so drop the previous job's. PartialState, which
    # holds the distributed setup, stays.
    AcceleratorState._reset_state()
    torch.set_num_threads(choose_cpu_threads(config.cpu_threads))
    return Accelerator(cpu=cpu, mixed_precision=config.mixed_precision)


class Trainer:
    """Runs ``stage.training_step`` for ``stage.max_steps`` steps with checkpoints, previews and callbacks.

    ``stop_event`` (set from another thread, e.g. the web UI's Cancel) ends the loop between steps and keeps
    a checkpoint of the last completed step.
    """

    def __init__(
        self,
        stage: Stage,
        config: TrainerConfig,
        accelerator: Accelerator,
        run_dir: Path,
        callbacks: list[Callback] | None = None,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.stage = stage
        self.config = config
        self.accelerator = accelerator
        self.run_dir = run_dir
        self.callbacks = callbacks or []
        self.stop_event = stop_event or threading.Event()
        self.store = CheckpointStore(run_dir / "checkpoints", config.keep_checkpoints)
        self._make_optimizer()

    def _make_optimizer(self) -> None:
        groups = self.stage.param_groups()
        self.params = [p for g in groups for p in g["params"]]
        # eps=1e-15: hash-grid entries see rare, tiny gradients that a larger eps would wipe out.
        self.optimizer = self.accelerator.prepare_optimizer(torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15))

    def fit(self, resume: bool = False) -> FitResult:
        stage, cfg = self.stage, self.config
        start, earlier, last_ckpt = 0, 0.0, None
        if resume and (found := self.store.load_latest(stage.name)) is not None:
            state, last_ckpt = found
            self._load(state)
            start, earlier = state["step"], state.get("seconds", 0.0)
            log.info("%s: resumed from %s (step %d)", stage.name, last_ckpt.name, start)
        progress = Progress(stage.name, start, stage.max_steps, start_step=start, earlier=earlier)
        for cb in self.callbacks:
            cb.on_start(progress)
        t0 = time.perf_counter()
        done, ckpt_step, stopped = start, start, False
        while done < stage.max_steps:
            if self.stop_event.is_set():
                stopped = True
                break
            losses = self._step(done, last_ckpt)
            done += 1
            progress = Progress(stage.name, done, stage.max_steps, progress.losses, time.perf_counter() - t0, start,
                                earlier)
            if (why := stage.restart(done)) is not None:
                log.warning("%s: %s; starting the stage over", stage.name, why)
                self._make_optimizer()
                for cb in self.callbacks:
                    cb.on_end(progress)
                # The seconds so far count as an earlier invocation's: the pace (and ETA) is that of the new start.
                start, done, earlier, last_ckpt, t0 = 0, 0, progress.seconds, None, time.perf_counter()
                progress = Progress(stage.name, 0, stage.max_steps, start_step=0, earlier=earlier)
                for cb in self.callbacks:
                    cb.on_start(progress)
                continue
            if done % cfg.log_every == 0 or done == stage.max_steps:
                progress.losses = {k: v.item() for k, v in losses.items()}
                for cb in self.callbacks:
                    cb.on_step(progress)
            if cfg.preview_every and done % cfg.preview_every == 0:
                self._preview(progress)
            if cfg.checkpoint_every and done % cfg.checkpoint_every == 0:
                last_ckpt, ckpt_step = self._checkpoint(progress), done
        # The final (or stopped-at) step always has a checkpoint: it marks the stage done / resumable.
        if last_ckpt is None or ckpt_step != done:
            last_ckpt = self._checkpoint(progress)
        if cfg.preview_every and done > start and done % cfg.preview_every != 0:
            self._preview(progress)  # the stage's final state, whatever the cadence
        for cb in self.callbacks:
            cb.on_end(progress)
        return FitResult(step=done, stopped=stopped, checkpoint=last_ckpt, seconds=progress.seconds)

    def _step(self, step: int, last_ckpt: Path | None) -> dict[str, Tensor]:
        stage = self.stage
        with self.accelerator.autocast():
            losses = stage.training_step(step)
        total = sum(stage.loss_weights[k] * v for k, v in losses.items() if stage.loss_weights[k] != 0.0)
        if not torch.isfinite(total):
            bad = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
            where = f"last good checkpoint: {last_ckpt}" if last_ckpt else "no checkpoint was written yet"
            raise TrainingError(f"{stage.name}: non-finite loss at step {step} ({bad}); stopped, {where}")
        self.optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(total)
        if self.config.grad_clip > 0:
            self.accelerator.clip_grad_norm_(self.params, self.config.grad_clip)
        self.optimizer.step()
        return {**losses, "loss": total.detach()}

    def _preview(self, progress: Progress) -> None:
        path = self.run_dir / "previews" / f"{progress.stage}-{progress.step:07d}.png"
        write_image(path, self.stage.preview())
        for cb in self.callbacks:
            cb.on_preview(progress, path)

    def _checkpoint(self, progress: Progress) -> Path:
        state = {
            "stage": self.stage.name,
            "step": progress.step,
            "seconds": progress.seconds,
            "modules": {k: m.state_dict() for k, m in self.stage.modules().items()},
            "optimizer": self.optimizer.state_dict(),
            "extra": self.stage.extra_state(),
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
        }
        path = self.store.save(self.stage.name, progress.step, state)
        for cb in self.callbacks:
            cb.on_checkpoint(progress, path)
        return path

    def _load(self, state: dict) -> None:
        for name, module in self.stage.modules().items():
            module.load_state_dict(state["modules"][name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.stage.load_extra_state(state["extra"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])


def load_stage_weights(run_dir: Path, stage: Stage) -> tuple[int, float] | None:
    """Load the newest checkpoint of ``stage`` into its modules (no optimizer); returns its step and the stage's
    seconds of training, or None when there is none. An unreadable newest checkpoint is a :class:`UserError` naming
    the file."""
    found = CheckpointStore(run_dir / "checkpoints", keep=1).load_newest(stage.name)
    if found is None:
        return None
    state, _ = found
    for name, module in stage.modules().items():
        module.load_state_dict(state["modules"][name])
    stage.load_extra_state(state["extra"])
    return state["step"], state.get("seconds", 0.0)
