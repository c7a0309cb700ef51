"""Qwen2, Qwen3, Mistral, Llama embedders, ModernBERT (embedder and re-ranker) and a
Qwen3-Reranker served end to end: tiny random transformers models with a byte-level BPE
tokenizer -> inspect -> export -> engine cache -> ONNX Runtime -> pooling / scores, in
process and over HTTP, against transformers run on each input alone (unpadded)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tokenizers
import torch

import tei_ort
from tei_ort.api import Model
from tei_ort.http.app import create_app
from tei_ort.model.info import Head, ModelKind, Pooling
from tests.support.app import serve, settings
from tests.support.qwen3_reranker import model_card_prompt
from tests.support.tiny_decoders import make_decoder, make_modernbert, write_bpe_tokenizer

ATOL = 1e-4
MIN_COSINE = 0.99999
POSITIONS = 256  # room for the re-ranker's chat template
TEXTS = [
    "the quick brown fox",
    "what is the capital of France?",
    "embeddings map sentences to vectors; similar meanings land close together",
    "yes",
]
QUERY = "what is the capital of France?"
DOCUMENTS = [
    "Paris is the capital and largest city of France.",
    "the lazy dog",
    "vectors",
]
EMBEDDERS = {
    "qwen2": Pooling.LAST_TOKEN,
    "qwen3": Pooling.LAST_TOKEN,
    "mistral": Pooling.LAST_TOKEN,
    "llama": Pooling.LAST_TOKEN,
    "modernbert": Pooling.MEAN,
}


@dataclass
class Served:
    name: str
    model: Model
    reference: Any  # the transformers module
    tokenizer: tokenizers.Tokenizer


def _write_pooling(model_dir: Path, pooling: Pooling) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    (model_dir / "modules.json").write_text(json.dumps(modules))
    (model_dir / "1_Pooling").mkdir()
    modes = {
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": pooling is Pooling.MEAN,
        "pooling_mode_lasttoken": pooling is Pooling.LAST_TOKEN,
    }
    (model_dir / "1_Pooling" / "config.json").write_text(json.dumps(modes))


def _build(name: str, root: Path) -> tuple[Path, Any]:
    model_dir = root / name
    vocab = write_bpe_tokenizer(model_dir)
    if name in EMBEDDERS and name != "modernbert":
        ref = make_decoder(name, "base", model_dir, vocab=vocab, max_position_embeddings=POSITIONS)
        _write_pooling(model_dir, EMBEDDERS[name])
    elif name == "modernbert":
        ref = make_modernbert("base", model_dir, vocab=vocab, max_position_embeddings=POSITIONS)
        _write_pooling(model_dir, EMBEDDERS[name])
    elif name == "modernbert-reranker":
        ref = make_modernbert(
            "classifier", model_dir, vocab=vocab, max_position_embeddings=POSITIONS, num_labels=1
        )
    else:  # Qwen3-Reranker: a causal LM, recognised by its name
        ref = make_decoder(
            "qwen3",
            "causal_lm",
            model_dir,
            vocab=vocab,
            max_position_embeddings=POSITIONS,
            tie_word_embeddings=True,
        )
    return model_dir, ref


@pytest.fixture(
    scope="module",
    params=[*EMBEDDERS, "modernbert-reranker", "Qwen3-Reranker-tiny"],
)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    name: str = request.param
    root = tmp_path_factory.mktemp(f"model-{name}")
    model_dir, ref = _build(name, root)
    cache = tmp_path_factory.mktemp(f"engines-{name}")
    model = tei_ort.load(str(model_dir), engine_cache=str(cache), threads=1)
    assert model.loaded.built
    tok = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    yield Served(name, model, ref, tok)
    model.close()


def _assert_close(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= ATOL
    cos = (ours * ref).sum(-1) / (np.linalg.norm(ours, axis=-1) * np.linalg.norm(ref, axis=-1))
    assert cos.min() >= MIN_COSINE


def _run_alone(module: Any, ids: list[int]) -> Any:
    torch.set_num_threads(1)
    with torch.no_grad():
        return module(input_ids=torch.tensor([ids]))


def _reference_embeddings(s: Served) -> np.ndarray:
    rows = []
    for text in TEXTS:
        hidden = _run_alone(s.reference, s.tokenizer.encode(text).ids).last_hidden_state[0]
        pooled = hidden[-1] if EMBEDDERS[s.name] is Pooling.LAST_TOKEN else hidden.mean(0)
        rows.append(pooled.numpy())
    return np.stack(rows)


def _reference_scores(s: Served) -> np.ndarray:
    scores = []
    for doc in DOCUMENTS:
        if s.name == "modernbert-reranker":
            logit = _run_alone(s.reference, s.tokenizer.encode(QUERY, doc).ids).logits[0, 0]
            scores.append(float(torch.sigmoid(logit)))
            continue
        prompt = model_card_prompt(QUERY, doc)
        ids = s.tokenizer.encode(prompt, add_special_tokens=False).ids
        last = _run_alone(s.reference, ids).logits[0, -1]
        yes, no = s.model.info.yes_no_token_ids or (-1, -1)
        scores.append(float(torch.softmax(last[[no, yes]], dim=-1)[1]))
    return np.asarray(scores, dtype=np.float32)


def test_inspection(served: Served) -> None:
    info = served.model.info
    if served.name in EMBEDDERS:
        assert (info.kind, info.head, info.pooling) == (
            ModelKind.EMBEDDING,
            Head.BASE,
            EMBEDDERS[served.name],
        )
    elif served.name == "modernbert-reranker":
        assert (info.kind, info.head) == (ModelKind.RERANKER, Head.CLASSIFIER)
    else:
        assert (info.kind, info.head, info.rerank_template) == (
            ModelKind.RERANKER,
            Head.YES_NO_LOGIT,
            "qwen3",
        )
        assert info.yes_no_token_ids == (
            served.tokenizer.token_to_id("yes"),
            served.tokenizer.token_to_id("no"),
        )


def test_in_process_matches_transformers(served: Served) -> None:
    if served.name in EMBEDDERS:
        ours = served.model.embed(TEXTS, normalize=False)
        _assert_close(ours, _reference_embeddings(served))
        return
    ranked = served.model.rerank(QUERY, DOCUMENTS)
    scores = np.zeros(len(DOCUMENTS), np.float32)
    for index, score in ranked:
        scores[index] = score
    np.testing.assert_allclose(scores, _reference_scores(served), atol=1e-5)
    assert [i for i, _ in ranked] == list(np.argsort(-scores, kind="stable"))


@pytest.mark.anyio
async def test_http_matches_transformers(served: Served) -> None:
    async with serve(create_app(settings(), served.model.loaded)) as client:
        if served.name in EMBEDDERS:
            response = await client.post("/embed", json={"inputs": TEXTS, "normalize": False})
            assert response.status_code == 200
            _assert_close(np.asarray(response.json(), np.float32), _reference_embeddings(served))
            return
        response = await client.post("/rerank", json={"query": QUERY, "texts": DOCUMENTS})
    assert response.status_code == 200
    scores = np.zeros(len(DOCUMENTS), np.float32)
    for item in response.json():
        scores[item["index"]] = item["score"]
    np.testing.assert_allclose(scores, _reference_scores(served), atol=1e-5)
