"""The toy model's training loop: a few steps give a model that loads like any other pixel-space model."""

import json

import pytest
import torch

from text3d.guide.models import ModelConfig, load_diffusion_model
from text3d.prompt.processor import PromptConfig
from text3d.renderer.cameras import spherical_cameras
from text3d.toy.train import TOY_WORDS, ToyTrainConfig, main, train_toy_model, training_texts


def test_a_short_training_run_saves_a_loadable_pixel_model(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = ToyTrainConfig(resolution=16, steps=3, batch_size=4, block_out_channels=(16, 32), text_hidden=32)
    out = tmp_path / "toy-model"
    stats = train_toy_model(out, config, log_every=1)
    assert stats["steps"] == 3 and stats["final_loss"] > 0
    assert json.loads((out / "training.json").read_text())["config"]["resolution"] == 16
    assert "3 steps of batch 4" in (out / "README.md").read_text()  # the training cost is recorded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy-model"]  # no staging folder left behind

    model = load_diffusion_model(ModelConfig(model=str(out), dtype="fp32"), "pixel", "cpu")
    assert model.unet.config.in_channels == 3 and not model.predicts_variance
    ids = model.tokenizer("a purple pyramid, overhead view").input_ids
    assert len(ids) == 2 + 6  # BOS, a, purple, pyramid, ",", overhead, view, EOS: these words are single tokens
    for word in TOY_WORDS:  # every toy word has merges: at most a few pieces, and it decodes back exactly
        pieces = model.tokenizer(word).input_ids[1:-1]
        assert len(pieces) <= 4 and model.tokenizer.decode(pieces).strip() == word
    with torch.no_grad():
        text = model.text_encoder(torch.tensor([ids]))[0]
        eps = model.unet(torch.zeros(1, 3, 16, 16), torch.tensor([10]), encoder_hidden_states=text).sample
    assert eps.shape == (1, 3, 16, 16) and torch.isfinite(eps).all()

    # Training again into the same folder replaces the model completely.
    train_toy_model(out, ToyTrainConfig(**{**config.__dict__, "steps": 1}), log_every=1)
    assert json.loads((out / "training.json").read_text())["steps"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy-model"]


def test_training_captions_name_the_camera_sector_as_generation_does():
    n = 400
    azimuth, elevation = torch.linspace(-180.0, 180.0, n), torch.full((n,), 20.0)
    cameras = spherical_cameras(azimuth, elevation, torch.full((n,), 2.0), torch.full((n,), 50.0), 8, 8)
    captions = ["a red cube"] * n
    config = ToyTrainConfig(azimuth_sectors=12, plain_captions=0.25, cfg_dropout=0.1)
    texts = training_texts(captions, cameras, config, torch.Generator().manual_seed(0))
    views = PromptConfig(text="a red cube", azimuth_sectors=12)
    expected = ["a red cube" + views.suffixes[i] for i in views.view_index(azimuth, elevation).tolist()]
    sectored = [t == e for t, e in zip(texts, expected)]
    plain, dropped = texts.count("a red cube"), texts.count("")
    assert sum(sectored) + plain + dropped == n  # nothing else, and each sector text is its camera's
    assert 0.6 * n < sum(sectored) < 0.75 * n and 0.15 * n < plain < 0.3 * n and 0.05 * n < dropped < 0.15 * n
    assert {e for e, ok in zip(expected, sectored) if ok} == set(expected)  # every sector occurs
    plain_only = ToyTrainConfig(azimuth_sectors=0, cfg_dropout=0.0)
    assert training_texts(captions, cameras, plain_only, torch.Generator().manual_seed(0)) == captions


def test_training_resumes_from_the_saved_model_and_records_each_run(tmp_path, capsys):
    config = ToyTrainConfig(resolution=16, steps=2, batch_size=4, block_out_channels=(16, 32), text_hidden=32)
    out = tmp_path / "toy-model"
    train_toy_model(out, config, log_every=1)
    before = load_diffusion_model(ModelConfig(model=str(out), dtype="fp32"), "pixel", "cpu").unet.state_dict()

    # The captions and views may change on resuming (here: plain ones, fixed framing); the card records each run's.
    assert main([str(out), "--resume", "--steps", "5", "--save-every", "0", "--azimuth-sectors", "0",
                 "--framing-distance", "1.75"]) == 0
    stats = json.loads((out / "training.json").read_text())
    assert stats["steps"] == 5 and stats["config"]["steps"] == 5 and stats["config"]["azimuth_sectors"] == 0
    assert [r["steps"] for r in stats["runs"]] == [[0, 2], [2, 5]]
    assert [r["azimuth_sectors"] for r in stats["runs"]] == [12, 0]
    assert [r["framing_distance"] for r in stats["runs"]] == [0.0, 1.75]
    assert stats["seconds"] == pytest.approx(sum(r["seconds"] for r in stats["runs"]), abs=0.2)
    card = (out / "README.md").read_text()  # it says how to reproduce both runs
    assert (
        "--steps 2 --batch-size 4 --resolution 16 --seed 0 --lr 0.0005 --azimuth-sectors 12 --plain-captions 0.25"
        in card
    )
    assert "--resume --steps 5 --azimuth-sectors 0 --plain-captions 0.25 --framing-distance 1.75\n" in card
    assert "steps 0-2: captions plain in 25% of images" in card and "; views at random distances" in card
    assert "steps 2-5: captions plain; views at distance 1.75 with fixed framing" in card
    assert "_name_or_path" not in (out / "unet" / "config.json").read_text()  # saved as a fresh run saves it
    after = load_diffusion_model(ModelConfig(model=str(out), dtype="fp32"), "pixel", "cpu").unet.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained on from the saved weights

    with pytest.raises(SystemExit) as e:  # nothing left to train: a one-line usage error
        main([str(out), "--resume", "--steps", "5"])
    assert e.value.code == 2 and "trained for 5 steps already" in capsys.readouterr().err
    with pytest.raises(ValueError, match="different resolution"):
        train_toy_model(out, ToyTrainConfig(**{**config.__dict__, "steps": 9, "resolution": 8}), resume=True)
    with pytest.raises(SystemExit):
        main([str(tmp_path / "nothing-here"), "--resume", "--steps", "3"])
