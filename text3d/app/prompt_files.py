"""Prompt files: the prompts of a batch, one per line, each with its own options.

- ``.txt``: one prompt per line; blank lines and lines starting with ``#`` are skipped. Options may follow the first
  ``|`` as shell-quoted words: ``seed=N``, ``negative=TEXT`` and config overrides ``key.path=value``::

      a DSLR photo of a ceramic mug of coffee | seed=3 coarse.max_steps=500 negative="blurry, low quality"

- ``.jsonl``: one JSON object per line, ``{"prompt": ..., "seed": ..., "negative": ..., "overrides": {...} | [...]}``.

Every line is parsed before anything runs; the first bad one is a one-line error naming the file and line. The full
syntax is in ``prompts/README.md``.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from text3d.errors import UserError
from text3d.prompt.config import clean_prompt

_JSONL_FIELDS = ("prompt", "seed", "negative", "overrides")


@dataclass
class BatchItem:
    """One prompt of a prompt file."""

    line: int
    """1-based line number in the prompt file."""
    prompt: str
    """The cleaned prompt (control characters and runs of whitespace made one space)."""
    overrides: list[str]
    """The line's ``key.path=value`` config overrides, in order."""
    seed: int | None = None
    negative: str | None = None


def read_prompt_file(path: Path) -> list[BatchItem]:
    """The items of a ``.txt`` or ``.jsonl`` prompt file; a :class:`UserError` lists every bad line."""
    items, errors = parse_prompt_file(path)
    if errors:
        raise UserError(error_listing(errors))
    return items


def parse_prompt_file(path: Path) -> tuple[list[BatchItem], list[tuple[int, str]]]:
    """The items of the good lines and ``(line, "PATH:LINE: reason")`` of each bad one, in one pass; a file that
    cannot be read, or has no prompt at all, is a :class:`UserError`."""
    parse = {".txt": _parse_txt, ".jsonl": _parse_jsonl}.get(path.suffix.lower())
    if parse is None:
        raise UserError(f"prompt file {path} must end in .txt or .jsonl")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"prompt file {path} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read prompt file {path}: {e}") from None
    items, errors = [], []
    # split("\n"), not splitlines(): that also splits at \f, \x1c, ... and would number lines unlike an editor.
    for n, raw in enumerate(text.split("\n"), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            items.append(parse(n, stripped))
        except UserError as e:
            errors.append((n, f"{path}:{n}: {e}"))
    if not items and not errors:
        raise UserError(f"prompt file {path} has no prompts")
    return items, errors


def error_listing(errors: list[tuple[int, str]]) -> str:
    """One bad line as its own message; several as a count, then one line each, in line order."""
    lines = [message for _, message in sorted(errors)]
    if len(lines) == 1:
        return lines[0]
    return f"{len(lines)} bad lines, nothing was run:\n" + "\n".join(f"  {line}" for line in lines)


def _parse_txt(line: int, text: str) -> BatchItem:
    prompt, bar, options = text.partition("|")
    if not bar:
        return _item(line, prompt, [], None, None)
    try:
        words = shlex.split(options)
    except ValueError as e:
        raise UserError(f"cannot split the options after '|': {e}") from None
    shortcuts: dict[str, str] = {}
    overrides = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise UserError(f"option '{word}' is not KEY=VALUE (quote values with spaces: negative=\"a b\")")
        if key not in ("seed", "negative"):
            overrides.append(word)
        elif key in shortcuts:
            raise UserError(f"{key} is given twice")
        else:
            shortcuts[key] = value
    seed_text = shortcuts.get("seed")
    try:
        seed = None if seed_text is None else int(seed_text)
    except ValueError:
        raise UserError(f"seed must be an integer, got '{seed_text}'") from None
    return _item(line, prompt, overrides, seed, shortcuts.get("negative"))


def _parse_jsonl(line: int, text: str) -> BatchItem:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"not valid JSON: {e.msg} at column {e.colno}") from None
    if not isinstance(obj, dict):
        raise UserError(f"expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(_JSONL_FIELDS))
    if unknown:
        raise UserError(f"unknown field '{unknown[0]}' (fields: {', '.join(_JSONL_FIELDS)})")
    prompt, seed, negative = obj.get("prompt"), obj.get("seed"), obj.get("negative")
    if not isinstance(prompt, str):
        raise UserError("'prompt' must be a string" if "prompt" in obj else "no 'prompt'")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise UserError(f"'seed' must be an integer, got {json.dumps(seed)}")
    if negative is not None and not isinstance(negative, str):
        raise UserError(f"'negative' must be a string, got {json.dumps(negative)}")
    return _item(line, prompt, _jsonl_overrides(obj.get("overrides", [])), seed, negative)


def _jsonl_overrides(value: Any) -> list[str]:
    """``["a.b=1"]`` as it is; ``{"a.b": 1}`` or ``{"a": {"b": 1}}`` as ``a.b=1`` with the value as JSON."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    if not isinstance(value, dict):
        raise UserError("'overrides' must be an object or a list of \"key=value\" strings")

    def flatten(tree: dict, prefix: str) -> Iterator[str]:
        for key, v in tree.items():
            if isinstance(v, dict) and v:
                yield from flatten(v, f"{prefix}{key}.")
            else:
                # A JSON value is also YAML, so the config loader reads back exactly this value (strings included).
                yield f"{prefix}{key}={json.dumps(v, ensure_ascii=False)}"

    return list(flatten(value, ""))


def _item(line: int, prompt: str, overrides: list[str], seed: int | None, negative: str | None) -> BatchItem:
    return BatchItem(line, clean_prompt(prompt), overrides, seed, negative)
