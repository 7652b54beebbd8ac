"""What every stage shares: its own random generator, the guide, and both in checkpoints."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from text3d.guide.base import Guide
from text3d.renderer.cameras import Cameras


class GuidedStage:
    """Base of the stages: a guide, training views, evaluation views and a seeded generator.

    ``extra_state`` saves the stage's generator and the guide's state (if it has one) in checkpoints.
    """

    def __init__(self, config, guide: Guide, sample_views, eval_cameras, device: torch.device, seed: int) -> None:
        self.config = config
        self.max_steps = config.max_steps
        self.guide = guide
        self.sample_views = sample_views
        self.eval_cameras = eval_cameras
        self.device = device
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.restarted: str | None = None
        """Why the stage started over, once it has (see :meth:`restart`)."""

    def restart(self, step: int) -> str | None:
        """The trainer's hook after each step: these stages go on (the coarse stage may start over)."""
        return None

    def extra_state(self) -> dict:
        state = {"generator": self.generator.get_state()}
        if hasattr(self.guide, "state_dict"):  # guides that draw random numbers (SDS) resume exactly too
            state["guide"] = self.guide.state_dict()
        return state

    def load_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        if "guide" in state:
            self.guide.load_state_dict(state["guide"])

    def view_renderer(self) -> Callable[[Cameras], dict[str, Tensor]]:
        """A function rendering one evaluation camera (set up once per :meth:`render_views`)."""
        raise NotImplementedError

    @torch.no_grad()
    def render_views(self, cameras: Cameras) -> dict[str, Tensor]:
        """Evaluation renders of ``cameras``, one view at a time (bounded memory), concatenated: ``[N, H, W, C]``."""
        render = self.view_renderer()
        parts = [render(cameras[i].to(self.device)) for i in range(len(cameras))]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def draw(self, choice: str, probs: Sequence[float], options: Sequence[str]) -> str:
        """``choice`` itself, or one of ``options`` drawn with ``probs`` when ``choice`` is 'random'."""
        if choice != "random":
            return choice
        return options[torch.multinomial(torch.tensor(probs, dtype=torch.float), 1, generator=self.generator).item()]
