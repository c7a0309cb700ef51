"""Tiny random decoder (and ModernBERT) models saved as safetensors, for exporter parity.

Seeded; every RMSNorm / LayerNorm weight (and bias) is perturbed away from 1 (0) so a
skipped or misplaced norm shows. Configs are small but keep what matters: grouped-query
attention (4 query heads over 2 key/value heads), a head_dim that differs from
hidden / heads (Qwen3), sliding windows shorter than the test sequences.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

VOCAB = 128
MAX_POS = 64
WINDOW = 6  # shorter than the longer rows of decoder_batch()

DECODER_CLASSES: dict[str, tuple[str, str, str, str]] = {
    # model_type: (config, base model, sequence classifier, causal LM)
    "qwen2": ("Qwen2Config", "Qwen2Model", "Qwen2ForSequenceClassification", "Qwen2ForCausalLM"),
    "qwen3": ("Qwen3Config", "Qwen3Model", "Qwen3ForSequenceClassification", "Qwen3ForCausalLM"),
    "mistral": (
        "MistralConfig",
        "MistralModel",
        "MistralForSequenceClassification",
        "MistralForCausalLM",
    ),
    "llama": ("LlamaConfig", "LlamaModel", "LlamaForSequenceClassification", "LlamaForCausalLM"),
}


def decoder_config_kwargs(model_type: str, vocab: int = VOCAB, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "vocab_size": vocab,
        "hidden_size": 64,  # head_dim 16: ORT's fused rotary needs a multiple of 16
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": MAX_POS,
        "rms_norm_eps": 1e-5,
        "hidden_act": "silu",
        "pad_token_id": 0,
        "tie_word_embeddings": False,
        "initializer_range": 0.1,  # peaked attention, so positions and masks show
    }
    if model_type == "qwen3":
        base |= {"head_dim": 32, "rope_theta": 1000000.0}  # 4 x 32 != 64
    if model_type == "qwen2":
        base |= {"rope_theta": 1000000.0}
    if model_type == "mistral":
        base |= {"sliding_window": WINDOW}
    if model_type == "llama":
        base |= {"attention_bias": True, "mlp_bias": True}
    return base | extra


def _perturb(model: Any, seed: int) -> None:
    import torch

    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.add_(torch.randn(param.shape, generator=generator) * 0.2)
            elif name.endswith("bias"):
                param.add_(torch.randn(param.shape, generator=generator) * 0.05)


def make_decoder(
    model_type: str,
    head: str,
    out_dir: Path,
    *,
    seed: int = 0,
    vocab: int = VOCAB,
    num_labels: int = 1,
    torch_dtype: str | None = None,
    **extra: Any,
) -> Any:
    """Build, perturb and save a tiny decoder; head is base, classifier or causal_lm."""
    import torch
    import transformers

    torch.manual_seed(seed)
    config_name, base, classifier, causal = DECODER_CLASSES[model_type]
    kwargs = decoder_config_kwargs(model_type, vocab, **extra)
    if head == "classifier":
        kwargs["num_labels"] = num_labels
    config = getattr(transformers, config_name)(**kwargs)
    config._attn_implementation = "eager"
    cls_name = {"base": base, "classifier": classifier, "causal_lm": causal}[head]
    model = getattr(transformers, cls_name)(config).eval()
    _perturb(model, seed)
    if torch_dtype is not None:
        # save in bf16/fp16, and compare against the same rounded weights in float32
        model.to(getattr(torch, torch_dtype)).save_pretrained(out_dir)
        # reload in float32: the same rounded weights, and rotary buffers never rounded
        cls = getattr(transformers, cls_name)
        model = cls.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager")
        model.eval()
    else:
        model.save_pretrained(out_dir)
    return model


MODERNBERT_CLASSES = {
    "base": "ModernBertModel",
    "classifier": "ModernBertForSequenceClassification",
}


def modernbert_config_kwargs(vocab: int = VOCAB, **extra: Any) -> dict[str, Any]:
    return {
        "vocab_size": vocab,
        "hidden_size": 32,
        "intermediate_size": 40,
        "num_hidden_layers": 4,  # layers 0 and 3 global, 1 and 2 local
        "num_attention_heads": 4,
        "max_position_embeddings": MAX_POS,
        "global_attn_every_n_layers": 3,
        "initializer_range": 0.2,  # peaked attention, so positions and masks show
        "local_attention": WINDOW,  # each token sees 3 on either side
        "global_rope_theta": 160000.0,
        "local_rope_theta": 10000.0,
        "norm_eps": 1e-5,
        "hidden_activation": "gelu",
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "cls_token_id": 1,
        "sep_token_id": 2,
    } | extra


def make_modernbert(
    head: str, out_dir: Path, *, seed: int = 0, vocab: int = VOCAB, **extra: Any
) -> Any:
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.ModernBertConfig(**modernbert_config_kwargs(vocab, **extra))
    config._attn_implementation = "eager"
    model = getattr(transformers, MODERNBERT_CLASSES[head])(config).eval()
    _perturb(model, seed)
    model.save_pretrained(out_dir)
    return model


def decoder_batch(seed: int = 0, vocab: int = VOCAB) -> dict[str, np.ndarray]:
    """A right-padded batch of four rows, lengths 3 to 24 (longer than WINDOW)."""
    rng = np.random.default_rng(seed)
    lengths = [3, 17, 9, 24]
    width = max(lengths)
    ids = np.zeros((len(lengths), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(3, vocab, n)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask}


CHAT_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_CORPUS = [
    "yes",
    "no",
    "yes no yes no",
    "Judge whether the Document meets the requirements based on the Query and the Instruct",
    "Given a web search query, retrieve relevant passages that answer the query",
    "<Instruct>: <Query>: <Document>: system user assistant <think> </think>",
    "the quick brown fox jumps over the lazy dog",
    "what is the capital of France? Paris is the capital and largest city of France.",
    "embeddings map sentences to vectors; similar meanings land close together",
]


def write_bpe_tokenizer(out_dir: Path, vocab_size: int = 400) -> int:
    """A byte-level BPE tokenizer (Qwen-like, no special tokens added on encode) with the
    chat tokens of the Qwen3-Reranker template and single tokens "yes" and "no".
    Returns its vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(CHAT_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS * 20, trainer)
    assert tokenizer.token_to_id("yes") is not None and tokenizer.token_to_id("no") is not None
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    size: int = tokenizer.get_vocab_size(with_added_tokens=True)
    return size
