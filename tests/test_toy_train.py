"""The toy model's training loop: a few steps give a model that loads like any other pixel-space model."""

import json

import pytest
import torch

from text3d.guide.models import ModelConfig, load_diffusion_model
from text3d.toy.train import TOY_WORDS, ToyTrainConfig, main, train_toy_model


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


def test_training_resumes_from_the_saved_model_and_records_each_run(tmp_path, capsys):
    config = ToyTrainConfig(resolution=16, steps=2, batch_size=4, block_out_channels=(16, 32), text_hidden=32)
    out = tmp_path / "toy-model"
    train_toy_model(out, config, log_every=1)
    before = load_diffusion_model(ModelConfig(model=str(out), dtype="fp32"), "pixel", "cpu").unet.state_dict()

    assert main([str(out), "--resume", "--steps", "5", "--save-every", "0"]) == 0
    stats = json.loads((out / "training.json").read_text())
    assert stats["steps"] == 5 and stats["config"]["steps"] == 5
    assert [r["steps"] for r in stats["runs"]] == [[0, 2], [2, 5]]
    assert stats["seconds"] == pytest.approx(sum(r["seconds"] for r in stats["runs"]), abs=0.2)
    assert "--resume --steps 5" in (out / "README.md").read_text()  # the card says how to reproduce both runs
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
