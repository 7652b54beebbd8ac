"""The words of the toy world: six shapes, six colours, and captions ``"a {color} {shape}"`` (no torch needed)."""

from __future__ import annotations

SHAPES: tuple[str, ...] = ("cube", "sphere", "cone", "cylinder", "torus", "pyramid")

COLORS: dict[str, tuple[float, float, float]] = {
    # Saturated, with hues at least ~25 degrees apart (red 0, orange 30, yellow 53, green 124, blue 229, purple 277).
    "red": (0.85, 0.1, 0.1),
    "orange": (0.95, 0.5, 0.05),
    "yellow": (0.95, 0.85, 0.1),
    "green": (0.1, 0.7, 0.15),
    "blue": (0.1, 0.25, 0.9),
    "purple": (0.55, 0.15, 0.8),
}


def caption(color: str, shape: str) -> str:
    """The caption of a toy object, e.g. ``"a red cube"``."""
    return f"a {color} {shape}"


def normal_caption(text: str) -> str | None:
    """The caption that a person's wording of a toy object means, else None: case, an article ("a", "an", "the" or
    none) and punctuation are forgiven, so "An Orange Pyramid." and "blue torus" read as "a orange pyramid" and
    "a blue torus", the form the toy model was trained on."""
    words = [w for w in (w.strip(_PUNCTUATION) for w in text.lower().split()) if w]
    if words and words[0] in ("a", "an", "the"):
        words = words[1:]
    if len(words) == 2 and words[0] in COLORS and words[1] in SHAPES:
        return caption(words[0], words[1])
    return None


def words_of(text: str) -> list[str]:
    """``text``'s words, lower case, without punctuation around them (for checking a negative prompt)."""
    return [w for w in (w.strip(_PUNCTUATION) for w in text.lower().replace(",", " ").split()) if w]


_PUNCTUATION = ".,;:!?'\"()"


def parse_caption(text: str) -> tuple[str, str] | None:
    """``(color, shape)`` of a caption made by :func:`caption` (case and spacing forgiven), else None."""
    words = text.lower().split()
    if len(words) == 3 and words[0] == "a" and words[1] in COLORS and words[2] in SHAPES:
        return words[1], words[2]
    return None
