"""The progress of a run on a terminal: one bar per stage on stderr, with the latest losses."""

from __future__ import annotations

from tqdm import tqdm

from text3d.stage.trainer import Callback, Progress


class TqdmCallback(Callback):
    """A tqdm bar per stage, from the step it starts (or resumes) at to its last."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def on_start(self, progress: Progress) -> None:
        self.bar = tqdm(total=progress.max_steps, initial=progress.step, desc=progress.stage, dynamic_ncols=True)

    def on_step(self, progress: Progress) -> None:
        self.bar.update(progress.step - self.bar.n)
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in progress.losses.items()}, refresh=False)

    def on_end(self, progress: Progress) -> None:
        self.bar.update(progress.step - self.bar.n)
        self.bar.close()
