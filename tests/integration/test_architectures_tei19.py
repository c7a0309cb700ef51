"""The architectures of TEI 1.9.x served end to end: EmbeddingGemma (Gemma3, mean pooling,
then the 2_Dense / 3_Dense modules) and a bidirectional Qwen3 embedder with its projection
layer. Tiny random transformers models with a byte-level BPE tokenizer -> inspect ->
export -> engine cache -> ONNX Runtime -> pooling -> Dense, in process and over HTTP,
against transformers run on each input alone."""

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
from safetensors.numpy import load_file, save_file

import tei_ort
from tei_ort.api import Model
from tei_ort.http.app import create_app
from tei_ort.model.info import Head, ModelKind, Pooling
from tests.support.app import serve, settings
from tests.support.parity import assert_close
from tests.support.tiny_deberta import COMMON, CONFIGS
from tests.support.tiny_decoders import make_decoder, write_bpe_tokenizer
from tests.support.tiny_gemma3 import make_gemma3

POSITIONS = 256
TEXTS = [
    "the quick brown fox",
    "what is the capital of France?",
    "embeddings map sentences to vectors; similar meanings land close together",
    "yes",
]
# EmbeddingGemma's Dense modules: 768 -> 3072 -> 768, no bias, identity
DENSE = [(64, 80), (80, 48)]
PROJECTED = 40


@dataclass
class Served:
    name: str
    model: Model
    reference: Any  # text -> (pooled vector, token vectors), as transformers computes them
    width: int


def _modules(model_dir: Path, dense: list[tuple[int, int]]) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    for i, _ in enumerate(dense):
        folder = f"{i + 2}_Dense"
        modules.append(
            {
                "idx": i + 2,
                "name": str(i + 2),
                "path": folder,
                "type": "sentence_transformers.models.Dense",
            }
        )
    (model_dir / "modules.json").write_text(json.dumps(modules))
    (model_dir / "1_Pooling").mkdir()
    (model_dir / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True})
    )


def _dense_weights(model_dir: Path, rng: np.random.Generator) -> list[np.ndarray]:
    weights = []
    for i, (n_in, n_out) in enumerate(DENSE):
        folder = model_dir / f"{i + 2}_Dense"
        folder.mkdir()
        w = (rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)).astype(np.float32)
        save_file({"linear.weight": w}, str(folder / "model.safetensors"))
        config = {
            "in_features": n_in,
            "out_features": n_out,
            "bias": False,
            "activation_function": "torch.nn.modules.linear.Identity",
        }
        (folder / "config.json").write_text(json.dumps(config))
        weights.append(w)
    return weights


def _hidden(module: Any, ids: list[int], bidirectional_qwen: bool) -> np.ndarray:
    torch.set_num_threads(1)
    with torch.no_grad():
        tensor = torch.tensor([ids])
        if bidirectional_qwen:
            mask = {"full_attention": torch.zeros(1, 1, len(ids), len(ids))}
            return module(input_ids=tensor, attention_mask=mask).last_hidden_state[0].numpy()
        return module(input_ids=tensor).last_hidden_state[0].numpy()


def _build(name: str, model_dir: Path) -> tuple[Any, int]:
    vocab = write_bpe_tokenizer(model_dir)
    tok = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    rng = np.random.default_rng(7)
    if name == "embeddinggemma":
        ref = make_gemma3(model_dir, vocab=vocab, max_position_embeddings=POSITIONS)
        _modules(model_dir, DENSE)
        dense = _dense_weights(model_dir, rng)

        def gemma(text: str) -> tuple[np.ndarray, np.ndarray]:
            tokens = _hidden(ref, tok.encode(text).ids, False)
            pooled = tokens.mean(0)
            for w in dense:
                pooled = pooled @ w.T
            return pooled, tokens

        return gemma, DENSE[-1][1]
    ref = make_decoder(
        "qwen3",
        "base",
        model_dir,
        vocab=vocab,
        max_position_embeddings=POSITIONS,
        use_bidirectional_attention=True,
        pad_token_id=None,
    )
    projection = (0.2 * rng.standard_normal((PROJECTED, 64))).astype(np.float32)
    weights = load_file(str(model_dir / "model.safetensors"))
    save_file(weights | {"linear.weight": projection}, str(model_dir / "model.safetensors"))
    _modules(model_dir, [])

    def qwen(text: str) -> tuple[np.ndarray, np.ndarray]:
        tokens = _hidden(ref, tok.encode(text).ids, True) @ projection.T
        return tokens.mean(0), tokens

    return qwen, PROJECTED


