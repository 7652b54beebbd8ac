"""Prompt processing: cleaning, length policy, view selection, one-time encoding, Perp-Neg."""

import math

import pytest
import torch
from transformers import CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel

from text3d.errors import UserError
from text3d.prompt.processor import (
    PromptConfig,
    PromptProcessor,
    check_length,
    clean_prompt,
    perpendicular_component,
)
from text3d.renderer.cameras import spherical_cameras

PROMPT = "a red cube"
SUFFIXES = (", front view", ", side view", ", back view", ", overhead view")


@pytest.fixture(scope="module")
def tokenizer(tiny_sd_path) -> CLIPTokenizer:
    """The tiny model's byte-level CLIP tokenizer, 77 tokens long like SD's."""
    return CLIPTokenizer.from_pretrained(tiny_sd_path / "tokenizer")


@pytest.fixture(scope="module")
def clip(tiny_sd_path) -> CLIPTextModel:
    return CLIPTextModel.from_pretrained(tiny_sd_path / "text_encoder").eval()


def _direct(tokenizer, encoder, text: str, mask: bool = False) -> torch.Tensor:
    """``[L, D]`` hidden states of ``text`` from a plain encoder call."""
    tokens = tokenizer(text, padding="max_length", max_length=77, return_tensors="pt")
    with torch.no_grad():
        return encoder(tokens.input_ids, attention_mask=tokens.attention_mask if mask else None)[0][0]


def _cameras(azimuth: list[float], elevation: list[float]):
    n = len(azimuth)
    return spherical_cameras(
        torch.tensor(azimuth), torch.tensor(elevation), torch.full((n,), 2.0), torch.full((n,), 50.0), 8, 8
    )


def _processor(tokenizer, encoder, **overrides) -> PromptProcessor:
    return PromptProcessor(PromptConfig(**{"text": PROMPT, **overrides}), tokenizer, encoder, "cpu")


# --- cleaning and length ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "message"),
    [("", "prompt is empty"), ("   ", "only whitespace"), ("\n\t\x00", "only whitespace or control characters")],
)
def test_clean_prompt_refuses_blank(text, message):
    with pytest.raises(UserError, match=message):
        clean_prompt(text)


def test_clean_prompt_collapses_whitespace_and_controls():
    assert clean_prompt("a\tred\n cube") == "a red cube"
    assert clean_prompt("  a\x00red\u200bcube ") == "a red cube"


def test_length_limit_is_refused_with_one_line_message(tokenizer):
    check_length(" ".join(["a"] * 75), tokenizer)  # exactly the limit: 77 - BOS - EOS
    with pytest.raises(UserError) as info:
        check_length(" ".join(["a"] * 70 + ["b", "c", "d", "e", "f", "g"]), tokenizer)
    message = str(info.value)
    assert "76 tokens" in message and "at most 75" in message and "end at '…a b c d e f'" in message
    assert "\n" not in message


def test_processor_checks_the_suffixed_and_negative_prompts(tokenizer, clip):
    fits = " ".join(["a"] * 75)
    plain = _processor(tokenizer, clip, text=fits, view_dependent=False)
    assert plain.texts == (fits, "")
    # 75 + ',' + 'front' + 'view' spelt byte by byte
    with pytest.raises(UserError, match="view suffix ', front view' is too long: 85 tokens"):
        _processor(tokenizer, clip, text=fits)
    with pytest.raises(UserError, match="negative prompt is too long: 76 tokens"):
        _processor(tokenizer, clip, negative=" ".join(["a"] * 76))


def test_config_validate():
    with pytest.raises(ValueError, match="overlap"):
        PromptConfig(front_threshold=100, back_threshold=90).validate()
    with pytest.raises(ValueError, match="view_dependent"):
        PromptConfig(perp_neg=True, view_dependent=False).validate()
    PromptConfig(front_threshold=90, back_threshold=90).validate()
    with pytest.raises(ValueError, match="front/side/back"):
        PromptConfig(perp_neg=True, azimuth_sectors=8).validate()
    with pytest.raises(ValueError, match="must contain"):
        PromptConfig(azimuth_sectors=8, sector_suffix=", view").validate()


