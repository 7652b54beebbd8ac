import threading
from dataclasses import replace
from pathlib import Path

import imageio.v3 as iio
import pytest
import torch

from text3d.data.nerf_synthetic import load_views
from text3d.errors import TrainingError, WriteFailed
from text3d.guide.reconstruction import DatasetViewSampler, ReconstructionGuide
from text3d.io import remove_temp_files
from text3d.stage.coarse import CoarseStage, edge_opacity
from text3d.stage.trainer import Callback, CheckpointStore, Trainer, make_accelerator


def make_trainer(config, run_dir: Path, guide=None, callbacks=None, stop_event=None, retry_guide=None) -> Trainer:
    train = load_views(config.data.path, "train")
    guide = guide or ReconstructionGuide(config.guide.reconstruction, train, torch.ones(3))
    sampler = DatasetViewSampler(train.cameras, config.data.views_per_step, config.data.rays_per_view)
    accelerator = make_accelerator(config.trainer)
    stage = CoarseStage(config.coarse, guide, sampler, train.cameras[:2], accelerator.device, config.seed,
                        retry_guide)
    return Trainer(stage, config.trainer, accelerator, run_dir, callbacks, stop_event)


class StopAt(Callback):
    def __init__(self, step: int, event: threading.Event):
        self.step, self.event = step, event

    def on_step(self, progress):
        if progress.step == self.step:
            self.event.set()


class Recorder(Callback):
    def __init__(self):
        self.steps, self.previews, self.checkpoints = [], [], []

    def on_step(self, progress):
        self.steps.append(progress.step)

    def on_preview(self, progress, path):
        self.previews.append(path)

    def on_checkpoint(self, progress, path):
        self.checkpoints.append(path)


def params(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.stage.field.state_dict().items()}


def test_resume_gives_the_same_parameters_as_an_uninterrupted_run(tiny_config, tmp_path):
    full = make_trainer(tiny_config, tmp_path / "full")
    assert full.fit().step == 6
    reference = params(full)

    event = threading.Event()
    first = make_trainer(tiny_config, tmp_path / "split", callbacks=[StopAt(2, event)], stop_event=event)
    result = first.fit()
    assert result.stopped and result.step == 2 and result.checkpoint.name == "coarse-0000002.pt"
    # A fresh process-like start: new objects, state only from the checkpoint.
    resumed = make_trainer(tiny_config, tmp_path / "split")
    assert resumed.fit(resume=True).step == 6
    for name, value in params(resumed).items():
        torch.testing.assert_close(value, reference[name], rtol=0, atol=1e-6, msg=name)
    # And the parameters did move during training.
    fresh = params(make_trainer(tiny_config, tmp_path / "fresh"))
    assert not torch.allclose(fresh["encoding.table"], reference["encoding.table"])