@pytest.fixture(scope="module", params=["embeddinggemma", "qwen3-bidirectional"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    name: str = request.param
    model_dir = tmp_path_factory.mktemp(f"model-{name}")
    reference, width = _build(name, model_dir)
    cache = tmp_path_factory.mktemp(f"engines-{name}")
    model = tei_ort.load(str(model_dir), engine_cache=str(cache), threads=1)
    assert model.loaded.built
    yield Served(name, model, reference, width)
    model.close()


def _reference(s: Served) -> tuple[np.ndarray, list[np.ndarray]]:
    pairs = [s.reference(text) for text in TEXTS]
    return np.stack([p[0] for p in pairs]), [p[1] for p in pairs]


def test_inspection(served: Served) -> None:
    info = served.model.info
    assert (info.kind, info.head, info.pooling) == (ModelKind.EMBEDDING, Head.BASE, Pooling.MEAN)
    assert served.model.dimensions == served.width


def test_in_process(served: Served) -> None:
    pooled, tokens = _reference(served)
    assert_close(served.model.embed(TEXTS, normalize=False), pooled)
    ours = served.model.embed_all(TEXTS)
    assert_close(np.concatenate(ours), np.concatenate(tokens))


@pytest.mark.anyio
async def test_http(served: Served) -> None:
    pooled, tokens = _reference(served)
    async with serve(create_app(settings(), served.model.loaded)) as client:
        response = await client.post("/embed", json={"inputs": TEXTS, "normalize": False})
        assert response.status_code == 200
        assert_close(np.asarray(response.json(), np.float32), pooled)
        response = await client.post("/embed_all", json={"inputs": TEXTS})
        assert response.status_code == 200
        rows = [np.asarray(r, np.float32) for r in response.json()]
        assert_close(np.concatenate(rows), np.concatenate(tokens))
        response = await client.post("/predict", json={"inputs": TEXTS[0]})
        assert response.status_code == 424  # an embedder has no classifier head


# --- DeBERTa-v2: a re-ranker, a 3-label classifier (NLI) and an embedder -------------------

QUERY = "what is the capital of France?"
DOCUMENTS = ["Paris is the capital and largest city of France.", "the lazy dog", "vectors"]


@dataclass
class ServedDeberta:
    name: str
    model: Model
    reference: Any  # the transformers module
    tokenizer: tokenizers.Tokenizer


def _pair_tokenizer(model_dir: Path) -> tokenizers.Tokenizer:
    """The BPE tokenizer with a [CLS] a [SEP] b [SEP] template and segment ids."""
    from tokenizers.processors import TemplateProcessing

    tok = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    cls, sep = "<|im_start|>", "<|im_end|>"
    tok.post_processor = TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))],
    )
    tok.save(str(model_dir / "tokenizer.json"))
    return tok


@pytest.fixture(scope="module", params=["deberta-reranker", "deberta-nli", "deberta-embedder"])
def deberta(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedDeberta]:
    import transformers

    name: str = request.param
    model_dir = tmp_path_factory.mktemp(f"model-{name}")
    vocab = write_bpe_tokenizer(model_dir)
    tok = _pair_tokenizer(model_dir)
    kind = "v2-conv" if name == "deberta-nli" else "v3"
    kwargs = COMMON | CONFIGS[kind] | {"vocab_size": vocab, "max_position_embeddings": POSITIONS}
    torch.manual_seed(0)
    if name == "deberta-embedder":
        ref = transformers.DebertaV2Model(transformers.DebertaV2Config(**kwargs)).eval()
        _modules(model_dir, [])
    else:
        kwargs["num_labels"] = 1 if name == "deberta-reranker" else 3
        config = transformers.DebertaV2Config(**kwargs)
        ref = transformers.DebertaV2ForSequenceClassification(config).eval()
    ref.save_pretrained(model_dir)
    cache = tmp_path_factory.mktemp(f"engines-{name}")
    model = tei_ort.load(str(model_dir), engine_cache=str(cache), threads=1)
    yield ServedDeberta(name, model, ref, tok)
    model.close()


def _deberta_run(s: ServedDeberta, first: str, second: str | None = None) -> Any:
    encoding = s.tokenizer.encode(first, second)
    torch.set_num_threads(1)
    with torch.no_grad():
        return s.reference(
            input_ids=torch.tensor([encoding.ids]),
            token_type_ids=torch.tensor([encoding.type_ids]),
        )


def test_deberta_inspection(deberta: ServedDeberta) -> None:
    info = deberta.model.info
    expected = {
        "deberta-reranker": (ModelKind.RERANKER, Head.CLASSIFIER),
        "deberta-nli": (ModelKind.CLASSIFIER, Head.CLASSIFIER),
        "deberta-embedder": (ModelKind.EMBEDDING, Head.BASE),
    }[deberta.name]
    assert (info.kind, info.head) == expected


