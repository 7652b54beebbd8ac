"""Small CLIP BPE tokenizers with a vocabulary of our own: the byte alphabet plus whole-word merges."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from transformers import CLIPTokenizer

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _byte_symbols() -> list[str]:
    """GPT-2/CLIP byte-level alphabet: one printable unicode character per byte value, in byte order (256)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes, extra = [], 0
    for b in range(256):
        if b in printable:
            codes.append(b)
        else:  # bytes without a visible glyph map past 255, in order
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def write_word_tokenizer(path: Path, words: Sequence[str], max_length: int = 77) -> CLIPTokenizer:
    """Write and return a CLIP BPE tokenizer with merges for ``words``.

    Merges apply by rank, so a word whose letters contain an earlier word's merge (``re`` of "red" inside "green")
    may still split into a few pieces; it always tokenizes the same way.

    Vocabulary: the 256 byte symbols, their ``</w>`` (end-of-word) forms, the merges of ``words``, BOS and EOS; any
    other text still tokenizes, byte by byte. Saved with ``save_pretrained`` into ``path``.
    """
    path.mkdir(parents=True, exist_ok=True)
    symbols = _byte_symbols()
    merges: list[str] = []
    for word in words:  # merge each word left to right: "c u", "cu b", "cub e</w>"
        parts = [*word[:-1], word[-1] + "</w>"]
        for part in parts[1:]:
            merge = f"{parts[0]} {part}"
            if merge not in merges:
                merges.append(merge)
            parts[0] += part
    tokens = [*symbols, *(s + "</w>" for s in symbols), *(m.replace(" ", "") for m in merges), BOS, EOS]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    files = {"vocab": str(path / "vocab.json"), "merges": str(path / "merges.txt")}
    tokenizer = CLIPTokenizer(**files, model_max_length=max_length)
    tokenizer.save_pretrained(path)
    return tokenizer
