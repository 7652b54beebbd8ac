"""The toy text-to-image model that ships inside the package: where it is, and which prompts it understands."""

from __future__ import annotations

from pathlib import Path

from text3d.errors import UserError
from text3d.prompt.config import shorten
from text3d.toy.vocabulary import COLORS, SHAPES, normal_caption, words_of

TOY_MODEL = "text3d-toy"
"""Model name (``guide.sds.model.model``) of the bundled toy model; resolved to :data:`TOY_MODEL_DIR`."""
TOY_MODEL_DIR = Path(__file__).resolve().parent / "weights"
"""The bundled model's folder, in diffusers' layout (trained by ``python -m text3d.toy.train``)."""
TOY_EXAMPLE = "a yellow cone"
"""The prompt shown first (README, the web UI): right for every seed tried (docs/benchmarks.md)."""
TOY_VOCABULARY = f"\"a COLOUR SHAPE\" with COLOUR one of {', '.join(COLORS)} and SHAPE one of {', '.join(SHAPES)}"
"""What the toy model knows, as the messages say it."""


def is_toy_model(model: str) -> bool:
    """True when ``model`` names the bundled toy model (by name or by its folder)."""
    return model == TOY_MODEL or Path(model).expanduser().resolve() == TOY_MODEL_DIR


def check_toy_prompt(prompt: str, negative: str = "") -> str:
    """The caption form of ``prompt`` (see :func:`~text3d.toy.vocabulary.normal_caption`); a :class:`UserError`
    unless it names a toy object and ``negative`` uses only toy words.

    The toy model saw nothing but ``"a {colour} {shape}"``: any other prompt would give it noise, not a 3D asset.
    """
    vocabulary = {"a", "an", "the", *COLORS, *SHAPES}
    unknown = [w for w in words_of(negative) if w not in vocabulary]
    normal = normal_caption(prompt)
    known_prompt = normal is not None
    if not known_prompt or unknown:
        words = shorten(", ".join(unknown))
        what = f"negative prompt word(s) {words!r}" if known_prompt else f"prompt {shorten(prompt)!r}"
        raise UserError(
            f"the bundled toy model does not know the {what}: it knows {TOY_VOCABULARY}; for other prompts use a real "
            "model on a GPU (--preset dreamfusion-sd, or --model ID_OR_FOLDER)"
        )
    return normal
