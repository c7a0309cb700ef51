"""A tiny BGE-M3 (XLM-R encoder, head files saved by torch) and FlagEmbedding's M3 formulas
in torch, the reference for its three heads."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tests.support.tiny_models import make_served_model

TEXTS = ["what is late interaction?", "BGE-M3 has three heads, one pass", "hi"]
HIDDEN = 32


def make_bge_m3(path: Path) -> tuple[torch.nn.Module, torch.nn.Linear, torch.nn.Linear]:
    """A tiny XLM-R encoder with BGE-M3's head files, saved by torch as FlagEmbedding does."""
    encoder = make_served_model("xlm-roberta", "base", path)
    torch.manual_seed(7)
    colbert = torch.nn.Linear(HIDDEN, HIDDEN)
    sparse = torch.nn.Linear(HIDDEN, 1)
    with torch.no_grad():
        sparse.bias.fill_(0.05)  # some weights > 0, some cut by the ReLU
    torch.save(colbert.state_dict(), path / "colbert_linear.pt")
    torch.save(sparse.state_dict(), path / "sparse_linear.pt")
    (path / "1_Pooling").mkdir()
    (path / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": HIDDEN, "pooling_mode_cls_token": True})
    )
    return encoder, colbert, sparse


def flag_reference(
    path: Path,
    encoder: torch.nn.Module,
    colbert: torch.nn.Linear,
    sparse: torch.nn.Linear,
    texts: list[str],
) -> list[dict[str, object]]:
    """FlagEmbedding's M3 inference formulas (dense CLS normalized, sparse max per id with
    cls/eos/pad/unk removed, colbert after CLS normalized), one text at a time."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    unused = {
        tokenizer.convert_tokens_to_ids(tokenizer.special_tokens_map[name])
        for name in ("cls_token", "eos_token", "pad_token", "unk_token")
        if name in tokenizer.special_tokens_map
    }
    out = []
    for text in texts:
        batch = tokenizer([text], return_tensors="pt")
        with torch.no_grad():
            h = encoder(  # type: ignore[operator]
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).last_hidden_state
            dense = torch.nn.functional.normalize(h[:, 0], dim=-1)[0].numpy()
            weights = torch.relu(sparse(h))[0, :, 0].numpy()
            vecs = torch.nn.functional.normalize(colbert(h[:, 1:]), dim=-1)[0].numpy()
        lexical: dict[int, float] = {}
        for w, idx in zip(weights.tolist(), batch["input_ids"][0].tolist(), strict=True):
            if idx not in unused and w > 0 and w > lexical.get(idx, 0.0):
                lexical[idx] = w
        out.append({"dense": dense, "sparse": lexical, "colbert": vecs})
    return out