def test_callbacks_previews_and_checkpoints(tiny_config, tmp_path):
    rec = Recorder()
    make_trainer(tiny_config, tmp_path, callbacks=[rec]).fit()
    assert rec.steps == [1, 2, 3, 4, 5, 6]
    assert [p.name for p in rec.previews] == ["coarse-0000003.png", "coarse-0000006.png"]
    image = iio.imread(rec.previews[0])
    assert image.shape == (2 * 16, 2 * 16, 3)  # two eval views side by side, colour above opacity
    assert [p.name for p in rec.checkpoints] == ["coarse-0000003.pt", "coarse-0000006.pt"]
    # A finished stage resumes to "nothing left to do".
    again = Recorder()
    result = make_trainer(tiny_config, tmp_path, callbacks=[again]).fit(resume=True)
    assert result.step == 6 and again.steps == [] and not result.stopped


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    store = CheckpointStore(tmp_path, keep=2)
    good = store.save("coarse", 3, {"step": 3, "w": torch.ones(4)})

    def torn_save(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise OSError("killed during save")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(WriteFailed, match=r"cannot write .*coarse-0000006\.pt: killed during save"):
        store.save("coarse", 6, {"step": 6})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == [good.name]  # no torn file, no temp left behind
    state, path = store.load_latest("coarse")
    assert path == good and state["step"] == 3

    # A kill -9 leaves its temp file behind: it is never taken for a checkpoint and is cleaned up.
    (tmp_path / ".coarse-0000009.pt.abc.tmp.pt").write_bytes(b"garbage")
    assert store.load_latest("coarse")[1] == good
    remove_temp_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [good.name]

    # A damaged newest checkpoint (e.g. disk full) falls back to the one before.
    store.path("coarse", 12).write_bytes(b"not a checkpoint")
    assert store.load_latest("coarse")[1] == good


def test_old_checkpoints_are_pruned_only_after_a_new_one_exists(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    for step in (1, 2, 3):
        store.save("coarse", step, {"step": step})
    assert [s for s, _ in store.list("coarse")] == [3, 2]


class NaNAfter:
    """Wraps a guide and returns a NaN loss from ``step`` on."""

    def __init__(self, guide, step):
        self.guide, self.step_nan = guide, step
        self.loss_weights = guide.loss_weights

    def step(self, renders, cameras, step):
        losses = self.guide.step(renders, cameras, step)
        if step >= self.step_nan:
            losses["loss_rgb"] = losses["loss_rgb"] * float("nan")
        return losses


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_config, tmp_path):
    train = load_views(tiny_config.data.path, "train")
    guide = NaNAfter(ReconstructionGuide(tiny_config.guide.reconstruction, train, torch.ones(3)), step=4)
    trainer = make_trainer(tiny_config, tmp_path, guide=guide)
    with pytest.raises(TrainingError, match=r"non-finite loss at step 4 .*coarse-0000003\.pt"):
        trainer.fit()
    store = CheckpointStore(tmp_path / "checkpoints", keep=2)
    assert [s for s, _ in store.list("coarse")] == [3]
    state, _ = store.load_latest("coarse")
    assert all(torch.isfinite(v).all() for v in state["modules"]["field"].values())


def test_edge_opacity_is_the_mean_over_the_outer_tenth_of_each_side():
    opacity = torch.zeros(2, 20, 30, 1)
    opacity[:, 2:18, 3:27] = 1.0  # an object leaving a margin of exactly a tenth
    assert edge_opacity(opacity) == 0.0
    opacity[1, :, 0] = 1.0  # one column of the edge band of one view
    band = 20 * 30 - 16 * 24
    assert edge_opacity(opacity) == pytest.approx(20 / (2 * band))
    assert edge_opacity(torch.ones(1, 4, 4, 1)) == 1.0  # small views: a band of one pixel


class Retries:
    """A fresh guide per call (a second start must not inherit the first's random state), counted."""

    def __init__(self, config):
        self.config, self.calls = config, 0

    def __call__(self):
        self.calls += 1
        train = load_views(self.config.data.path, "train")
        return ReconstructionGuide(self.config.guide.reconstruction, train, torch.ones(3))


def test_a_field_filling_the_views_edges_starts_the_stage_over_as_from_step_0(tiny_config, tmp_path):
    reference = make_trainer(tiny_config, tmp_path / "plain")
    reference.fit()
    guarded = replace(tiny_config, coarse=replace(
        tiny_config.coarse, fill_guard=replace(tiny_config.coarse.fill_guard, edge_opacity=1e-6, check_step=2)))
    rec, retries = Recorder(), Retries(tiny_config)
    trainer = make_trainer(guarded, tmp_path / "guarded", callbacks=[rec], retry_guide=retries)
    result = trainer.fit()
    stage = trainer.stage
    assert result.step == 6 and retries.calls == 1
    assert stage.restarted.startswith("the field filled the scene by step 2 (opacity ")
    assert rec.steps == [1, 1, 2, 3, 4, 5, 6]  # step 2 of the first start is where it was checked and dropped
    # Modules, generator and optimizer all started over: the same weights as a run that never had a first start.
    for name, value in params(trainer).items():
        torch.testing.assert_close(value, params(reference)[name], rtol=0, atol=0, msg=name)
    assert result.seconds > 0

    # Once only: a stage that started over is not checked again, and a resumed one keeps its second guide.
    state, _ = CheckpointStore(tmp_path / "guarded" / "checkpoints", keep=2).load_latest("coarse")
    assert state["extra"]["restarted"] == stage.restarted
    event = threading.Event()
    split = make_trainer(guarded, tmp_path / "split", callbacks=[StopAt(3, event)], stop_event=event,
                         retry_guide=Retries(tiny_config))
    assert split.fit().stopped
    again = Retries(tiny_config)
    resumed = make_trainer(guarded, tmp_path / "split", retry_guide=again)
    assert resumed.fit(resume=True).step == 6 and again.calls == 1 and resumed.stage.restarted == stage.restarted
    for name, value in params(resumed).items():
        torch.testing.assert_close(value, params(trainer)[name], rtol=0, atol=1e-6, msg=name)


def test_the_fill_guard_leaves_a_field_within_its_threshold_alone(tiny_config, tmp_path):
    guarded = replace(tiny_config, coarse=replace(
        tiny_config.coarse, fill_guard=replace(tiny_config.coarse.fill_guard, edge_opacity=1.0, check_step=2)))
    retries = Retries(tiny_config)
    trainer = make_trainer(guarded, tmp_path, retry_guide=retries)
    assert trainer.fit().step == 6 and trainer.stage.restarted is None and retries.calls == 0
