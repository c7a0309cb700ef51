"""Tiny random transformers models saved as safetensors, the reference for exporter parity.

Seeded, with LayerNorm weights and biases perturbed away from 1/0 so that a wrong
epsilon, a swapped gamma/beta or a skipped norm shows in the outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

VOCAB = 120
MAX_POS = 64


def config_kwargs(model_type: str, num_labels: int, vocab: int = VOCAB) -> dict[str, Any]:
    common: dict[str, Any] = {"vocab_size": vocab, "num_labels": num_labels}
    if model_type == "distilbert":
        return common | {
            "dim": 32,
            "n_layers": 2,
            "n_heads": 4,
            "hidden_dim": 64,
            "max_position_embeddings": MAX_POS,
            "pad_token_id": 0,
        }
    base = common | {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": MAX_POS,
        "layer_norm_eps": 1e-7,
        "hidden_act": "gelu",
    }
    if model_type == "bert":
        return base | {"type_vocab_size": 2, "pad_token_id": 0}
    # RoBERTa family: positions start at pad_token_id + 1
    return base | {"type_vocab_size": 1, "pad_token_id": 1, "max_position_embeddings": MAX_POS + 2}


HEAD_CLASSES = {
    "bert": ("BertConfig", "BertModel", "BertForSequenceClassification", "BertForMaskedLM"),
    "roberta": (
        "RobertaConfig",
        "RobertaModel",
        "RobertaForSequenceClassification",
        "RobertaForMaskedLM",
    ),
    "xlm-roberta": (
        "XLMRobertaConfig",
        "XLMRobertaModel",
        "XLMRobertaForSequenceClassification",
        "XLMRobertaForMaskedLM",
    ),
    "camembert": (
        "CamembertConfig",
        "CamembertModel",
        "CamembertForSequenceClassification",
        "CamembertForMaskedLM",
    ),
    "distilbert": (
        "DistilBertConfig",
        "DistilBertModel",
        "DistilBertForSequenceClassification",
        "DistilBertForMaskedLM",
    ),
}


def make_model(
    model_type: str,
    head: str,
    out_dir: Path,
    num_labels: int = 3,
    seed: int = 0,
    vocab: int = VOCAB,
) -> Any:
    """Build, perturb and save a tiny model; returns the torch module (eval mode)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    config_name, base, classifier, mlm = HEAD_CLASSES[model_type]
    config = getattr(transformers, config_name)(**config_kwargs(model_type, num_labels, vocab))
    cls_name = {"base": base, "classifier": classifier, "splade": mlm}[head]
    model = getattr(transformers, cls_name)(config).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if (
                "LayerNorm" in name
                or "layer_norm" in name
                or name.endswith(("_norm.weight", "_norm.bias"))
            ):
                noise = torch.randn(param.shape, generator=generator) * 0.2
                param.add_(noise)
            elif name.endswith("bias"):
                param.add_(torch.randn(param.shape, generator=generator) * 0.05)
    model.save_pretrained(out_dir)
    return model


def mixed_batch(model_type: str, seed: int = 0) -> dict[str, np.ndarray]:
    """A right-padded batch of four rows with different lengths (one of full length)."""
    rng = np.random.default_rng(seed)
    pad = 1 if model_type in ("roberta", "xlm-roberta", "camembert") else 0
    lengths = [3, 17, 9, 24]
    width = max(lengths)
    ids = np.full((len(lengths), width), pad, dtype=np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(5, VOCAB, n)
        mask[row, :n] = 1
        types[row, n // 2 : n] = 1 if model_type == "bert" else 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


MINILM_VOCAB = 30522
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)


def make_served_model(model_type: str, head: str, out_dir: Path, num_labels: int = 3) -> Any:
    """A tiny model that the loader can serve: MiniLM's tokenizer and a vocabulary to match."""
    import shutil

    from tei_ort.model.hub import default_model_path

    model = make_model(model_type, head, out_dir, num_labels=num_labels, vocab=MINILM_VOCAB)
    for name in TOKENIZER_FILES:
        shutil.copy(default_model_path() / name, out_dir / name)
    return model


def run_graph(
    model: Any, feed: dict[str, np.ndarray], disabled: list[str] | None = None
) -> np.ndarray:
    """The first output of ``model`` (an onnx.ModelProto) on ONNX Runtime's CPU, one thread;
    ``feed`` entries the graph does not take are left out."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(
        model.SerializeToString(),
        opts,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=disabled,
    )
    names = {i.name for i in session.get_inputs()}
    result: np.ndarray = session.run(None, {k: v for k, v in feed.items() if k in names})[0]
    return result
