"""The benchmark's text sets, built the same way on every machine from bench/corpus.txt.

Sets: ``short`` single sentences (~16 tokens), ``t128`` and ``t512`` sentences joined up to
about 128 / 512 word-piece tokens (the model's input limit truncates the latter: 256 for
all-MiniLM-L6-v2, in every method), and ``mix`` a realistic spread: 60% short, 25%
medium (~64), 10% ~128, 5% long.
"""

from __future__ import annotations

import random
from pathlib import Path

from tokenizers import Tokenizer

CORPUS = Path(__file__).with_name("corpus.txt")
SIZES = {"short": 512, "t128": 128, "t512": 32, "mix": 256}


def _sentences() -> list[str]:
    return [s for s in CORPUS.read_text(encoding="utf-8").splitlines() if s.strip()]


def _joined(rng: random.Random, sentences: list[str], tok: Tokenizer, tokens: int) -> str:
    """Random sentences appended until the text reaches ``tokens`` tokens (with specials)."""
    parts: list[str] = []
    while True:
        parts.append(rng.choice(sentences))
        text = " ".join(parts)
        if len(tok.encode(text).ids) >= tokens:
            return text


def text_sets(tokenizer_json: Path, seed: int = 0) -> dict[str, list[str]]:
    """Every set, deterministic for a given corpus and tokenizer."""
    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.no_truncation()
    tok.no_padding()
    sentences = _sentences()
    rng = random.Random(seed)
    sets = {
        "short": [rng.choice(sentences) for _ in range(SIZES["short"])],
        "t128": [_joined(rng, sentences, tok, 128) for _ in range(SIZES["t128"])],
        "t512": [_joined(rng, sentences, tok, 512) for _ in range(SIZES["t512"])],
    }
    mix: list[str] = []
    for _ in range(SIZES["mix"]):
        r = rng.random()
        if r < 0.60:
            mix.append(rng.choice(sentences))
        else:
            target = 64 if r < 0.85 else 128 if r < 0.95 else 512
            mix.append(_joined(rng, sentences, tok, target))
    sets["mix"] = mix
    return sets


def token_counts(tokenizer_json: Path, texts: list[str], max_length: int) -> list[int]:
    """Tokens each text becomes after truncation to ``max_length`` (what the engines see)."""
    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.no_padding()
    tok.enable_truncation(max_length)
    return [len(e.ids) for e in tok.encode_batch(texts)]
