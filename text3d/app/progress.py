"""The progress of a run on a terminal: one bar per stage on stderr, with the latest losses."""

from __future__ import annotations

import sys

import torch
from tqdm import tqdm

from text3d.app import pace
from text3d.app.schema import Text3DConfig
from text3d.stage.trainer import Callback, Progress


class TqdmCallback(Callback):
    """A tqdm bar per stage, from the step it starts (or resumes) at to its last. Given the run's ``config``, a fresh
    run first says how long it should take, when this machine has finished a run like it (see text3d.app.pace)."""

    def __init__(self, config: Text3DConfig | None = None) -> None:
        self.bar: tqdm | None = None
        self.config = config

    def on_start(self, progress: Progress) -> None:
        config, self.config = self.config, None  # once, before the first stage
        # The job has set its CPU threads by now (make_accelerator), on this thread.
        if config is not None and progress.step == 0:
            seconds = pace.estimate_seconds(config, torch.get_num_threads())
            if seconds is not None:
                tqdm.write(f"text3d: about {duration(seconds)} on this machine with {torch.get_num_threads()} CPU "
                           "thread(s), as its last run like this one", file=sys.stderr)
        self.bar = tqdm(total=progress.max_steps, initial=progress.step, desc=progress.stage, dynamic_ncols=True)

    def on_step(self, progress: Progress) -> None:
        self.bar.update(progress.step - self.bar.n)
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in progress.losses.items()}, refresh=False)

    def on_end(self, progress: Progress) -> None:
        self.bar.update(progress.step - self.bar.n)
        self.bar.close()


def duration(seconds: float) -> str:
    """``seconds`` for a person: '45 s', '2.5 min'."""
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"