@pytest.mark.anyio
async def test_deberta_http(deberta: ServedDeberta) -> None:
    async with serve(create_app(settings(), deberta.model.loaded)) as client:
        if deberta.name == "deberta-embedder":
            pooled = np.stack(
                [_deberta_run(deberta, t).last_hidden_state[0].numpy().mean(0) for t in TEXTS]
            )
            response = await client.post("/embed", json={"inputs": TEXTS, "normalize": False})
            assert response.status_code == 200
            assert_close(np.asarray(response.json(), np.float32), pooled)
            tokens = [_deberta_run(deberta, t).last_hidden_state[0].numpy() for t in TEXTS]
            response = await client.post("/embed_all", json={"inputs": TEXTS})
            rows = [np.asarray(r, np.float32) for r in response.json()]
            assert_close(np.concatenate(rows), np.concatenate(tokens))
            return
        if deberta.name == "deberta-reranker":
            logits = [float(_deberta_run(deberta, QUERY, d).logits[0, 0]) for d in DOCUMENTS]
            expected = 1 / (1 + np.exp(-np.asarray(logits)))
            response = await client.post("/rerank", json={"query": QUERY, "texts": DOCUMENTS})
            assert response.status_code == 200
            scores = np.zeros(len(DOCUMENTS))
            for item in response.json():
                scores[item["index"]] = item["score"]
            np.testing.assert_allclose(scores, expected, atol=1e-5)
            return
        pairs = [[QUERY, d] for d in DOCUMENTS]
        logits = np.stack([_deberta_run(deberta, QUERY, d).logits[0].numpy() for d in DOCUMENTS])
        response = await client.post("/predict", json={"inputs": pairs, "raw_scores": True})
        assert response.status_code == 200
        ours = np.asarray(
            [
                [item["score"] for item in sorted(row, key=lambda x: x["label"])]
                for row in response.json()
            ],
            np.float32,
        )
        assert_close(ours, logits)


# --- pplx-embed (bidirectional_pplx_qwen3): mean pooling, then round(127 * tanh(v)) ---------


@pytest.fixture(scope="module")
def pplx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Model, Any]]:
    model_dir = tmp_path_factory.mktemp("model-pplx")
    vocab = write_bpe_tokenizer(model_dir)
    ref = make_decoder(
        "qwen3",
        "base",
        model_dir,
        vocab=vocab,
        max_position_embeddings=POSITIONS,
        use_bidirectional_attention=True,
        pad_token_id=None,
    )
    config = json.loads((model_dir / "config.json").read_text())
    config["model_type"] = "bidirectional_pplx_qwen3"
    (model_dir / "config.json").write_text(json.dumps(config))
    _modules(model_dir, [])
    cache = tmp_path_factory.mktemp("engines-pplx")
    model = tei_ort.load(str(model_dir), engine_cache=str(cache), threads=1)
    yield model, ref
    model.close()


def _assert_quantized(ours: np.ndarray, mean: np.ndarray) -> None:
    """Equal to round(127 tanh(mean)), except where the reference sits within 1e-3 of a
    rounding boundary (float32 noise may round either way there)."""
    scaled = 127.0 * np.tanh(mean.astype(np.float64))
    expected = np.round(scaled)
    near_half = np.abs(np.abs(scaled - np.floor(scaled)) - 0.5) < 1e-3
    assert np.all(ours == np.round(ours))  # integers in [-127, 127]
    assert np.abs(ours).max() <= 127
    assert np.all((ours == expected) | (near_half & (np.abs(ours - expected) <= 1)))
    assert (ours != 0).mean() > 0.5  # the scale is applied, not a vector of zeros


@pytest.mark.anyio
async def test_pplx_embeddings_are_quantized(pplx: tuple[Model, Any]) -> None:
    model, ref = pplx
    tok = tokenizers.Tokenizer.from_file(str(model.info.path / "tokenizer.json"))
    mean = np.stack([_hidden(ref, tok.encode(t).ids, True).mean(0) for t in TEXTS])
    _assert_quantized(model.embed(TEXTS, normalize=False), mean)
    async with serve(create_app(settings(), model.loaded)) as client:
        response = await client.post("/embed", json={"inputs": TEXTS, "normalize": False})
        assert response.status_code == 200
        _assert_quantized(np.asarray(response.json(), np.float32), mean)
        normalized = await client.post("/embed", json={"inputs": TEXTS})
    vectors = np.asarray(normalized.json())
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=-1), 1.0, atol=1e-5)
