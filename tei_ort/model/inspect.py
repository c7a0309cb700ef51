"""Model inspection: read a model directory's JSON files into a ModelInfo, as TEI 1.9 does.

No weights are loaded. The rules follow TEI's router (``get_backend_model_type`` and ``run``
in router/src/lib.rs) and its backend's Dense handling; where tei-ort reads more than TEI
(pooling module path from modules.json, default_prompt_name, sentence-transformers 6 module
type names) it is a superset that gives the same answer on every model TEI accepts.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, TypeVar

from tei_ort.errors import ModelError, UnsupportedModelError
from tei_ort.exporters.export import family_of
from tei_ort.model.hub import ResolvedModel
from tei_ort.model.info import DenseLayer, Head, ModelInfo, ModelKind, Pooling
from tei_ort.model.late_config import LateFormat, read_late_interaction
from tei_ort.model.rerank_templates import QWEN3, is_qwen3_reranker, yes_no_token_ids

__all__ = ["inspect_model"]

T = TypeVar("T")

logger = logging.getLogger(__name__)

# sentence-transformers' own config for the Transformer module; old releases named it
# after the architecture. TEI tries these in this order (core/src/download.rs).
ST_CONFIG_NAMES: tuple[str, ...] = (
    "sentence_bert_config.json",
    "sentence_roberta_config.json",
    "sentence_distilbert_config.json",
    "sentence_camembert_config.json",
    "sentence_albert_config.json",
    "sentence_xlm-roberta_config.json",
    "sentence_xlnet_config.json",
)
# Models whose position ids start after the padding index (fairseq heritage). TEI lists
# the first three; MPNet counts positions the same way, and without the offset its longest
# input would index past the position table.
POSITION_OFFSET_MODEL_TYPES = frozenset({"roberta", "xlm-roberta", "camembert", "mpnet"})
DEFAULT_POOLING_DIR = "1_Pooling"
# sentence-transformers' Dense default when a config leaves the activation out.
DEFAULT_DENSE_ACTIVATION = "torch.nn.modules.activation.Tanh"


def inspect_model(
    resolved: ResolvedModel,
    *,
    pooling: Pooling | None = None,
    dense_path: str | None = None,
) -> ModelInfo:
    """Read ``resolved.path`` and decide kind, head, pooling, limits, prompts and weights.

    ``pooling`` is ``--pooling``; ``dense_path`` is ``--dense-path`` (a folder relative to
    the model directory). Raises ModelError (or UnsupportedModelError) naming the file or
    the rule that failed.
    """
    root = resolved.path
    config_path = root / "config.json"
    config = _read_json_object(config_path)
    if config is None:
        raise ModelError(f"`config.json` not found in {root}")

    model_type = _get(config, "model_type", str, config_path)
    if model_type is None:
        raise ModelError(f"{config_path} has no `model_type`")
    model_type = model_type.lower()
    architectures = tuple(_get(config, "architectures", list, config_path) or ())
    if not all(isinstance(arch, str) for arch in architectures):
        raise ModelError(f"{config_path}: `architectures` must be a list of strings")

    modules = _read_modules(root)
    yes_no: tuple[int, int] | None = None
    template: str | None = None
    if is_qwen3_reranker(architectures, config, (resolved.model_id, root.name)):
        # a causal LM scored as P("yes"): a re-ranker whatever --pooling says
        if pooling is not None:
            logger.warning("`--pooling` is set but the model is a re-ranker: ignoring it")
        kind, head, chosen_pooling = ModelKind.RERANKER, Head.YES_NO_LOGIT, None
        yes_no, template = yes_no_token_ids(root), QWEN3
    else:
        kind, head, chosen_pooling = _kind_head_pooling(
            root, config, model_type, architectures, modules, pooling
        )
    late = read_late_interaction(root, config, modules) if head is Head.BASE else None
    if late is not None and late.format is not LateFormat.BGE_M3:
        # ColBERT: the graph keeps query-expansion [MASK]s out of attention (and an
        # HF_ColBERT checkpoint's `linear` projection out of the encoder)
        head = Head.LATE
    # an architecture or head we cannot build is refused now, before any weight is hashed
    family_of(config, head)
    prompts, default_prompt_name = _read_prompts(root)
    weight_files = _weight_files(root)

    return ModelInfo(
        model_id=resolved.model_id,
        path=root,
        revision=resolved.revision,
        config=config,
        model_type=model_type,
        architectures=architectures,
        kind=kind,
        head=head,
        pooling=chosen_pooling,
        # a yes/no re-ranker has one score: P("yes")
        id2label={0: "yes"}
        if head is Head.YES_NO_LOGIT
        else _id2label(config, config_path, classifier=head is Head.CLASSIFIER),
        max_input_length=_max_input_length(root, config, model_type),
        prompts=prompts,
        default_prompt_name=default_prompt_name,
        # A classifier's score comes straight from its head: Dense modules never apply.
        dense_layers=()
        if head in (Head.CLASSIFIER, Head.YES_NO_LOGIT)
        else _dense_layers(root, modules, dense_path),
        hidden_size=_projection_width(model_type, weight_files)
        or _hidden_size(config, config_path),
        uses_token_type_ids=_uses_token_type_ids(config, model_type, config_path),
        weight_files=weight_files,
        yes_no_token_ids=yes_no,
        rerank_template=template,
        late_interaction=late,
    )


# --- kind, head and pooling ------------------------------------------------------------


def _kind_head_pooling(
    root: Path,
    config: dict[str, Any],
    model_type: str,
    architectures: tuple[str, ...],
    modules: list[dict[str, Any]],
    pooling: Pooling | None,
) -> tuple[ModelKind, Head, Pooling | None]:
    # TEI walks the architectures in order and the first that decides wins.
    for arch in architectures:
        if pooling is Pooling.SPLADE and arch.endswith("ForMaskedLM"):
            return ModelKind.EMBEDDING, Head.SPLADE, Pooling.SPLADE
        if arch.endswith("ForSequenceClassification"):
            if pooling is not None:
                # TEI warns and goes on; it does not refuse to start.
                logger.warning(
                    "`--pooling` is set but the model is a classifier: ignoring `--pooling`"
                )
            n_labels = len(_id2label(config, root / "config.json", classifier=True))
            kind = ModelKind.RERANKER if n_labels == 1 else ModelKind.CLASSIFIER
            return kind, Head.CLASSIFIER, None

    if pooling is Pooling.SPLADE:
        raise UnsupportedModelError(
            "Splade pooling is not supported: model is not a ForMaskedLM model "
            f"(architectures: {list(architectures)})"
        )
    # Everything else, *ForMaskedLM included, is served as an embedding model on the
    # bare encoder (TEI loads the base model and drops the LM head).
    chosen = pooling if pooling is not None else _pooling_from_files(root, model_type, modules)
    return ModelKind.EMBEDDING, Head.BASE, chosen


def _pooling_from_files(root: Path, model_type: str, modules: list[dict[str, Any]]) -> Pooling:
    folder = next(
        (m["path"] for m in modules if _is_st_module(m, "Pooling") and m["path"]),
        DEFAULT_POOLING_DIR,
    )
    path = root / folder / "config.json"
    pool_config = _read_json_object(path)
    if pool_config is None:
        # TEI's fallback: any model_type containing "bert" (bert, roberta, xlm-roberta,
        # camembert, distilbert, nomic_bert, modernbert, jina_bert...) gets CLS. Not mpnet
        # nor GTE's "new": TEI asks for --pooling there, and so do we.
        if "bert" in model_type:
            logger.warning(
                "`--pooling` is not set and %s does not exist, but the model is a BERT "
                "variant: defaulting to CLS pooling",
                path,
            )
            return Pooling.CLS
        raise UnsupportedModelError(
            f"`--pooling` is not set and there is no pooling configuration ({path}) for this "
            f"{model_type!r} model: pass --pooling (cls, mean, last-token or splade)"
        )
    # TEI's precedence: cls, then mean, then last token.
    for key, mode in (
        ("pooling_mode_cls_token", Pooling.CLS),
        ("pooling_mode_mean_tokens", Pooling.MEAN),
        ("pooling_mode_lasttoken", Pooling.LAST_TOKEN),
    ):
        if _get(pool_config, key, bool, path):
            return mode
    enabled = sorted(k for k, v in pool_config.items() if k.startswith("pooling_mode_") and v)
    raise UnsupportedModelError(
        f"the pooling configuration {path} asks for {enabled or 'no pooling mode'}, which is "
        "not supported (cls, mean or last token are): pass --pooling"
    )


# --- labels, lengths, sizes --------------------------------------------------------------


def _id2label(config: dict[str, Any], config_path: Path, *, classifier: bool) -> dict[int, str]:
    raw = _get(config, "id2label", dict, config_path)
    if raw:
        try:
            labels = {int(key): str(value) for key, value in raw.items()}
        except ValueError as error:
            raise ModelError(f"{config_path}: `id2label` keys must be integers") from error
        return dict(sorted(labels.items()))
    if not classifier:
        return {}
    # transformers writes id2label in every config it saves; num_labels (2 by default)
    # covers hand-written ones.
    num_labels = _get(config, "num_labels", int, config_path)
    return {i: f"LABEL_{i}" for i in range(2 if num_labels is None else num_labels)}


def _max_input_length(root: Path, config: dict[str, Any], model_type: str) -> int:
    # TEI: the first sentence-transformers config that sets max_seq_length wins outright,
    # even when it is larger than max_position_embeddings (TEI takes no min; a model that
    # claims more than it has fails at run time in TEI too). Without one, the model's
    # position limit, less the padding offset of the roberta family.
    for name in ST_CONFIG_NAMES:
        path = root / name
        st_config = _read_json_object(path)
        if st_config is None:
            continue
        max_seq_length = _get(st_config, "max_seq_length", int, path)
        if max_seq_length is not None:
            if max_seq_length <= 0:
                raise ModelError(f"{path}: `max_seq_length` must be positive")
            return max_seq_length
        logger.warning("%s does not set `max_seq_length`; using config.json's limit", path)

    config_path = root / "config.json"
    positions = _get(config, "max_position_embeddings", int, config_path)
    if positions is None:
        positions = _get(config, "n_positions", int, config_path)  # nomic_bert's name
    if positions is None:
        raise ModelError(
            f"{config_path} sets neither `max_position_embeddings` nor `n_positions`, and "
            f"{root} has no sentence_bert_config.json with `max_seq_length`"
        )
    offset = 0
    if model_type in POSITION_OFFSET_MODEL_TYPES:
        offset = (_get(config, "pad_token_id", int, config_path) or 0) + 1
    if positions - offset <= 0:
        raise ModelError(f"{config_path}: no room for tokens after the position offset")
    return positions - offset


def _hidden_size(config: dict[str, Any], config_path: Path) -> int:
    for key in ("hidden_size", "n_embd", "dim"):  # dim: distilbert
        value = _get(config, key, int, config_path)
        if value is not None:
            return value
    raise ModelError(f"{config_path} sets none of `hidden_size`, `n_embd`, `dim`")


def _projection_width(model_type: str, weight_files: tuple[Path, ...]) -> int | None:
    """The output width of a Qwen3 embedder that projects its hidden states (TEI applies
    ``linear.weight`` when the checkpoint has it); None for every other model."""
    if model_type not in ("qwen3", "bidirectional_pplx_qwen3"):
        return None
    from tei_ort.exporters.weights import SafetensorsFile  # reads the header only

    for path in weight_files:
        handle = SafetensorsFile(path)
        if "linear.weight" in handle.names():
            return handle.shape("linear.weight")[0]
    return None


def _uses_token_type_ids(config: dict[str, Any], model_type: str, config_path: Path) -> bool:
    # The roberta family keeps a one-row token type table: still an input of the graph.
    if model_type == "distilbert":
        return False
    return (_get(config, "type_vocab_size", int, config_path) or 0) > 0


# --- sentence-transformers files ---------------------------------------------------------


def _read_modules(root: Path) -> list[dict[str, Any]]:
    path = root / "modules.json"
    data = _read_json(path)
    if data is None:
        return []
    if not isinstance(data, list) or not all(isinstance(m, dict) for m in data):
        raise ModelError(f"{path} must be a list of module objects")
    for module in data:
        if not isinstance(module.get("type"), str) or not isinstance(module.get("path", ""), str):
            raise ModelError(f"{path}: every module needs a string `type` and `path`")
        module.setdefault("path", "")
    return data


def _is_st_module(module: dict[str, Any], name: str) -> bool:
    # sentence_transformers.models.Dense (what TEI knows) and the module paths of
    # sentence-transformers 6 (sentence_transformers.base.modules.dense.Dense).
    module_type: str = module["type"]
    return module_type.startswith("sentence_transformers.") and module_type.endswith("." + name)


def _read_prompts(root: Path) -> tuple[dict[str, str], str | None]:
    path = root / "config_sentence_transformers.json"
    st_config = _read_json_object(path)
    if st_config is None:
        return {}, None
    prompts = _get(st_config, "prompts", dict, path) or {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in prompts.items()):
        raise ModelError(f"{path}: `prompts` must map names to strings")
    default_prompt_name = _get(st_config, "default_prompt_name", str, path)
    if default_prompt_name is not None and default_prompt_name not in prompts:
        # TEI never reads this key, so it cannot be a reason to refuse a model TEI serves.
        logger.warning(
            "%s: `default_prompt_name` %r is not one of the prompts %s; ignoring it",
            path,
            default_prompt_name,
            sorted(prompts),
        )
        default_prompt_name = None
    return prompts, default_prompt_name


def _dense_layers(
    root: Path, modules: list[dict[str, Any]], dense_path: str | None
) -> tuple[DenseLayer, ...]:
    folders: list[str] = [m["path"] for m in modules if _is_st_module(m, "Dense")]
    # TEI's --dense-path replaces the folder of a single Dense module (e.g. stella's
    # 2_Dense_1024 -> 2_Dense_256); with several, or none, it is ignored.
    if dense_path is not None:
        if len(folders) == 1:
            folders = [dense_path]
        else:
            logger.warning(
                "--dense-path %r ignored: modules.json lists %d Dense modules, not one",
                dense_path,
                len(folders),
            )
    return tuple(_dense_layer(root, folder) for folder in folders)


def _dense_layer(root: Path, folder: str) -> DenseLayer:
    path = root / folder
    config_path = path / "config.json"
    config = _read_json_object(config_path)
    if config is None:
        raise ModelError(f"the Dense module's {config_path} does not exist")
    in_features = _get(config, "in_features", int, config_path)
    out_features = _get(config, "out_features", int, config_path)
    if in_features is None or out_features is None:
        raise ModelError(f"{config_path} must set `in_features` and `out_features`")
    bias = _get(config, "bias", bool, config_path)
    activation = _get(config, "activation_function", str, config_path)
    if not (path / "model.safetensors").is_file():
        if (path / "pytorch_model.bin").is_file():
            raise UnsupportedModelError(
                f"the Dense module in {path} has only pytorch_model.bin: tei-ort reads "
                "safetensors only (convert it to model.safetensors)"
            )
        raise ModelError(f"the Dense module in {path} has no model.safetensors")
    return DenseLayer(
        path=path,
        in_features=in_features,
        out_features=out_features,
        bias=True if bias is None else bias,
        activation=DEFAULT_DENSE_ACTIVATION if activation is None else activation,
    )


# --- weights -------------------------------------------------------------------------------


def _weight_files(root: Path) -> tuple[Path, ...]:
    single = root / "model.safetensors"
    if single.is_file():
        return (single,)
    index_path = root / "model.safetensors.index.json"
    index = _read_json_object(index_path)
    if index is None:
        raise ModelError(
            f"no model.safetensors (or model.safetensors.index.json) in {root}: tei-ort "
            "supports safetensors weights only"
        )
    weight_map = _get(index, "weight_map", dict, index_path)
    if not weight_map or not all(isinstance(v, str) for v in weight_map.values()):
        raise ModelError(f"{index_path}: `weight_map` must map tensor names to shard files")
    # Shards are named model-0000k-of-0000n.safetensors: sorted is their order.
    shards = tuple(root / name for name in sorted(set(weight_map.values())))
    missing = [str(shard) for shard in shards if not shard.is_file()]
    if missing:
        raise ModelError(f"{index_path} lists shards that do not exist: {missing}")
    return shards


# --- JSON helpers ------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    """The parsed file, or None when it does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise ModelError(f"cannot read {path}: {error}") from error
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ModelError(f"failed to parse {path}: {error}") from error


def _read_json_object(path: Path) -> dict[str, Any] | None:
    data = _read_json(path)
    if data is not None and not isinstance(data, dict):
        raise ModelError(f"{path} must hold a JSON object")
    return data


def _get(data: dict[str, Any], key: str, kind: type[T], path: Path) -> T | None:
    """``data[key]`` checked against ``kind``; None when absent or null."""
    value = data.get(key)
    if value is None:
        return None
    # bool is an int in Python; a count given as true/false is a malformed file.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ModelError(f"{path}: `{key}` must be {kind.__name__}, not {value!r}")
    return value
