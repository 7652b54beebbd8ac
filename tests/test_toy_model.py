"""The bundled toy model: it loads offline like any diffusers model, draws what its prompts say, its score
distillation turns a sphere into the prompted shape, and it is the CPU default of `text3d generate`."""

import json

import pytest
import torch

from text3d.app.jobs import generate
from text3d.app.presets import load_config
from text3d.cli import main
from text3d.config import load_yaml
from text3d.errors import UserError
from text3d.guide.models import ModelConfig, load_diffusion_model
from text3d.toy.bundled import TOY_MODEL, TOY_MODEL_DIR, check_toy_prompt
from text3d.toy.judge import judge_glb, judge_image
from text3d.toy.sample import sample_images
from text3d.toy.train import saved_training
from text3d.toy.vocabulary import COLORS, SHAPES, caption
from text3d.toy.world import render_toy_batch


@pytest.fixture(scope="module")
def toy_model():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")  # a hub request would fail here: the model must come from the package
        return load_diffusion_model(ModelConfig(model=str(TOY_MODEL_DIR), dtype="fp32"), "pixel", "cpu")


def test_the_bundled_model_loads_offline_through_from_pretrained(toy_model):
    weights = sorted(TOY_MODEL_DIR.rglob("*.safetensors"))
    assert {p.parent.name for p in weights} == {"unet", "text_encoder"}
    assert sum(p.stat().st_size for p in TOY_MODEL_DIR.rglob("*") if p.is_file()) <= 25 * 2**20
    assert (TOY_MODEL_DIR / "README.md").is_file()
    assert json.loads((TOY_MODEL_DIR / "training.json").read_text())["steps"] >= 1000
    assert not toy_model.latent and toy_model.unet.config.sample_size == 32
    assert not any(p.requires_grad for p in toy_model.unet.parameters())
    ids = toy_model.tokenizer(caption("purple", "cylinder")).input_ids
    assert len(ids) == 5  # BOS, a, purple, cylinder, EOS: the toy words are whole tokens


def test_the_image_judge_recognises_held_out_toy_renders():
    images, captions, _ = render_toy_batch(72, 32, torch.Generator().manual_seed(99))
    verdicts = [judge_image(im) for im in images]
    shapes = sum(v["shape"] == c.split()[2] for v, c in zip(verdicts, captions))
    colors = sum(v["color"] == c.split()[1] for v, c in zip(verdicts, captions))
    assert shapes >= 69 and colors == 72
    blank = judge_image(torch.ones(3, 32, 32))  # nothing drawn: still an answer, not a crash
    assert blank["shape"] in SHAPES and blank["color"] in COLORS


def test_the_models_own_samples_show_the_prompted_colour_and_mostly_the_shape(toy_model):
    # Every colour and every shape twice; DDIM, CFG 1 (the best measured scale, see docs/benchmarks.md). Colours are
    # reliable; shapes less so (92 % over all 36 prompts): this guards against regressions, chance is 1/6.
    prompts = [caption(c, s) for k in (0, 3) for c, s in zip(COLORS, SHAPES[k:] + SHAPES[:k])]
    images = sample_images(toy_model, prompts, steps=50, guidance_scale=1.0, seed=0)
    assert images.shape == (12, 3, 32, 32) and 0.0 <= images.min() and images.max() <= 1.0
    verdicts = [judge_image(im) for im in images]
    assert [v["color"] for v in verdicts] == [p.split()[1] for p in prompts]
    assert sum(v["shape"] == p.split()[2] for v, p in zip(verdicts, prompts)) >= 9  # 11 with the bundled model


