"""Tiny ColBERT models in the two Hub formats (HF_ColBERT, PyLate), and references that
encode queries and documents the way stanford ColBERT and PyLate do, in torch."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from tests.support.tiny_models import make_served_model

HIDDEN = 32
DIM = 16


def _projection(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.3, (DIM, HIDDEN)).astype(np.float32)


def make_hf_colbert(path: Path, *, attend_to_mask_tokens: bool = False) -> Any:
    """stanford ColBERT's HF_ColBERT: ``bert.*`` and ``linear.weight`` in one checkpoint."""
    encoder = make_served_model("bert", "base", path)
    tensors = load_file(str(path / "model.safetensors"))
    tensors = {f"bert.{name}": value for name, value in tensors.items()}
    tensors["linear.weight"] = _projection(3)
    save_file(tensors, str(path / "model.safetensors"))
    config = json.loads((path / "config.json").read_text())
    config["architectures"] = ["HF_ColBERT"]
    (path / "config.json").write_text(json.dumps(config))
    (path / "artifact.metadata").write_text(
        json.dumps(
            {
                "query_token_id": "[unused0]",
                "doc_token_id": "[unused1]",
                "query_maxlen": 12,
                "doc_maxlen": 20,
                "dim": DIM,
                "mask_punctuation": True,
                "attend_to_mask_tokens": attend_to_mask_tokens,
                "similarity": "cosine",
            }
        )
    )
    return encoder


def make_pylate(
    path: Path, *, attend: bool = False, expansion: bool = True, backbone: str = "bert"
) -> Any:
    """PyLate's format: a Transformer (BERT or ModernBERT) and a pylate.models.Dense module."""
    if backbone == "modernbert":  # GTE-ModernColBERT's family, with MiniLM's tokenizer
        import shutil

        from tei_ort.model.hub import default_model_path
        from tests.support.tiny_decoders import make_modernbert
        from tests.support.tiny_models import MINILM_VOCAB, TOKENIZER_FILES

        encoder = make_modernbert("base", path, vocab=MINILM_VOCAB)
        for name in TOKENIZER_FILES:
            shutil.copy(default_model_path() / name, path / name)
    else:
        encoder = make_served_model(backbone, "base", path)
    (path / "modules.json").write_text(
        json.dumps(
            [
                {
                    "idx": 0,
                    "name": "0",
                    "path": "",
                    "type": "sentence_transformers.models.Transformer",
                },
                {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
            ]
        )
    )
    (path / "config_sentence_transformers.json").write_text(
        json.dumps(
            {
                "query_prefix": "[unused0]",
                "document_prefix": "[unused1]",
                "query_length": 10,
                "document_length": 16,
                "do_query_expansion": expansion,
                "attend_to_expansion_tokens": attend,
                "skiplist_words": list(string.punctuation),
            }
        )
    )
    dense = path / "1_Dense"
    dense.mkdir()
    (dense / "config.json").write_text(
        json.dumps(
            {
                "in_features": HIDDEN,
                "out_features": DIM,
                "bias": False,
                "activation_function": "torch.nn.modules.linear.Identity",
            }
        )
    )
    save_file({"linear.weight": _projection(4)}, str(dense / "model.safetensors"))
    return encoder


def _encode(encoder: Any, weight: np.ndarray, ids: torch.Tensor, mask: torch.Tensor) -> Any:
    with torch.no_grad():
        h = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        return h @ torch.from_numpy(weight).T  # (B, T, D)


def stanford_colbert(
    path: Path, encoder: Any, texts: list[str], *, query: bool
) -> list[np.ndarray]:
    """ColBERT's QueryTokenizer / DocTokenizer and ColBERT.query / .doc, one text at a time."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    meta = json.loads((path / "artifact.metadata").read_text())
    weight = load_file(str(path / "model.safetensors"))["linear.weight"]
    marker = tok.convert_tokens_to_ids(meta["query_token_id" if query else "doc_token_id"])
    skip = {tok.encode(s, add_special_tokens=False)[0] for s in string.punctuation}
    out = []
    for text in texts:
        # ". " is tokenized and its first token replaced by the marker, as ColBERT does
        if query:
            batch = tok(
                [". " + text],
                padding="max_length",
                truncation=True,
                max_length=meta["query_maxlen"],
                return_tensors="pt",
            )
        else:
            batch = tok(
                [". " + text], truncation=True, max_length=meta["doc_maxlen"], return_tensors="pt"
            )
        ids, mask = batch["input_ids"], batch["attention_mask"]
        ids[:, 1] = marker
        if query:
            ids[ids == tok.pad_token_id] = tok.mask_token_id
            if meta["attend_to_mask_tokens"]:
                mask[ids == tok.mask_token_id] = 1
        vectors = _encode(encoder, weight, ids, mask)[0]
        if not query:
            keep = torch.tensor([i not in skip and i != tok.pad_token_id for i in ids[0].tolist()])
            vectors = vectors[keep]
        out.append(torch.nn.functional.normalize(vectors, p=2, dim=-1).numpy())
    return out


def pylate(path: Path, encoder: Any, texts: list[str], *, query: bool) -> list[np.ndarray]:
    """PyLate's ColBERT.tokenize and encode, one text at a time."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    st = json.loads((path / "config_sentence_transformers.json").read_text())
    weight = load_file(str(path / "1_Dense" / "model.safetensors"))["linear.weight"]
    tok.pad_token = tok.mask_token  # PyLate pads with [MASK]
    prefix = tok.convert_tokens_to_ids(st["query_prefix" if query else "document_prefix"])
    skip = set(tok.convert_tokens_to_ids(st["skiplist_words"]))
    length = st["query_length" if query else "document_length"]
    expand = query and st["do_query_expansion"]
    out = []
    for text in texts:
        kwargs: dict[str, Any] = {"padding": "max_length"} if expand else {}
        batch = tok([text], truncation=True, max_length=length - 1, return_tensors="pt", **kwargs)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        ids = torch.cat([ids[:, :1], torch.tensor([[prefix]]), ids[:, 1:]], dim=1)
        mask = torch.cat([mask[:, :1], torch.tensor([[1]]), mask[:, 1:]], dim=1)
        if expand and st["attend_to_expansion_tokens"]:
            mask.fill_(1)
        vectors = _encode(encoder, weight, ids, mask)[0]
        if not query:
            keep = torch.tensor([i not in skip for i in ids[0].tolist()]) & mask[0].bool()
        elif expand:
            keep = torch.ones(ids.shape[1], dtype=torch.bool)
        else:
            keep = mask[0].bool()
        out.append(torch.nn.functional.normalize(vectors[keep], p=2, dim=1).numpy())
    return out