# --- view selection --------------------------------------------------------------------------------------------
def test_view_index_at_and_around_default_thresholds(tokenizer, clip):
    p = _processor(tokenizer, clip)
    az = torch.tensor([0.0, 44, 45, 46, -46, 134, 135, 136, -170, 190, 360, -180, 540, 180, 0, 0, 90])
    el = torch.tensor([0.0] * 14 + [59, 60, 61])
    expected = [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 0, 2, 2, 2, 0, 3, 3]
    assert p.config.view_index(az, el).tolist() == expected


def test_view_index_custom_thresholds(tokenizer, clip):
    p = _processor(tokenizer, clip, front_threshold=30, back_threshold=60, overhead_threshold=20)
    az = torch.tensor([30.0, 31, -119, 120, 0, 180])
    el = torch.tensor([0.0, 0, 0, 0, 19.9, 20])
    assert p.config.view_index(az, el).tolist() == [0, 1, 1, 2, 0, 3]


def test_azimuth_sectors_name_each_view_by_its_sector_centre():
    c = PromptConfig(azimuth_sectors=12)
    assert c.suffixes == (*(f", view {a}" for a in range(0, 360, 30)), ", overhead view")
    assert PromptConfig(azimuth_sectors=8, sector_suffix=" ({azimuth} deg)").suffixes[1] == " (45 deg)"
    az = torch.tensor([0.0, 14.9, 15.1, -14.9, -15.1, 180, 345.1, 359, 751, 90])
    el = torch.tensor([0.0] * 9 + [70.0])
    assert c.view_index(az, el).tolist() == [0, 0, 1, 0, 11, 6, 0, 0, 1, 12]


def test_sector_prompts_are_encoded_and_picked_per_camera(tokenizer, clip):
    p = _processor(tokenizer, clip, azimuth_sectors=4)
    assert p.texts == (PROMPT, *(PROMPT + f", view {a}" for a in (0, 90, 180, 270)), PROMPT + ", overhead view", "")
    cond, _ = p.embeddings(_cameras([100.0, -80.0, 0.0], [0.0, 0.0, 80.0]))
    for i, suffix in enumerate([", view 90", ", view 270", ", overhead view"]):
        torch.testing.assert_close(cond[i], _direct(tokenizer, clip, PROMPT + suffix), atol=1e-5, rtol=1e-5)


# --- encoding --------------------------------------------------------------------------------------------------
def test_texts_are_prompt_plus_suffix(tokenizer, clip):
    p = _processor(tokenizer, clip, text="  a\tred cube ", negative="blurry")
    assert p.texts == (PROMPT, *(PROMPT + s for s in SUFFIXES), "blurry")
    q = _processor(tokenizer, clip, front_suffix=" (front)")
    assert q.texts[1] == PROMPT + " (front)"