def test_toy_score_distillation_turns_the_initial_sphere_into_a_torus(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fast = [
        "geometry.enabled=false", "texture.enabled=false", "export.turntable_frames=0",
        "export.texture.formats=[glb]", "export.texture.texture_size=64", "export.isosurface.resolution=48",
        "trainer.preview_every=0", "trainer.checkpoint_every=0", "coarse.camera.eval_views=1",
    ]
    distances = {}
    for steps in (0, 150):
        config = load_config("toy", [*fast, f"coarse.max_steps={steps}"], [("prompt.text", "a red torus")])
        generate(config, tmp_path / f"run{steps}")
        distances[steps] = judge_glb(tmp_path / f"run{steps}" / "model.glb")["shape_distances"]
    start, end = distances[0], distances[150]
    assert min(start, key=start.get) == "sphere"  # the blob the field starts from
    assert end["torus"] < 0.8 * start["torus"]  # measurably more torus-like than the start
    assert end["torus"] < end["sphere"]  # and now closer to a torus than to a sphere


def test_toy_prompts_outside_the_vocabulary_are_refused_with_what_it_knows():
    check_toy_prompt("A Red  Cube")
    check_toy_prompt("a red cube", negative="a blue sphere")
    with pytest.raises(UserError, match=r'knows "a COLOUR SHAPE" with COLOUR one of red, .*SHAPE one of cube'):
        check_toy_prompt("a pink dog")
    with pytest.raises(UserError, match=r"negative prompt word\(s\) 'blurry'.*dreamfusion-sd"):
        check_toy_prompt("a red cube", negative="blurry")


def test_generate_without_cuda_or_preset_uses_the_toy_model_and_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = main(["generate", "a pink dog", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and not (tmp_path / "r").exists()  # refused before any work
    lines = err.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("no CUDA device: using the bundled toy model (--preset toy")
    assert "does not know the prompt 'a pink dog'" in lines[1] and "cylinder" in lines[1]


def test_the_toy_preset_renders_what_the_model_was_trained_on():
    preset = load_yaml(TOY_MODEL_DIR.parents[2] / "configs" / "toy.yaml")
    assert preset["guide"]["sds"]["model"]["model"] == TOY_MODEL
    assert preset["guide"]["sds"]["resolution"] == 32
    # The views are named as in the model's captions.
    trained = saved_training(TOY_MODEL_DIR)[0]
    assert preset["prompt"]["view_dependent"] and preset["prompt"]["azimuth_sectors"] == trained.azimuth_sectors > 0


def test_a_batch_with_a_prompt_the_toy_model_does_not_know_is_refused_before_it_runs(tmp_path):
    from text3d.app.batch import plan_batch
    from text3d.app.prompt_files import read_prompt_file

    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cube\na blue teapot\n")
    with pytest.raises(UserError, match=r"p.txt:2: the bundled toy model does not know the prompt 'a blue teapot'"):
        plan_batch(read_prompt_file(prompts), tmp_path / "out", "toy", source=str(prompts))
    assert not (tmp_path / "out").exists()


def test_natural_wording_runs_as_the_toy_caption_and_says_so(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["generate", "An Orange Pyramid.", "--preset", "toy", "--out", str(out), "--quiet",
                 "coarse.max_steps=2", "geometry.max_steps=1", "texture.max_steps=1", "export.turntable_frames=2",
                 "export.turntable_resolution=32", "geometry.tet_resolution=16"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "the toy model reads 'An Orange Pyramid.' as 'a orange pyramid'" in err
    assert load_config(out / "config.yaml").prompt.text == "a orange pyramid"


def test_generate_and_export_say_every_file_they_wrote(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["generate", "a red cube", "--preset", "toy", "--out", str(out), "--quiet", "coarse.max_steps=2",
                 "geometry.max_steps=1", "texture.max_steps=1", "export.turntable_frames=2",
                 "export.turntable_resolution=32", "geometry.tet_resolution=16"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line == (f"wrote contact_sheet.png, model.glb, model.mtl, model.obj, model.png, turntable.mp4, coarse.glb, "
                    f"metrics.json in {out}")
    assert all((out / name).is_file() for name in line[len("wrote "):line.index(" in ")].split(", "))
    assert main(["export", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        f"wrote contact_sheet.png, model.glb, model.mtl, model.obj, model.png, turntable.mp4, coarse.glb, "
        f"metrics.json in {out}")