def test_embeddings_match_direct_encoder_calls(tokenizer, clip):
    p = _processor(tokenizer, clip)
    cond, uncond = p.embeddings(_cameras([0.0, 90.0, 180.0, -90.0, 10.0], [0.0, 0.0, 0.0, 10.0, 70.0]))
    assert cond.shape == uncond.shape == (5, 77, 32)
    for i, suffix in enumerate([SUFFIXES[0], SUFFIXES[1], SUFFIXES[2], SUFFIXES[1], SUFFIXES[3]]):
        torch.testing.assert_close(cond[i], _direct(tokenizer, clip, PROMPT + suffix), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(uncond[i], _direct(tokenizer, clip, ""), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(cond[0], cond[1], atol=1e-3)


def test_view_independent_uses_the_plain_prompt(tokenizer, clip):
    p = _processor(tokenizer, clip, view_dependent=False)
    assert p.texts == (PROMPT, "")
    cond, _ = p.embeddings(_cameras([0.0, 90.0, 180.0, 0.0], [0.0, 0.0, 0.0, 80.0]))
    plain = _direct(tokenizer, clip, PROMPT)
    for row in cond:
        torch.testing.assert_close(row, plain, atol=1e-5, rtol=1e-5)


def test_negative_prompt_is_the_unconditional_text(tokenizer, clip):
    p = _processor(tokenizer, clip, negative="blurry,\n low quality")
    _, uncond = p.embeddings(_cameras([0.0], [0.0]))
    torch.testing.assert_close(uncond[0], _direct(tokenizer, clip, "blurry, low quality"), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(uncond[0], _direct(tokenizer, clip, ""), atol=1e-3)


def test_text_encoder_runs_once(tokenizer, clip, monkeypatch):
    calls = []
    forward = clip.forward

    def counting(*args, **kwargs):
        calls.append(args[0].shape if args else kwargs["input_ids"].shape)
        return forward(*args, **kwargs)

    monkeypatch.setattr(clip, "forward", counting)
    p = _processor(tokenizer, clip, perp_neg=True)
    cameras = _cameras([0.0, 120.0], [0.0, 0.0])
    for _ in range(3):
        p.embeddings(cameras)
        p.perp_neg_embeddings(cameras)
    assert calls == [torch.Size([6, 77])]


def test_t5_encoder_gets_the_padding_mask(tokenizer):
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=8,
        d_ff=37,
        num_layers=1,
        num_heads=4,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    t5 = T5EncoderModel(config).eval()
    p = PromptProcessor(PromptConfig(text=PROMPT, view_dependent=False), tokenizer, t5, "cpu", torch.float64)
    cond, _ = p.embeddings(_cameras([0.0], [0.0]))
    assert cond.dtype == torch.float64
    masked = _direct(tokenizer, t5, PROMPT, mask=True).double()
    torch.testing.assert_close(cond[0], masked, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(cond[0], _direct(tokenizer, t5, PROMPT).double(), atol=1e-3)


# --- Perp-Neg --------------------------------------------------------------------------------------------------
def _f(coeffs, r: float) -> float:
    a, b, c = coeffs
    return a * math.exp(-b * r) + c


def test_perp_neg_embeddings_and_weights(tokenizer, clip):
    c = PromptConfig(text=PROMPT, negative="blurry", perp_neg=True)
    p = PromptProcessor(c, tokenizer, clip, "cpu")
    text, weights = p.perp_neg_embeddings(_cameras([0.0, 90.0, 180.0, 45.0, 30.0], [0.0, 0.0, 0.0, 0.0, 75.0]))
    assert text.shape == (5, 4, 77, 32) and weights.shape == (5, 2)
    front, side, back, top = (_direct(tokenizer, clip, PROMPT + s) for s in SUFFIXES)
    neg = _direct(tokenizer, clip, "blurry")

    def close(a, b):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)

    close(weights[0], torch.tensor([-_f(c.perp_neg_f_fs, 1.0), -_f(c.perp_neg_f_sf, 0.0)]))
    close(weights[1], torch.tensor([-_f(c.perp_neg_f_sb, 1.0), -_f(c.perp_neg_f_fsb, 1.0)]))
    close(weights[2], torch.tensor([-_f(c.perp_neg_f_sb, 0.0), -_f(c.perp_neg_f_fsb, 0.0)]))
    close(weights[3], torch.tensor([-_f(c.perp_neg_f_fs, 0.5), -_f(c.perp_neg_f_sf, 0.5)]))
    assert weights[4].tolist() == [0.0, 0.0]
    assert abs(weights[0, 0].item()) < 1e-3 and weights[0, 1].item() == pytest.approx(-1.574, abs=1e-3)
    for row, (pos, n1, n2) in enumerate(
        [
            (front, front, side),
            (side, side, front),
            (back, side, front),
            (0.5 * (front + side), front, side),
            (top, neg, neg),
        ]
    ):
        close(text[row, 0], pos)
        close(text[row, 1], neg)
        close(text[row, 2], n1)
        close(text[row, 3], n2)


def test_perpendicular_component():
    torch.manual_seed(0)
    x, y = torch.randn(3, 4, 5, 5), torch.randn(3, 4, 5, 5)
    perp = perpendicular_component(x, y)
    assert perp.shape == x.shape
    dots = (perp * y).flatten(1).sum(1)
    assert dots.abs().max() < 1e-4
    parallel = x - perp
    cosine = torch.nn.functional.cosine_similarity(parallel.flatten(1), y.flatten(1), dim=1)
    torch.testing.assert_close(cosine.abs(), torch.ones(3))
    projection = ((x * y).flatten(1).sum(1) / (y * y).flatten(1).sum(1)).view(-1, 1, 1, 1) * y
    torch.testing.assert_close(parallel, projection, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(perpendicular_component(y, y), torch.zeros_like(y), atol=1e-5, rtol=0)
    torch.testing.assert_close(perpendicular_component(x, torch.zeros_like(y)), x)  # no direction: nothing removed
    half = perpendicular_component(x.half(), y.half())
    assert half.dtype == torch.float16
